"""Every hook a playpen plugin can implement, each called by the host. The docstrings here are the plugin
documentation.

A plugin is a module (or object) with functions decorated by :data:`playpen.api.hookimpl` whose
names match the specifications below. Plugins are found through the ``playpen`` entry-point
group; the built-in QLoRA plugin (``playpen_tune.plugin``) is registered that same way::

    [project.entry-points.playpen]
    my_plugin = "my_package.plugin"

Learners are not contributed by a hook: a learner is an entry point of group ``playpen.learners``
(:mod:`playpen.learners`), the one way to publish one, the built-in learners included.

Every spec in this module is called by the host. A plugin that offers extension points of its own
declares their specs itself and calls them itself: it implements :func:`playpen_add_hookspecs` and adds
its spec module there (the built-in plugin declares ``playpen_register_data_sources``, the ``--dataset``
kinds its learners read, in :mod:`playpen_tune.hookspecs`; the host reads no dataset). Such hooks are
known from the moment the declaring plugin is registered, so ``playpen list plugins`` shows them and a
third-party implementation is checked against its spec like any other.

Plugin modules are imported by ``playpen --help``: keep heavy imports (torch, transformers)
inside the functions that need them.
"""
from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("playpen")
hookimpl = pluggy.HookimplMarker("playpen")


@hookspec(historic=True)
def playpen_add_hookspecs(plugin_manager):
    """Declare the specs of hooks this plugin calls itself (pytest's ``pytest_addhooks``).

    Called once for each plugin as it is registered, before plugins that declare no hookspecs are
    registered. ``plugin_manager`` is the host's ``pluggy.PluginManager``: call
    ``plugin_manager.add_hookspecs(module)`` with a module of functions marked by
    :data:`playpen.api.hookspec`, and call those hooks through ``playpen.api.plugin_manager().hook``.
    Return value is ignored.
    """


@hookspec
def playpen_register_backends():
    """Contribute clemcore backends, so that registry entries with ``"backend": NAME`` load.

    Called when a playpen command is about to use clemcore models (``eval``, ``run``,
    ``list backends``). Return a dict ``{backend_name: "package.module:BackendClass"}``; the
    class must subclass ``clemcore.backends.Backend``. Use an import string so that listing
    backends does not import the backend's dependencies. The backends are injected into
    clemcore's backend registry for the current process only (see ``playpen.clemcore_bridge``).
    """


@hookspec
def playpen_register_eval_suites():
    """Contribute evaluation suites to ``playpen eval``/``playpen play`` (``--suite NAME``).

    Return a list of :class:`playpen.api.EvalSuite` (name, clemcore game selector, score name,
    help). ``--suite all`` plays every suite; val.json, the terminal summary and comparison.md
    report each suite's score under its score name. A suite name declared twice is an error.
    """


@hookspec
def playpen_before_learn(learner_name, request):
    """Called by ``playpen learn`` once learner, model, config, name and output directory are
    resolved, before anything is loaded or written.

    Raise :class:`playpen.api.PlaypenError` to refuse the run with a message for the user
    (the built-in plugin refuses a ``--name`` that would replace another model's registry
    entry). Return value is ignored.
    """


@hookspec
def playpen_after_learn(learner_name, request, result):
    """Called after a learner finished successfully (never after a failed run).

    ``learner_name`` is the name the learner was invoked by, ``request`` the
    :class:`playpen.api.LearnRequest` it ran with, ``result`` the
    :class:`playpen.api.LearnerResult` it returned; its ``registry_entry``, if any, is
    already in ``./model_registry.json``. Return value is ignored. An exception raised here
    fails the command (the trained artifacts stay on disk).
    """


@hookspec
def playpen_model_identity(model_entry):
    """Facts that tell one trained model from another beyond its registry entry.

    ``model_entry`` is a registry entry (a plain dict). ``playpen eval`` and ``playpen play``
    record the facts of every player next to the episodes and refuse to resume them with other
    facts (the built-in plugin returns the hash of a tuned model's run manifest, which changes
    whenever the adapter is trained again). Return a dict of JSON values, or None.
    """


@hookspec(firstresult=True)
def playpen_model_loading(model_entry):
    """How a backend of this plugin loads the model of ``model_entry`` (a registry entry, a plain dict).

    ``playpen eval`` records it per model in val.json (``model_settings``) and prints it under the
    comparison table, so a reader sees whether both sides were loaded alike. Return
    ``{"quantization": dict or None, "adapter": path or None}`` for entries of your backends, None for others
    (playpen then describes clemcore's own loading).
    """


@hookspec
def playpen_register_commands(subparsers):
    """Add subcommands to the ``playpen`` CLI (datasette's ``register_commands`` idea).

    ``subparsers`` is the argparse sub-parsers object. Add a parser and set its default
    ``handler`` to a function taking the parsed ``argparse.Namespace``::

        p = subparsers.add_parser("hello", help="say hello")
        p.set_defaults(handler=lambda args: print("hello"))

    Called while the CLI is built, also for ``playpen --help``: import nothing heavy here.
    """
