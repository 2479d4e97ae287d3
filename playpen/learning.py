"""``playpen learn``: resolve learner, model, config and output directory, run, fire hooks."""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from playpen import config as cfg
from playpen import faults
from playpen.errors import PlaypenError
from playpen.learners import LearnRequest, get_learner
from playpen.registry import validate_model_name

TRAIN_LOG = "train.log"  # library messages of a run, in its output dir (playpen.console)


def learner_help(learner_name: str, learner_cls) -> str:
    """The ``--<field>`` options of a learner, from its config dataclass."""
    lines = [f"playpen learn -l {learner_name} -m MODEL [-c CONFIG.yaml] [--name NAME] [--resume] "
             f"[--overwrite] [--<field> VALUE ...]", "", (learner_cls.__doc__ or "").strip(), "",
             "learner options (YAML keys of -c, overridable on the command line):"]
    hints = typing.get_type_hints(learner_cls.config_class)
    aliases = cfg.field_aliases(learner_cls.config_class)
    for f in dataclasses.fields(learner_cls.config_class):
        if not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "required")
        type_name = getattr(hints[f.name], "__name__", str(hints[f.name]).replace("typing.", ""))
        short = "".join(f"{alias}, " for alias, name in aliases.items() if name == f.name)
        lines.append(f"  {short}--{f.name} ({type_name}, default {default!r})")
        if f.metadata.get("help"):
            lines.append(f"      {f.metadata['help']}")
    return "\n".join(lines)


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
    overrides = cfg.parse_overrides(config_class, args.learner_options)
    yaml_values: dict = {}
    if args.config:
        yaml_values, notices = learner_cls.translate_config(cfg.read_yaml(args.config))
        for notice in notices:
            print(f"note: {notice}")
    config = cfg.build_config(config_class, yaml_values, overrides)

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
