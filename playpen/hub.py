"""Hugging Face Hub switches shared by every command that loads a hub dataset."""
from __future__ import annotations

import contextlib
import os

from playpen.config import TRUE_WORDS


@contextlib.contextmanager
def offline_if_requested():
    """Apply an offline switch (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) set in the environment after the
    HF libraries read it at import, so that an offline call fails at once instead of retrying."""
    offline_variables = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    if not any(os.environ.get(name, "").strip().lower() in TRUE_WORDS for name in offline_variables):
        yield
        return
    import datasets
    import huggingface_hub.constants

    saved = datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved
