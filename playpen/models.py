"""The one model lookup of every command (``learn``, ``register``, ``eval``, ``run``, ``play``, GRPO's
``--partner``): a name in the model registry (./model_registry.json first, then clemcore's packaged
one), a model directory on disk, or clemcore's scripted players ``mock``/``programmatic``.
It returns clemcore ``ModelSpec`` objects; ``spec.to_dict()`` is the plain registry entry."""
from __future__ import annotations

import difflib
from pathlib import Path

from playpen.errors import PlaypenError


def find_models(names: list[str], *, scripted: bool = True) -> dict:
    """``{name: clemcore ModelSpec}`` for every name; ``scripted``: accept ``mock``/``programmatic``
    (clemcore's scripted players, as in ``clem run``). An unknown name is one user error with close matches."""
    from clemcore.backends import ModelSpec

    from playpen.clemcore_bridge import install_plugin_backends, model_registry

    install_plugin_backends()
    registry = model_registry()  # a corrupt ./model_registry.json is reported now, not after training
    specs = {}
    for name in names:
        if not name:
            raise PlaypenError("no model given; pass -m MODEL (see 'playpen list models')")
        selector = ModelSpec.from_name(name)
        if scripted and selector.is_programmatic():
            specs[name] = selector
            continue
        matches = [spec for spec in registry if spec["model_name"] == name]
        if matches:
            specs[name] = matches[0]
            continue
        path = Path(name)
        if path.is_dir() and (path / "config.json").is_file():
            specs[name] = ModelSpec.from_dict({"model_name": path.resolve().name, "backend": "huggingface_local",
                                               "huggingface_id": str(path.resolve()), "model_config": {}})
            continue
        close = difflib.get_close_matches(name, [spec["model_name"] for spec in registry], n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise PlaypenError(f"unknown model '{name}'; add it to ./model_registry.json or pick one from "
                           f"'playpen list models'.{hint}")
    return specs


def find_model(name: str, *, scripted: bool = False):
    """The clemcore ModelSpec of one name (see :func:`find_models`); by default no scripted player (nothing to
    train)."""
    return find_models([name], scripted=scripted)[name]
