"""The Learner API and the table of installed learners.

A learner is a class published in the ``playpen.learners`` entry-point group::

    [project.entry-points."playpen.learners"]
    my_learner = "my_package.learner:MyLearner"

It declares a config dataclass (every field becomes a ``--<field>`` CLI option and a YAML
key; the dataclass may be composed of several by inheriting them, each shown as one group by
``--help``) and implements :meth:`Learner.learn`. Keep the module that defines the class light:
``playpen list learners`` imports it to read its docstring. Import torch & co. inside
``learn``.
"""
from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

from playpen.errors import PlaypenError
from playpen.tables import add_unique, load_target

ENTRY_POINT_GROUP = "playpen.learners"


@dataclass
class LearnRequest:
    """Everything a learner needs to run once, resolved by ``playpen learn``.

    Attributes:
        model: the resolved clemcore model-registry entry of ``-m`` (a plain dict).
        config: an instance of the learner's ``config_class`` (YAML + CLI overrides applied).
        output_dir: where the learner writes its artifacts (adapter, checkpoints, manifest).
        name: the model name the result is registered under (``--name``).
        learner: the name the learner was invoked by (``-l``): record it, never a literal.
        command_line: the argv of this invocation (recorded in manifests).
        resume: continue from the last checkpoint in ``output_dir`` (``--resume``).
        overwrite: the user allowed replacing a different earlier run in ``output_dir``.
    """

    model: dict
    config: Any
    output_dir: Path
    name: str
    learner: str
    command_line: list[str] = field(default_factory=list)
    resume: bool = False
    overwrite: bool = False


@dataclass
class LearnerResult:
    """What a learner returns after a successful run.

    Attributes:
        output_dir: the run's directory.
        adapter_dir: the directory holding the trained weights/adapter (often ``output_dir``),
            or None if the learner produces no loadable model.
        manifest_path: the run manifest (JSON) describing config, data, metrics and versions.
        metrics: final metrics, e.g. ``{"train_loss": 1.23}``.
        registry_entry: the clemcore model-registry entry that plays the trained model (its
            ``model_name`` is ``request.name``), built by the learner, which knows what it trained.
            ``playpen learn`` upserts it into ``./model_registry.json``; None: nothing is registered.
    """

    output_dir: Path
    adapter_dir: Path | None = None
    manifest_path: Path | None = None
    metrics: dict = field(default_factory=dict)
    registry_entry: dict | None = None


class Learner(abc.ABC):
    """Base class of all learners.

    Subclasses set ``config_class`` to a dataclass and implement :meth:`learn`. Dataclass
    fields should carry ``metadata={"help": "..."}``: it is shown by ``playpen learn -l NAME
    --help``.

    A config may be composed of groups, as TRL's scripts compose ``ScriptArguments``, ``SFTConfig``
    and ``ModelConfig``: the config inherits the group dataclasses and declares the learner's own
    fields in its body (``class MyConfig(DatasetFields, TrainingFields): beta: float = ...``). The
    learner reads every field as ``request.config.<field>``, ``-c`` YAML files stay flat, and
    ``--help`` shows one group per dataclass, titled by the first line of its docstring and
    described by the rest (:func:`playpen.config.config_groups`).
    """

    config_class: ClassVar[type]

    @classmethod
    def translate_config(cls, raw: dict) -> tuple[dict, list[str]]:
        """Map a YAML mapping onto ``config_class`` field names before validation.

        Return the translated mapping and human-readable notices (printed by the CLI). The
        default accepts the mapping as is. Override to accept legacy config formats.
        """
        return raw, []

    @abc.abstractmethod
    def learn(self, request: LearnRequest) -> LearnerResult:
        """Train once as described by ``request`` and return what was produced.

        Raise :class:`playpen.errors.PlaypenError` for mistakes the user can fix (bad data,
        bad values); other exceptions are treated as bugs.
        """


@dataclass(frozen=True)
class LearnerInfo:
    """One row of the learner table (no learner code is imported to build it)."""

    name: str
    target: str  # "package.module:Class"
    distribution: str | None
    version: str | None

    def load(self) -> type[Learner]:
        """Import the learner class; errors name the entry point that is broken."""
        try:
            obj = load_target(self.target)
        except Exception as error:  # a broken module may raise anything while importing
            raise PlaypenError(
                f"learner '{self.name}' ({self.target}, from {self.distribution or 'a plugin'}) "
                f"cannot be imported: {error}; reinstall or uninstall that package"
            ) from error
        if not (isinstance(obj, type) and issubclass(obj, Learner)):
            raise PlaypenError(f"learner '{self.name}' points to {self.target}, which is not a "
                               f"playpen.learners.Learner subclass; fix the entry point")
        if not dataclasses.is_dataclass(getattr(obj, "config_class", None)):
            raise PlaypenError(f"learner '{self.name}' ({self.target}) has no dataclass "
                               f"config_class; set one")
        return obj

    def summary(self) -> str:
        """First line of the learner class docstring, or why the learner cannot be used.

        Never raises, so that ``playpen list learners`` shows every learner, broken ones too.
        """
        try:
            doc = (self.load().__doc__ or "").strip()
        except PlaypenError as error:
            cause = error.__cause__
            return f"(cannot be imported: {type(cause).__name__}: {cause})" if cause else f"({error})"
        return doc.splitlines()[0] if doc else ""


def installed_learners() -> dict[str, LearnerInfo]:
    """All learners: the ``playpen.learners`` entry points (the one way to publish a learner)."""
    targets: dict[str, str] = {}
    origins: dict[str, tuple[str | None, str | None]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        add_unique(targets, ep.name, ep.value, "learner name")
        origins[ep.name] = (ep.dist.metadata["Name"], ep.dist.version) if ep.dist else (None, None)
    return {name: LearnerInfo(name, targets[name], *origins[name]) for name in sorted(targets)}


def get_learner(name: str) -> tuple[LearnerInfo, type[Learner]]:
    """Look a learner up by name; an unknown name lists the installed ones."""
    table = installed_learners()
    if name not in table:
        raise PlaypenError(f"unknown learner '{name}'; installed learners: "
                           f"{', '.join(table) or 'none'} (see 'playpen list learners')")
    info = table[name]
    return info, info.load()
