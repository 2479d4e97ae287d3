"""``playpen_run.json``: what a run did, enough to reproduce it and to load its result.

Loading code (the clemcore backend, DPO on top of SFT) reads the manifest and never guesses.
"""
from __future__ import annotations

import json
import platform
import re

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from playpen.registry import atomic_write_text

MANIFEST_NAME = "playpen_run.json"
LIBRARIES = ["playpen-tune", "torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate",
             "datasets", "clemcore"]
_SECRET_OPTION = re.compile(r"token|key|secret|password", re.IGNORECASE)


def library_versions() -> dict:
    """Installed versions of the libraries a run depends on."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def redact_command_line(argv: list[str]) -> list[str]:
    """The command line with values of secret-looking options (``--hub_token X``) replaced."""
    out, hide_next = [], False
    for token in argv:
        if hide_next:
            out.append("<redacted>")
            hide_next = False
            continue
        name, has_value, _ = token.partition("=")
        if token.startswith("--") and _SECRET_OPTION.search(name):
            if has_value:
                out.append(f"{name}=<redacted>")
            else:
                out.append(token)
                hide_next = True
        else:
            out.append(token)
    return out


def public_model_spec(spec: dict) -> dict:
    """A registry entry without secret-looking keys (never written to manifests)."""
    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if not _SECRET_OPTION.search(k)}
        return value

    return clean(dict(spec))


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


