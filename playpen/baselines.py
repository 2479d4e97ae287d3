"""``playpen eval --baseline``: a registered model to play, or a published run whose numbers are used as they are.

The published table's runs are public in upstream playpen's layout: ``<model>.val.json`` next to the
episodes under ``clem/<model>/`` and ``static/<model>/`` (clemcore's ``scores.json`` in each). Playing the
base again costs hours on a GPU and, with another clemcore or backend version, gives other numbers than
the published ones. A published baseline is read, not played: with episodes, clemcore's table
(:func:`playpen.evaluation.clemcore_table`) is computed over the episodes the tuned model was evaluated
on (a selected episode missing from the published run fails its game, with the reason); without them,
the val.json's own numbers are used. The comparison names the source.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from playpen.errors import PlaypenError

VAL_SUFFIX = ".val.json"


@dataclass(frozen=True)
class PublishedBaseline:
    """A baseline read from a published run: its val.json and the model it names."""

    val_json: Path
    model: str

    @property
    def root(self) -> Path:
        return self.val_json.parent

    def has_episodes(self) -> bool:
        return any((self.root / tree / self.model).is_dir() for tree in ("clem", "static"))

    def source(self) -> dict:
        """val.json's ``baseline_source``: what the comparison's baseline numbers come from."""
        return {"kind": "published run" if self.has_episodes() else "val.json", "model": self.model,
                "path": str(self.val_json.resolve()),
                "numbers": ("clemcore's scores of its episodes of the instances played here" if self.has_episodes()
                            else "the val.json's own numbers")}


def published_baseline(value: str) -> PublishedBaseline | None:
    """The published run ``--baseline`` names (a ``*.val.json`` file or a directory holding one), or None when it
    names a model. A named file that is absent or malformed is an error naming it."""
    path = Path(value).expanduser()
    if path.is_dir() and not (path / "config.json").is_file():  # a model directory is a model
        found = sorted(path.glob(f"*{VAL_SUFFIX}"))
        if len(found) != 1:
            listed = ", ".join(p.name for p in found) or "none"
            raise PlaypenError(f"--baseline {value}: a results directory must hold one <model>{VAL_SUFFIX} "
                               f"(found: {listed}); pass the file itself, e.g. --baseline {path / 'MODEL'}{VAL_SUFFIX}")
        path = found[0]
    elif not value.endswith(".json"):
        return None
    if not path.is_file():
        raise PlaypenError(f"--baseline {value} does not exist; pass a <model>{VAL_SUFFIX} file, a results "
                           f"directory holding one, or a registered model")
    read_val_json(path)
    return PublishedBaseline(val_json=path, model=path.name[:-len(VAL_SUFFIX)] if path.name.endswith(VAL_SUFFIX)
                             else path.stem)


def read_val_json(path: Path) -> dict:
    """A val.json document: an object with a ``clemscore`` or ``statscore`` (upstream's and playpen's both do)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise PlaypenError(f"--baseline {path} cannot be read as JSON ({error}); pass a val.json written by "
                           f"playpen eval") from None
    if not isinstance(document, dict) or not any(key in document for key in ("clemscore", "statscore")):
        raise PlaypenError(f"--baseline {path} is not a val.json (an object with clemscore or statscore); pass "
                           f"the <model>{VAL_SUFFIX} of an eval run")
    return document


def evaluate_published(baseline: PublishedBaseline, selection):
    """The baseline's ModelEvaluation on ``selection``: clemcore's table over its selected episodes, or the
    val.json's numbers when the run has no episodes."""
    from playpen.evaluation import ModelEvaluation, clemcore_table, summarize
    from playpen.playing import scores_files
    from playpen.suites import eval_suites

    document = read_val_json(baseline.val_json)
    if not baseline.has_episodes():
        games = {game: _game_numbers(numbers) for game, numbers in (document.get("games") or {}).items()
                 if game in selection.wanted and isinstance(numbers, dict) and "% played" in numbers}
        scores = {suite.score: document.get(suite.score) for suite in eval_suites().values()}
        return ModelEvaluation(model=baseline.model, games=games, failed=dict(document.get("failed_games") or {}),
                               scores=scores)
    scored, failed = {}, {}
    for tree, specs in selection.trees().items():
        for spec in specs:
            game = spec["game_name"]
            files = scores_files(baseline.root / tree, baseline.model, game)
            scored[game] = [path for key, path in sorted(files.items()) if key in selection.wanted[game]]
            missing = len(selection.wanted[game]) - len(scored[game])
            if missing:
                failed[game] = (f"{missing} of {len(selection.wanted[game])} selected episodes are not in the "
                                f"published run {baseline.root} ({tree}/{baseline.model}/{game})")
    table = clemcore_table(baseline.root, {baseline.model: scored}, write_tables=False)
    return summarize(baseline.model, table, selection.suites, failed, scored)


def _game_numbers(numbers: dict) -> dict:
    """One game's numbers of a val.json, with its score (% played x quality / 100) where the file has none."""
    score = numbers.get("score")
    if score is None and numbers.get("% played") is not None:
        score = round(numbers["% played"] / 100 * (numbers.get("quality score") or 0.0), 2)
    return {**numbers, "score": score}
