"""clemcore benchmark callbacks of upstream playpen 3.x: buffers (:mod:`playpen.callbacks.buffers`) and
epoch-numbered results folders (:mod:`playpen.callbacks.files`)."""
