"""Upstream playpen 3.x's starter trainers: collect episodes with one of clemcore's runners, then train, epoch
after epoch. Subclass one in a trainer file (``playpen run FILE``) and override ``_train`` (and the settings
its ``__init__`` sets)."""
