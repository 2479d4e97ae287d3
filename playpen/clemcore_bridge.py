"""The one place where playpen changes clemcore's behaviour: plugin backends, models of one command
(:func:`add_transient_model`), one fix of its batchwise runner, and where its progress bars are drawn.

clemcore finds backends only as ``*_api.py`` files (packaged, or in the working directory).
Backends contributed through the ``playpen_register_backends`` hook are added to
``BackendRegistry.from_packaged_and_cwd_files`` (so every clemcore code path that builds the
registry sees them) and resolved by ``BackendRegistry.get_backend_for``. The patch lives for
the current process, is applied once, and falls through to clemcore for every other backend.
Tested against clemcore 3.7.x (see pyproject).

The batchwise runner (``clemcore.clemgame.runners.batchwise``) numbers its game sessions by their
position among *all* instances, but keeps only the sessions whose setup succeeded, and then finds a
session by that number in the shortened list: after one instance fails its setup, the responses go
to the wrong episodes or the run stops with an IndexError. :func:`install_batch_session_fix`
numbers the sessions by their position in the list the runner uses.

clemcore's runners and scorer draw their own tqdm bars (nested, with a ``Batch sizes: ...`` line
redrawn every batch). :func:`install_logged_progress_bars` makes the ``tqdm`` those modules use draw
nothing and log each bar's last state as one line when it closes, so the console keeps playpen's one
bar per phase (:mod:`playpen.progress`) and the log file gets readable lines, no cursor escapes.
"""
from __future__ import annotations

from playpen.tables import add_unique, load_target

LOOKUP_SOURCE = "playpen-plugin"
_installed: dict[str, str] = {}
TRANSIENT_SOURCE = "playpen-eval"
_transient_models: list[dict] = []


def plugin_backends() -> dict[str, str]:
    """``{backend_name: "module:Class"}`` from all plugins (nothing is imported)."""
    from playpen.plugins import pm

    backends: dict[str, str] = {}
    for contribution in pm.hook.playpen_register_backends():
        for name, target in (contribution or {}).items():
            add_unique(backends, name, target, "backend")
    return backends


def model_registry():
    """clemcore's ModelRegistry (./model_registry.json first, then packaged entries).

    clemcore silently skips a corrupt ./model_registry.json; this reports it instead, with
    what to fix.
    """
    from clemcore.backends import ModelRegistry

    from playpen.registry import read_entries

    read_entries()
    return ModelRegistry.from_packaged_and_cwd_files()


def game_registry():
    """clemcore's GameRegistry (./game_registry.json, game folders below the working directory, CLEMBENCH_HOME).

    clemcore skips a ./game_registry.json it cannot read and then reports "no games"; this reports the
    file instead: not JSON, not a list, or an entry without ``game_path`` or ``benchmark_path``.
    """
    import json
    from pathlib import Path

    from clemcore.clemgame import GameRegistry

    from playpen.errors import PlaypenError

    path = Path("game_registry.json")
    if path.is_file():
        fix = 'it must be a JSON list such as [{"benchmark_path": "/path/to/clembench"}]; fix or move it'
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))  # as clemcore reads it
        except (ValueError, UnicodeDecodeError) as error:
            raise PlaypenError(f"./game_registry.json is malformed ({error}); {fix}") from None
        if not isinstance(entries, list):
            raise PlaypenError(f"./game_registry.json is malformed: a JSON {type(entries).__name__}, not a list; {fix}")
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or not ({"game_path", "benchmark_path"} & set(entry)):
                raise PlaypenError(f"./game_registry.json is malformed: entry {index} (0-based) has no 'game_path' "
                                   f"or 'benchmark_path'; {fix}")
    return GameRegistry.from_directories_and_cwd_files()


def install_plugin_backends() -> dict[str, str]:
    """Make plugin backends visible to clemcore's BackendRegistry in this process."""
    from clemcore.backends import backend_registry as cbr

    backends = plugin_backends()
    if not _installed:
        original_from = cbr.BackendRegistry.from_packaged_and_cwd_files.__func__
        original_get = cbr.BackendRegistry.get_backend_for

        def from_packaged_and_cwd_files(cls):
            registry = original_from(cls)
            known = {entry["backend"] for entry in registry}
            for name, target in _installed.items():
                if name not in known:  # a *_api.py file in the cwd still wins, as in clemcore
                    registry._backends_files.append({"backend": name, "file_name": target,
                                                     "file_path": target, "lookup_source": LOOKUP_SOURCE})
            return registry

        def get_backend_for(self, backend_selector):
            if backend_selector in _installed:
                entry = self.get_first_file_matching(backend_selector)
                if entry["lookup_source"] == LOOKUP_SOURCE:
                    return load_target(entry["file_path"])()
            return original_get(self, backend_selector)

        cbr.BackendRegistry.from_packaged_and_cwd_files = classmethod(from_packaged_and_cwd_files)
        cbr.BackendRegistry.get_backend_for = get_backend_for
    _installed.update(backends)
    return dict(_installed)


def add_transient_model(entry: dict) -> None:
    """Make a model entry that is in no registry file loadable by clemcore in this process.

    clemcore loads a model only through a registry lookup (``ModelRegistry.from_packaged_and_cwd_files``);
    ``eval --baseline_4bit`` plays a model that exists for one command (the base, 4-bit, as a tuned model's
    base is loaded), which must not be written into the user's ``model_registry.json``.
    """
    from clemcore.backends import model_registry as cmr

    if not getattr(cmr.ModelRegistry.from_packaged_and_cwd_files, "playpen_transient", False):
        original = cmr.ModelRegistry.from_packaged_and_cwd_files.__func__

        def from_packaged_and_cwd_files(cls):
            registry = original(cls)
            if _transient_models:
                registry.register_from_list([dict(entry) for entry in _transient_models],
                                            lookup_source=TRANSIENT_SOURCE)
            return registry

        from_packaged_and_cwd_files.playpen_transient = True
        cmr.ModelRegistry.from_packaged_and_cwd_files = classmethod(from_packaged_and_cwd_files)
    if entry not in _transient_models:
        _transient_models.append(entry)


def install_batch_session_fix() -> None:
    """Number the batchwise runner's game sessions by their index in its session list (see above)."""
    from clemcore.clemgame.runners import batchwise

    run_sessions = vars(batchwise)["__run_game_sessions"]  # a module-level name: no mangling outside classes
    if getattr(run_sessions, "playpen_fix", False):
        return

    def run_game_sessions(game_sessions, batch_size):
        for index, session in enumerate(game_sessions):
            session.session_id = index
        return run_sessions(game_sessions, batch_size)

    run_game_sessions.playpen_fix = True
    setattr(batchwise, "__run_game_sessions", run_game_sessions)


# the clemcore modules that draw tqdm bars while playpen plays and scores episodes
PROGRESS_BAR_MODULES = ("clemcore.cli", "clemcore.clemeval", "clemcore.clemgame.benchmark",
                        "clemcore.clemgame.runners.batchwise", "clemcore.clemgame.runners.sequential")


def install_logged_progress_bars() -> None:
    """clemcore's bars draw nothing; each logs its final state (``clemcore.run`` INFO) when it closes."""
    import importlib
    import io
    import logging

    from tqdm import tqdm

    class LoggedProgressBar(tqdm):
        """A tqdm bar that writes nowhere and logs one line when it closes."""

        def __init__(self, *args, **kwargs):
            kwargs["file"] = io.StringIO()
            kwargs["position"] = None
            super().__init__(*args, **kwargs)

        def close(self):
            if not self.disable:
                text = str(self).strip()
                if text:
                    logging.getLogger("clemcore.run").info("progress: %s", text)
            super().close()

    for name in PROGRESS_BAR_MODULES:
        module = importlib.import_module(name)
        if not getattr(module.tqdm, "playpen_logged", False):
            LoggedProgressBar.playpen_logged = True
            module.tqdm = LoggedProgressBar
