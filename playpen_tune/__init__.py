"""playpen_tune: the built-in QLoRA plugin."""
