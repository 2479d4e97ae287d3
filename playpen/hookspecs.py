"""Every hook a playpen plugin can implement. The docstrings here are the plugin documentation.

A plugin is a module (or object) with functions decorated by :data:`playpen.hookimpl` whose
names match the specifications below. Plugins are found through the ``playpen`` entry-point
group; the built-in QLoRA plugin (``playpen_tune.plugin``) is registered that same way::

    [project.entry-points.playpen]
    my_plugin = "my_package.plugin"

Plugin modules are imported by ``playpen --help``: keep heavy imports (torch, transformers)
inside the functions that need them.
"""
from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("playpen")
hookimpl = pluggy.HookimplMarker("playpen")


@hookspec
def playpen_register_learners():
    """Contribute learners that are not declared as ``playpen.learners`` entry points.

    Called once when the learner table is built (``playpen list learners``, ``playpen learn``).
    Return a dict ``{name: "package.module:Class"}`` (or ``{name: Class}``), or None.
    Entry points are the preferred way to publish a learner; this hook is for plugins that
    create learners dynamically. A name declared twice is an error.
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
def playpen_register_data_sources():
    """Contribute kinds of ``--dataset`` sources that the built-in learners read rows from.

    Return ``{kind: reader}``; ``reader.claims(source) -> bool`` says whether a ``--dataset``
    value is of this kind (plugin readers are asked before the built-in ``file``, ``hub`` and
    ``transcripts``), ``reader.read(source, split, column_sets) -> (name, rows)`` returns a name
    for messages and the rows (dicts holding all columns of one of ``column_sets``, e.g.
    ``("messages",)`` for SFT). See :mod:`playpen_tune.data.readers`. A kind declared twice is an error.
    """


@hookspec
def playpen_register_eval_suites():
    """Contribute evaluation suites to ``playpen eval``/``playpen play`` (``--suite NAME``).

    Return a list of :class:`playpen.suites.EvalSuite` (name, clemcore game selector, score name,
    help). ``--suite all`` plays every suite; val.json, the terminal summary and comparison.md
    report each suite's score under its score name. A suite name declared twice is an error.
    """


@hookspec
def playpen_before_learn(learner_name, request):
    """Called by ``playpen learn`` once learner, model, config, name and output directory are
    resolved, before anything is loaded or written.

    Raise :class:`playpen.errors.PlaypenError` to refuse the run with a message for the user
    (the built-in plugin refuses a ``--name`` that would replace another model's registry
    entry). Return value is ignored.
    """


@hookspec
def playpen_after_learn(learner_name, request, result):
    """Called after a learner finished successfully (never after a failed run).

    ``learner_name`` is the name the learner was invoked by, ``request`` the
    :class:`playpen.learners.LearnRequest` it ran with, ``result`` the
    :class:`playpen.learners.LearnerResult` it returned; its ``registry_entry``, if any, is
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
