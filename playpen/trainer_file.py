"""``playpen run FILE``: upstream playpen's trainer files (a 3.x ``BasePlaypenTrainer`` or a 2.x ``BasePlayPen``
subclass)."""
from __future__ import annotations

import importlib.util
import inspect
import re

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
    except ImportError as error:
        raise PlaypenError(_import_problem(path, error)) from error
    except SyntaxError as error:
        raise PlaypenError(f"trainer file {path} cannot be imported: {type(error).__name__}: {error}") from error
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

    from playpen.clemcore_bridge import game_registry, install_batch_session_fix
    from playpen.models import find_models

    names = [learner] + ([teacher] if teacher else [])
    specs = find_models(names)
    try:  # a teacher of the learner's name is loaded again: it stays fixed while the learner trains (as upstream)
        models = backends.load_models([specs[name] for name in names],
                                      dict(temperature=temperature, max_tokens=max_tokens))
    except ValueError as error:
        raise PlaypenError(f"{error}; see 'playpen list models'") from None
    install_batch_session_fix()  # for trainers that call clemcore's batchwise runner
    trainer = trainer_cls(*models)
    if isinstance(trainer, BasePlaypenTrainer):
        trainer.learn()
    else:
        trainer.learn(game_registry())


def _import_problem(path, error: ImportError) -> str:
    """What a failed import of the trainer file means; a name of upstream playpen we lack is named as such."""
    missing = re.match(r"cannot import name '([^']+)' from '(playpen[\w.]*)'", str(error))
    if missing:
        what = f"'{missing.group(1)}' from {missing.group(2)}"
    elif isinstance(error, ModuleNotFoundError) and (error.name or "").split(".")[0] == "playpen":
        what = f"module {error.name}"
    else:
        return f"trainer file {path} cannot be imported: {type(error).__name__}: {error}"
    return (f"trainer file {path} imports {what}, which this playpen does not provide; README "
            f"'Upstream trainer files' lists the upstream names that run here")
