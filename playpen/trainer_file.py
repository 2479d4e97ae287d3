"""``playpen run FILE``: upstream playpen's trainer files (a ``BasePlayPen`` subclass)."""
from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

from playpen.base import BasePlayPen
from playpen.errors import PlaypenError


def load_trainer_class(file_path: str) -> type[BasePlayPen]:
    """The first BasePlayPen subclass defined in ``file_path``."""
    path = Path(file_path)
    if not path.is_file():
        raise PlaypenError(f"trainer file {path} does not exist")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    classes = [obj for _, obj in inspect.getmembers(module, inspect.isclass)
               if issubclass(obj, BasePlayPen) and obj is not BasePlayPen]
    if not classes:
        raise PlaypenError(f"no BasePlayPen subclass in {path}; define one "
                           f"('from playpen import BasePlayPen') and implement learn()")
    return classes[0]


def run_trainer_file(file_path: str, learner: str, teacher: str | None,
                     temperature: float, max_tokens: int) -> None:
    """Load the models through clemcore (plugin backends included) and call ``learn``."""
    trainer_cls = load_trainer_class(file_path)
    from clemcore import backends
    from clemcore.clemgame import GameRegistry

    from playpen.clemcore_bridge import install_plugin_backends

    install_plugin_backends()
    names = [learner] + ([teacher] if teacher else [])
    try:
        models = backends.load_models(names, dict(temperature=temperature, max_tokens=max_tokens))
    except ValueError as error:
        raise PlaypenError(f"{error}; see 'playpen list models'") from None
    trainer_cls(*models).learn(GameRegistry.from_directories_and_cwd_files())
