"""The built-in plugin (entry point ``playpen_tune`` in group ``playpen``): hook implementations only."""
from __future__ import annotations

from playpen import hookimpl

BACKEND_NAME = "playpen_qlora"


@hookimpl
def playpen_register_backends():
    return {BACKEND_NAME: "playpen_tune.backend:QLoRABackend"}


@hookimpl
def playpen_before_learn(learner_name, request):
    from playpen_tune.registration import check_name_is_free

    check_name_is_free(request.name, request.model, overwrite=request.overwrite)


@hookimpl
def playpen_after_learn(learner_name, request, result):
    if not result.register or result.adapter_dir is None:
        return
    from playpen_tune.registration import register_adapter

    action, entry = register_adapter(request.name, request.model, result.adapter_dir, overwrite=request.overwrite)
    print(f"model registry: {action} '{entry['model_name']}' in ./model_registry.json "
          f"(play it with: playpen eval {entry['model_name']})")


@hookimpl
def playpen_register_commands(subparsers):
    from playpen_tune import commands

    commands.add_commands(subparsers)
