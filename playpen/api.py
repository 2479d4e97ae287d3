"""The plugin API of the playpen host: the one module of ``playpen`` a plugin imports.

Everything a plugin (the built-in ``playpen_tune`` included) may use of the host is named here; the
other modules of ``playpen`` are the host's inside and change without notice. ``tests/test_plugin_api.py``
fails when a module of ``playpen_tune`` imports any other host module, so the border stays declared.

Importing this module is cheap: each name is imported from its host module on first use (``playpen
--help`` imports every plugin module, and must import no torch, transformers or clemcore CLI). Use
``from playpen.api import NAME`` or ``from playpen import api``.

What it offers, by purpose:

* **Hooks.** ``hookimpl`` marks a hook implementation (the specs: :mod:`playpen.hookspecs`);
  ``hookspec`` marks a spec of a plugin's own hooks (declared through ``playpen_add_hookspecs``);
  ``plugin_manager()`` returns the one pluggy manager, to call such hooks.
* **Learners.** ``Learner``, ``LearnRequest``, ``LearnerResult`` (the Learner API);
  ``config_to_dict`` (a learner config as JSON values), ``TRUE_WORDS`` (the words read as true).
* **Errors.** ``PlaypenError``: a mistake the user can fix; the CLI prints it as one ``error:`` line.
* **Files the user owns.** ``atomic_write_text``, ``append_entry`` (atomic, byte-preserving writes),
  ``refuse_file`` (a path that must not be a file), ``check_free_space`` (refuse before a write that
  cannot fit), ``without_secrets``, ``redact_command_line`` (keep keys and tokens out of written files),
  ``library_chatter_to`` (library messages into a log file), ``offline_if_requested`` (the hub, offline).
* **Models.** ``find_model`` (the one lookup of ``-m``), ``upsert_entry`` and ``validate_model_name``
  (``./model_registry.json``).
* **Games.** ``game_registry``, ``install_logged_progress_bars`` (clemcore, as the host sets it up);
  ``load_split``, ``EVAL_SPLIT``, ``NoSuchSplit``, ``SplitSourceUnreadable`` (instance splits);
  ``select`` (what ``eval``/``play`` play); ``play_games`` (games played and scored as ``eval`` plays them),
  ``play_batch`` (the one loop that plays a batch of episodes with loaded models of any engine),
  ``game_instances``, ``episode_key`` (a game's instance rows and what names an episode); ``EpisodeErrors``,
  ``failed_in_setup``, ``one_line`` (a game's failures as reason lines); ``score_number`` (a number of
  clemcore's scores); ``BRANCH_FILE`` (the record of a branch of ``play --branching``); ``EvalSuite``
  (for ``playpen_register_eval_suites``);
  ``STATIC_GAMES``, ``is_static_game`` (the static suite's games, kept out of training data).
* **vLLM.** ``ServerSettings``, ``VLLMServer``, ``ServerError`` (:mod:`playpen.serving`: a vLLM server
  started or named, serving a base and LoRA adapters loaded at run time; ``grpo_qlora --use_vllm``).
* **Tables and commands.** ``add_unique`` (a name table where a name declared twice is an error);
  ``cli_main`` (run a ``playpen`` command in this process, as ``playpen quickstart`` does).
"""
from __future__ import annotations

import importlib

# name -> "module" (the same name there) or "module:attribute"
_EXPORTS = {
    "hookimpl": "playpen.hookspecs",
    "hookspec": "playpen.hookspecs",
    "Learner": "playpen.learners",
    "LearnRequest": "playpen.learners",
    "LearnerResult": "playpen.learners",
    "config_to_dict": "playpen.config",
    "TRUE_WORDS": "playpen.config",
    "PlaypenError": "playpen.errors",
    "atomic_write_text": "playpen.files",
    "append_entry": "playpen.files",
    "refuse_file": "playpen.paths",
    "check_free_space": "playpen.faults",
    "without_secrets": "playpen.secrets",
    "redact_command_line": "playpen.secrets",
    "library_chatter_to": "playpen.console",
    "offline_if_requested": "playpen.hub",
    "find_model": "playpen.models",
    "upsert_entry": "playpen.registry",
    "validate_model_name": "playpen.registry",
    "game_registry": "playpen.clemcore_bridge",
    "install_logged_progress_bars": "playpen.clemcore_bridge",
    "load_split": "playpen.splits",
    "EVAL_SPLIT": "playpen.splits",
    "NoSuchSplit": "playpen.splits",
    "SplitSourceUnreadable": "playpen.splits",
    "select": "playpen.selection",
    "play_games": "playpen.playing",
    "play_batch": "playpen.playing",
    "game_instances": "playpen.playing",
    "episode_key": "playpen.playing",
    "EpisodeErrors": "playpen.game_errors",
    "failed_in_setup": "playpen.game_errors",
    "one_line": "playpen.game_errors",
    "score_number": "playpen.scores",
    "BRANCH_FILE": "playpen.branching_play",
    "EvalSuite": "playpen.suites",
    "STATIC_GAMES": "playpen.suites",
    "is_static_game": "playpen.suites",
    "ServerSettings": "playpen.serving",
    "VLLMServer": "playpen.serving",
    "ServerError": "playpen.serving",
    "add_unique": "playpen.tables",
    "cli_main": "playpen.cli:main",
}

__all__ = sorted([*_EXPORTS, "plugin_manager"])


def plugin_manager():
    """The host's one pluggy ``PluginManager`` (every ``playpen`` entry point registered on first use)."""
    from playpen.plugins import pm

    return pm


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'playpen.api' has no attribute {name!r}; the plugin API is {__all__}")
    module, _, attribute = _EXPORTS[name].partition(":")
    value = getattr(importlib.import_module(module), attribute or name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return __all__
