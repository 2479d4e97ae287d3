"""The built-in plugin (entry point ``playpen_tune`` in group ``playpen``): hook implementations only."""
from __future__ import annotations

from playpen.api import hookimpl
from playpen_tune.registration import BACKEND_NAME


@hookimpl
def playpen_add_hookspecs(plugin_manager):
    from playpen_tune import hookspecs

    plugin_manager.add_hookspecs(hookspecs)


@hookimpl
def playpen_register_backends():
    return {BACKEND_NAME: "playpen_tune.backend:QLoRABackend"}


@hookimpl
def playpen_before_learn(learner_name, request):
    from playpen_tune.registration import check_name_is_free

    check_name_is_free(request.name, request.model, overwrite=request.overwrite)


@hookimpl
def playpen_model_identity(model_entry):
    from playpen_tune.manifest import adapter_manifest_sha256

    return {"adapter_manifest_sha256": adapter_manifest_sha256(model_entry)}


@hookimpl
def playpen_model_loading(model_entry):
    from playpen_tune.backend import model_loading

    return model_loading(model_entry)


@hookimpl
def playpen_register_commands(subparsers):
    from playpen_tune import commands

    commands.add_commands(subparsers)
