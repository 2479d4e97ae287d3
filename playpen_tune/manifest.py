"""``playpen_run.json``: what a run did, enough to reproduce it and to load its result.

Loading code (the clemcore backend, DPO on top of SFT) reads the manifest and never guesses.
"""
from __future__ import annotations

import hashlib
import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from playpen.api import atomic_write_text

MANIFEST_NAME = "playpen_run.json"
LIBRARIES = ["playpen-tune", "torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate",
             "datasets", "clemcore"]


def library_versions() -> dict:
    """Installed versions of the libraries a run depends on."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def write_manifest(directory: Path, manifest: dict) -> Path:
    """Write the manifest atomically into ``directory``."""
    path = Path(directory) / MANIFEST_NAME
    atomic_write_text(path, json.dumps(manifest, indent=2, default=str) + "\n")
    return path


def read_manifest(directory: Path) -> dict | None:
    """The manifest of a run directory, or None if it has none."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))



def adapter_manifest_sha256(model_entry: dict) -> str | None:
    """The sha256 of the run manifest next to an entry's adapter (``model_config.peft_model``), or None."""
    adapter = (model_entry.get("model_config") or {}).get("peft_model")
    path = Path(adapter) / MANIFEST_NAME if adapter else None
    return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None and path.is_file() else None


def trained_quantization(directory: Path) -> dict | None:
    """The bitsandbytes settings a run trained with (as loading arguments), or None if unrecorded.

    The manifest's ``prequantized`` flag describes the checkpoint, not a loading argument, and is left out.
    """
    settings = (read_manifest(directory) or {}).get("quantization")
    return {k: v for k, v in settings.items() if k != "prequantized"} if settings else None
