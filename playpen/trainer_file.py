"""``playpen run FILE``: upstream playpen's trainer files (a 3.x ``BasePlaypenTrainer`` or a 2.x ``BasePlayPen``
subclass)."""
from __future__ import annotations

import importlib.util
import inspect

from playpen.base import BasePlayPen, BasePlaypenTrainer
from playpen.errors import PlaypenError
from playpen.paths import refuse_directory


TRAINER_BASES = (BasePlaypenTrainer, BasePlayPen)


def load_trainer_class(file_path: str) -> type:
    """The one concrete BasePlaypenTrainer or BasePlayPen subclass defined in ``file_path`` (imported ones
    don't count)."""
    path = refuse_directory(file_path, "trainer file")
    if not path.is_file():
        raise PlaypenError(f"trainer file {path} does not exist")
    if path.suffix != ".py":
        raise PlaypenError(f"trainer file {path} is not a Python file (.py); pass the .py file that defines your "
                           f"BasePlaypenTrainer subclass")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (SyntaxError, ImportError) as error:
        raise PlaypenError(f"trainer file {path} cannot be imported: "
                           f"{type(error).__name__}: {error}") from error
    classes = [obj for _, obj in inspect.getmembers(module, inspect.isclass)
               if issubclass(obj, TRAINER_BASES) and obj.__module__ == module.__name__
               and not inspect.isabstract(obj)]
    if not classes:
        raise PlaypenError(f"no BasePlaypenTrainer (or BasePlayPen) subclass in {path}; define one "
                           f"('from playpen import BasePlaypenTrainer') and implement learn()")
    if len(classes) > 1:
        raise PlaypenError(f"{path} defines {len(classes)} trainer classes "
                           f"({', '.join(cls.__name__ for cls in classes)}); keep exactly one")
    return classes[0]


def run_trainer_file(file_path: str, learner: str, teacher: str | None,
                     temperature: float, max_tokens: int) -> None:
    """Load the models through clemcore (plugin backends included) and call ``learn``: with no argument
    for a 3.x ``BasePlaypenTrainer``, with clemcore's GameRegistry for a 2.x ``BasePlayPen``."""
    from playpen.playing import check_generation_settings

    check_generation_settings(temperature, max_tokens)
    trainer_cls = load_trainer_class(file_path)
    from clemcore import backends
    from playpen.clemcore_bridge import game_registry
    from playpen.models import find_models

    specs = find_models([learner] + ([teacher] if teacher else []))
    try:
        models = backends.load_models(list(specs.values()), dict(temperature=temperature, max_tokens=max_tokens))
    except ValueError as error:
        raise PlaypenError(f"{error}; see 'playpen list models'") from None
    trainer = trainer_cls(*models)
    if isinstance(trainer, BasePlaypenTrainer):
        trainer.learn()
    else:
        trainer.learn(game_registry())
