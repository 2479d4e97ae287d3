"""What a QLoRA learner trains on: ``--dataset`` loaded and checked against the evaluation split, the
held-out set set aside, as one :class:`TrainingData` value."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from playpen.api import PlaypenError


@dataclass
class TrainingData:
    """The rows a learner trains on and what the manifest says about them.

    Attributes:
        train: the training rows (a ``datasets.Dataset``, or what the learner's trainer takes).
        held_out: rows never trained on, evaluated every ``eval_steps``; None without a held-out set.
        fingerprint: identifies the training data (``--resume`` refuses other data).
        record: the manifest's ``data`` section.
        format: the row format of ``--dataset`` (e.g. ``conversational``), None where rows have none.
        facts: learner-specific manifest keys about how the rows are presented (loss masking, ...).
    """

    train: Any
    held_out: Any | None
    fingerprint: str
    record: dict
    format: str | None = None
    facts: dict = field(default_factory=dict)

    def map(self, transform) -> None:
        """Apply ``transform(rows, which)`` to the training and held-out rows (``which``: ``--dataset``
        or ``held-out``, for error messages)."""
        self.train = transform(self.train, "--dataset")
        if self.held_out is not None:
            self.held_out = transform(self.held_out, "held-out")


def chat_template_kwargs(model: dict) -> dict:
    """The registry entry's ``chat_template_kwargs`` (e.g. ``enable_thinking``), {} without any."""
    return (model.get("model_config") or {}).get("chat_template_kwargs") or {}


def with_chat_template_kwargs(dataset, model: dict):
    """Add the registry entry's ``chat_template_kwargs`` to every row.

    clemcore renders prompts with them at inference; TRL applies a row's ``chat_template_kwargs``
    when it renders that row, so training sees the same template.
    """
    kwargs = chat_template_kwargs(model)
    if kwargs:
        dataset = dataset.map(lambda row: {"chat_template_kwargs": dict(kwargs)})
    return dataset


def load_training_data(config, load) -> TrainingData:
    """Load ``--dataset`` with ``load(sources, exclude) -> (dataset, DataReport)`` (the learner's loader
    with its filters; ``exclude``: the evaluation split whose episodes are left out, or None), print
    what went in, and set the held-out set aside.
    """
    from playpen_tune.data.sources import EVAL_INSTANCES

    exclude, contamination = evaluation_split(config)
    dataset, report = load(config.dataset, exclude)
    excluded = sum(source["dropped"].get(EVAL_INSTANCES, 0) for source in report.sources)
    report.contamination = {**contamination, "excluded": excluded,
                            "summary": f"{excluded} conversation(s) left out ({exclude.describe()})" if exclude
                            else f"not checked: {contamination['reason']}"}
    for line in report.lines():
        print(line)
    dataset, held_out, held_out_record = _held_out_split(config, dataset, report, load)
    return TrainingData(train=dataset, held_out=held_out, fingerprint=report.fingerprint, format=report.format,
                        record=dict(report.to_dict(), held_out=held_out_record))


def evaluation_split(config):
    """The split whose instances training must not see, and the manifest record of the check.

    Returns ``(InstanceSplit or None, {"checked": bool, ...})``. Only episodes of results directories
    name their instance; rows of files and hub datasets cannot be checked. When the default split
    source cannot be read (offline, not cached) a warning says that the check was not made; an
    explicitly given ``--split_source`` that cannot be read is an error.
    """
    from playpen.api import EVAL_SPLIT, SplitSourceUnreadable, load_split
    from playpen_tune.data import source_kind

    if config.allow_eval_instances:
        return None, {"checked": False, "reason": "--allow_eval_instances"}
    if not any(source_kind(source) == "transcripts" for source in config.dataset):
        return None, {"checked": False, "reason": "no results directory among --dataset (rows of files and hub "
                                                  "datasets name no game instance)"}
    try:
        split = load_split(config.split_source or None, EVAL_SPLIT)
    except SplitSourceUnreadable as error:
        if config.split_source:
            raise PlaypenError(f"{error}; pass a readable --split_source (or a local .jsonl/.json/.csv file)") from None
        print(f"warning: {error}: training episodes were NOT checked against the evaluation split; pass "
              f"--split_source FILE to check them")
        return None, {"checked": False, "reason": f"default split source unreadable: {error}"}
    return split, {"checked": True, "split_source": split.source, "split": split.split}


def _check_held_out_differs(dataset, held_out) -> None:
    """Held-out examples that are also trained on measure memorisation: refuse when all are, warn when some are."""
    import json

    def key(row: dict) -> str:
        return json.dumps(row, sort_keys=True, ensure_ascii=False)

    trained = {key(row) for row in dataset}
    shared = sum(key(row) in trained for row in held_out)
    if shared == len(held_out):
        raise PlaypenError(f"all {shared} --eval_dataset examples are also in --dataset, so the held-out loss would "
                           f"measure memorisation, not generalisation; pass data that is not trained on, or "
                           f"--eval_fraction to hold out part of --dataset")
    if shared:
        print(f"warning: {shared} of the {len(held_out)} --eval_dataset examples are also in --dataset and are "
              f"trained on; the held-out loss is lower than on unseen data")


def _held_out_split(config, dataset, report, load):
    """Choose the held-out set: ``--eval_dataset`` (loaded with ``load``) or ``--eval_fraction`` of
    ``dataset``, or none. The held-out rows are never trained on."""
    if config.eval_dataset:
        held_out, held_out_report = load(config.eval_dataset, None)
        if held_out_report.format != report.format:
            raise PlaypenError(f"--eval_dataset rows are {held_out_report.format}, the --dataset rows "
                               f"{report.format}; give both in one format")
        for line in held_out_report.lines():
            print(f"held-out {line}")
        _check_held_out_differs(dataset, held_out)
        return dataset, held_out, held_out_report.to_dict()
    if not config.eval_fraction:
        return dataset, None, None
    size = round(len(dataset) * config.eval_fraction)
    if not 0 < size < len(dataset):
        raise PlaypenError(f"--eval_fraction {config.eval_fraction} of {len(dataset)} examples holds out {size}; "
                           f"choose a fraction that holds out at least one and leaves some to train on")
    split = dataset.train_test_split(test_size=size, seed=config.seed)
    print(f"held-out: {size} of the {len(dataset)} examples "
          f"(--eval_fraction {config.eval_fraction}, --seed {config.seed})")
    return split["train"], split["test"], {"held_out_fraction": config.eval_fraction, "total": size,
                                           "seed": config.seed, "drawn_from": report.fingerprint}
