"""``playpen learn``: resolve learner, model, config and output directory, run, fire hooks."""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import typing
from pathlib import Path

from playpen import config as cfg
from playpen import faults
from playpen.errors import PlaypenError
from playpen.learners import LearnRequest, get_learner
from playpen.registry import validate_model_name

TRAIN_LOG = "train.log"  # library messages of a run, in its output dir (playpen.console)


USAGE = ("playpen learn -l {learner} -m MODEL [-c CONFIG.yaml] [--name NAME] [--resume] [--overwrite] "
         "[--<field> VALUE ...]")


class _FieldHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option as ``-g, --games (list, default [])``, its help wrapped on the lines below it."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=6)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        return f"{', '.join(action.option_strings)} ({action.metavar})"


def _group_heading(group: type) -> tuple[str, str | None]:
    """A group's title (its docstring's first line) and description (the rest of the docstring)."""
    doc = group.__doc__ or ""
    if not doc.strip() or doc.startswith(f"{group.__name__}("):  # dataclass's generated signature: no docstring
        return group.__name__, None
    title, _, description = inspect.cleandoc(doc).partition("\n")
    return title.rstrip(".:"), description.strip() or None


def learner_help(learner_name: str, learner_cls) -> str:
    """The ``--<field>`` options of a learner, one argparse group per dataclass its config is composed of
    (:func:`playpen.config.config_groups`), titled and described by the group's docstring."""
    config_class = learner_cls.config_class
    parser = argparse.ArgumentParser(
        prog="playpen learn", usage=USAGE.format(learner=learner_name), add_help=False,
        formatter_class=_FieldHelpFormatter,
        description=f"{inspect.cleandoc(learner_cls.__doc__ or '')}\n\n"
                    f"Every option is also a key of the -c YAML file; the command line wins.")
    hints = typing.get_type_hints(config_class)
    aliases = cfg.field_aliases(config_class)
    for group, fields in cfg.config_groups(config_class):
        title, description = _group_heading(group)
        section = parser.add_argument_group(title, description)
        for f in fields:
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else "required")
            type_name = getattr(hints[f.name], "__name__", str(hints[f.name]).replace("typing.", ""))
            short = [alias for alias, name in aliases.items() if name == f.name]
            help_text = f.metadata.get("help")
            section.add_argument(*short, f"--{f.name}", metavar=f"{type_name}, default {default!r}",
                                 help=help_text.replace("%", "%%") if help_text else None)
    return parser.format_help().rstrip("\n")


def resume_changes(output_dir: Path) -> dict:
    """How to continue an interrupted learn: ``--resume`` from its checkpoints, ``--overwrite`` a run that
    saved none (its directory holds only what the start wrote), the same command if nothing is left."""
    if list(output_dir.glob("checkpoint-*")):
        return {"--resume": True, "--overwrite": False}
    if output_dir.is_dir() and any(output_dir.iterdir()):
        return {"--overwrite": True, "--resume": False}
    return {}


def register_result(entry: dict) -> None:
    """Upsert the entry a learner built for what it trained into ``./model_registry.json``."""
    from playpen.registry import upsert_entry

    action = upsert_entry(entry)
    print(f"model registry: {action} '{entry['model_name']}' in ./model_registry.json "
          f"(play it with: playpen eval {entry['model_name']})")


def learn_from_cli(args) -> None:
    if not args.learner:
        if args.help:
            print("usage: playpen learn -l LEARNER -m MODEL [...]; "
                  "'playpen learn -l LEARNER --help' lists a learner's options")
            return
        raise PlaypenError("no learner given; pass -l LEARNER (see 'playpen list learners')")
    info, learner_cls = get_learner(args.learner)
    if args.help:
        print(learner_help(info.name, learner_cls))
        return

    config_class = learner_cls.config_class
    overrides = cfg.parse_overrides(config_class, args.learner_options, info.name)
    yaml_values: dict = {}
    if args.config:
        yaml_values, notices = learner_cls.translate_config(cfg.read_yaml(args.config))
        for notice in notices:
            print(f"note: {notice}")
    config = cfg.build_config(config_class, yaml_values, overrides, info.name)

    from playpen.models import find_model

    model = find_model(args.model).to_dict()
    name = validate_model_name(args.name or f"{model['model_name']}-{info.name}")
    output_dir = getattr(config, "output_dir", None) or Path("models") / name
    if hasattr(config, "output_dir"):
        config.output_dir = str(output_dir)
    request = LearnRequest(model=model, config=config, output_dir=Path(output_dir), name=name, learner=info.name,
                           command_line=list(args.argv), resume=args.resume, overwrite=args.overwrite)

    from playpen.plugins import pm

    pm.hook.playpen_before_learn(learner_name=info.name, request=request)
    print(f"playpen learn: learner={info.name} model={model['model_name']} -> {request.output_dir}")
    from playpen.console import library_chatter_to

    with library_chatter_to(request.output_dir / TRAIN_LOG, verbose=args.verbose):
        with faults.resumable(lambda: resume_changes(request.output_dir)), faults.disk_faults_as_errors(
                request.output_dir, "choose another --output_dir (or --name)", needed=2**20):
            result = learner_cls().learn(request)
        if result.registry_entry is not None:
            register_result(result.registry_entry)
        pm.hook.playpen_after_learn(learner_name=info.name, request=request, result=result)
    print(f"done: {result.output_dir}" + (f" (manifest {result.manifest_path})" if result.manifest_path else ""))
    for key, value in result.metrics.items():
        print(f"  {key}: {value}")
