"""``playpen eval``: play games with clemcore, score them with clemcore, write val.json, compare.

Nothing here computes a game score: gameplay is clemcore's runner (through
:func:`playpen.playing.play_games`, which loads each model once for all games), episode scoring is
``clemcore.cli.score`` and the table (clemscore, % played, quality score) is
``clemcore.clemeval.perform_evaluation``. playpen adds plugin backends, resume, per-game
failure tracking, ``<model>.val.json`` and the baseline comparison.

By default the validation split of the split source is played (:mod:`playpen.selection`), into
upstream's layout: ``<results>/clem/<model>/...`` and ``<results>/static/<model>/...``, by the gameplay
``playpen play`` (:mod:`playpen.collecting`) shares (:mod:`playpen.gameplay`).
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from playpen import engines
from playpen.errors import PlaypenError
from playpen.faults import resumable
from playpen.files import atomic_write_text
from playpen.gameplay import (
    DEFAULT_BATCH_SIZE,
    GAMEPLAY_LOG,
    check_gameplay_arguments,
    play_selection,
    select_from_cli,
    with_published_chat_template_kwargs,
)
from playpen.models import find_models
from playpen.scores import score_number
from playpen.selection import Selection
from playpen.splits import EVAL_SPLIT
from playpen.suites import GAME_SUITE, eval_suites


@dataclass
class ModelEvaluation:
    """One model's results: clemcore's numbers plus what failed."""

    model: str
    games: dict = field(default_factory=dict)  # game -> {"% played", "quality score", "score", "episodes"}
    failed: dict = field(default_factory=dict)  # game -> error message
    scores: dict = field(default_factory=dict)  # score name of every suite (playpen.suites) -> value or None
    suites: dict = field(default_factory=dict)  # suite -> {"score", "games"}
    instances: dict = field(default_factory=dict)  # Selection.to_json: split source, split, ids played
    settings: dict = field(default_factory=dict)  # model_settings: backend, quantization, adapter, generation

    def to_json(self) -> dict:
        return {**self.scores, "model": self.model, "games": self.games, "failed_games": self.failed,
                "suites": self.suites, **self.instances, "model_settings": self.settings}

    @classmethod
    def from_json(cls, document: dict) -> ModelEvaluation:
        """The evaluation a ``<model>.val.json`` document describes (what :meth:`to_json` wrote)."""
        from playpen.suites import score_names

        known = {"model", "games", "failed_games", "suites", "model_settings", *score_names()}
        return cls(model=document["model"], games=document["games"], failed=document["failed_games"],
                   scores={key: document.get(key) for key in score_names()}, suites=document.get("suites", {}),
                   instances={key: value for key, value in document.items() if key not in known},
                   settings=document.get("model_settings", {}))


def model_settings(model_spec, gen_args: dict) -> dict:
    """How a model was played: backend, weights, quantization, adapter and generation settings (val.json's
    ``model_settings``). A plugin describes its own backends (``playpen_model_loading``); for clemcore's
    ``huggingface_local`` the quantization its registry entry asks for (else none: the checkpoint's dtype)."""
    from playpen.plugins import pm

    entry = model_spec.to_dict()
    config = entry.get("model_config") or {}
    loading = pm.hook.playpen_model_loading(model_entry=entry)
    if loading is None:
        bitsandbytes = {key: config[key] for key in ("load_in_4bit", "load_in_8bit") if config.get(key)}
        loading = {"quantization": bitsandbytes or None, "adapter": config.get("peft_model")}
    return {"backend": entry.get("backend", "scripted (clemcore's mock/programmatic players)"),
            "weights": entry.get("huggingface_id"), **loading, "generation": dict(gen_args)}


def describe_settings(settings: dict) -> str:
    """One line of :func:`model_settings`:
    ``playpen_qlora, 4-bit nf4 (double quant), compute float32, adapter X; ...``."""
    if not settings:
        return "not recorded"
    quantization = settings.get("quantization")
    if not quantization:
        loaded = "unquantized (the checkpoint's dtype)" if settings.get("weights") else "no weights"
    elif quantization.get("load_in_4bit"):
        loaded = (f"4-bit {quantization.get('bnb_4bit_quant_type', 'fp4 (bitsandbytes default)')}"
                  + (" (double quant)" if quantization.get("bnb_4bit_use_double_quant") else "")
                  + (f", compute {quantization['bnb_4bit_compute_dtype']}"
                     if "bnb_4bit_compute_dtype" in quantization else ""))
    else:
        loaded = "8-bit" if quantization.get("load_in_8bit") else str(quantization)
    adapter = f", adapter {settings['adapter']}" if settings.get("adapter") else ""
    generation = ", ".join(f"{key} {value}" for key, value in settings.get("generation", {}).items())
    return f"{settings.get('backend')}, {loaded}{adapter}; {generation}"


BASE_4BIT_SUFFIX = "@4bit"


def four_bit_baseline(tuned_spec, base_spec):
    """``(name, ModelSpec)`` of the base loaded exactly as the tuned model's base (``eval --baseline_4bit``):
    the tuned entry without its adapter, with the quantization its adapter was trained with. clemcore can load
    it in this process; no registry file is changed."""
    from clemcore.backends import ModelSpec

    from playpen.clemcore_bridge import add_transient_model
    from playpen.plugins import pm

    tuned = tuned_spec.to_dict()
    loading = pm.hook.playpen_model_loading(model_entry=tuned)
    if not loading or not loading.get("adapter") or not loading.get("quantization"):
        raise PlaypenError(f"--baseline_4bit plays the base on the quantized base '{tuned['model_name']}' was trained "
                           f"on, but '{tuned['model_name']}' is not a tuned model with a quantized base; "
                           f"drop --baseline_4bit")
    base = base_spec.to_dict()
    if (pm.hook.playpen_model_loading(model_entry=base) or {}).get("adapter"):
        raise PlaypenError(f"--baseline_4bit: '{base['model_name']}' is itself a tuned model; pass the base "
                           f"'{tuned['model_name']}' was trained on ({tuned.get('huggingface_id')}) as --baseline")
    if base.get("huggingface_id") != tuned.get("huggingface_id"):
        raise PlaypenError(f"--baseline_4bit: '{tuned['model_name']}' was trained on {tuned.get('huggingface_id')}, "
                           f"not on '{base['model_name']}' ({base.get('huggingface_id')}); pass its base as --baseline")
    name = base["model_name"] + BASE_4BIT_SUFFIX
    config = {key: value for key, value in tuned["model_config"].items() if key != "peft_model"}
    entry = {**{key: value for key, value in tuned.items() if key != "lookup_source"}, "model_name": name,
             "base_model": base["model_name"], "model_config": {**config, "quantization": loading["quantization"]}}
    add_transient_model(entry)
    return name, ModelSpec.from_dict(entry)


def clemcore_table(results_dir: Path, selection: dict[str, dict[str, list]], write_tables: bool = True):
    """clemcore's results table over the selected episodes only, or None when none was scored.

    ``selection`` is ``{model: {game: [scores.json path of each selected episode]}}``. clemcore's
    ``perform_evaluation`` counts every ``scores.json`` under a directory, so the selected ones
    are copied into a temporary directory of the same layout first: episodes played into the
    same ``-r`` by earlier runs with another ``-e`` do not count, and a model and its baseline
    are scored on the same episodes. clemcore's raw.csv and results.csv/.html of the selection
    are then copied into ``results_dir`` (unless ``write_tables`` is False: a published run is only read).
    """
    from clemcore import clemeval

    from playpen.clemcore_bridge import install_logged_progress_bars

    install_logged_progress_bars()
    with tempfile.TemporaryDirectory(prefix="playpen-eval-") as view:
        for scores in (path for games in selection.values() for episodes in games.values() for path in episodes):
            target = Path(view) / scores.relative_to(results_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(scores, target)
        if not any(Path(view).rglob("scores.json")):
            return None
        with contextlib.redirect_stdout(io.StringIO()):  # its progress lines name the temporary directory
            table = clemeval.perform_evaluation(view, return_dataframe=True)
        for name in ("raw.csv", "results.csv", "results.html") if write_tables else ():
            atomic_write_text(results_dir / name, (Path(view) / name).read_text(encoding="utf-8"))
    return table


def summarize(model: str, table, suites: dict[str, list], failed: dict, scored: dict[str, list]) -> ModelEvaluation:
    """Read one model's row of clemcore's table into a ModelEvaluation (per game and per suite).

    ``scored`` is ``{game: episodes counted}``, reported as each game's ``episodes``.
    """
    evaluation = ModelEvaluation(model=model, failed=dict(failed))
    row = table.loc[model] if table is not None and model in table.index else None
    for suite, specs in suites.items():
        scores = []
        for spec in specs:
            name = spec["game_name"]
            if name in failed:
                continue
            played = score_number(row.get(f"{name}, % Played")) if row is not None else None
            quality = score_number(row.get(f"{name}, Quality Score")) if row is not None else None
            if played is None:
                evaluation.failed.setdefault(name, "no scores found for this game")
                continue
            evaluation.games[name] = {"% played": played, "quality score": quality,
                                      "score": round(played / 100 * (quality or 0.0), 2),
                                      "episodes": len(scored[name])}
            scores.append(evaluation.games[name])
        if scores:  # clemscore formula of clemcore.clemeval, over this suite's games
            played = sum(s["% played"] for s in scores) / len(scores)
            qualities = [s["quality score"] for s in scores if s["quality score"] is not None]
            quality = sum(qualities) / len(qualities) if qualities else 0.0
            score = round(played / 100 * quality, 2)
        else:
            score = None
        evaluation.suites[suite] = {"score": score, "games": [s["game_name"] for s in specs]}
    for name, suite in eval_suites().items():
        played = evaluation.suites.get(name, evaluation.suites.get(GAME_SUITE, {}) if name == "clem" else {})
        evaluation.scores[suite.score] = played.get("score")
    return evaluation


def comparability(selection: Selection, gen_args: dict, chat_template_kwargs: dict, spec) -> dict:
    """val.json's generation and chat template arguments, the published setting they match, and whether the
    numbers are leaderboard-comparable (and why not)."""
    from playpen.published import published_record

    record = published_record(gen_args, chat_template_kwargs, spec)
    reasons = selection.not_comparable() + record.pop("not_comparable_because")
    return {**record, "leaderboard_comparable": not reasons, "not_comparable_because": reasons}


def evaluate(specs: dict, selection: Selection, results_dir: Path, gen_args: dict,
             batch_size: int = 1, skip_gameplay: bool = False, chat_template_kwargs: dict | None = None,
             baseline_sources: dict | None = None) -> dict[str, ModelEvaluation]:
    """Evaluate each model (``{name: ModelSpec}``, see :func:`playpen.models.find_models`) on the selection into
    ``results_dir``; write ``<model>.val.json``. ``chat_template_kwargs``: ``{name: the arguments it plays with}``
    (see :func:`with_published_chat_template_kwargs`); ``baseline_sources``: ``{name: where the numbers it is
    compared with come from}``; both recorded in val.json."""
    results_dir.mkdir(parents=True, exist_ok=True)
    failures, scored = {}, {}
    for name, spec in specs.items():
        print(f"playpen eval: {name} {'scores' if skip_gameplay else 'plays'} {', '.join(selection.games())} "
              f"({selection.split.describe() if selection.split else 'all instances'}) -> {results_dir}")
        failures[name], scored[name] = play_selection([spec], selection, results_dir, gen_args,
                                                      batch_size=batch_size, play=not skip_gameplay)
    table = clemcore_table(results_dir, scored)
    evaluations = {}
    for name in specs:
        evaluation = summarize(name, table, selection.suites, failures[name], scored[name])
        evaluation.instances = {**selection.to_json(), **comparability(
            selection, gen_args, (chat_template_kwargs or {}).get(name, {}), specs[name])}
        if name in (baseline_sources or {}):
            evaluation.instances["baseline_source"] = baseline_sources[name]
        evaluation.settings = {**model_settings(specs[name], gen_args), **engines.engine_settings(specs[name])}
        atomic_write_text(results_dir / f"{name}.val.json", json.dumps(evaluation.to_json(), indent=2) + "\n")
        evaluations[name] = evaluation
    return evaluations


def baseline_source(baseline: str | None, published, results_dir: Path) -> dict | None:
    """val.json's ``baseline_source``: a published run (:mod:`playpen.baselines`) or the model played here."""
    if published is not None:
        return published.source()
    if baseline is None:
        return None
    return {"kind": "played", "model": baseline, "path": str((results_dir / f"{baseline}.val.json").resolve()),
            "numbers": "played and scored by clemcore in this eval"}


def evaluate_from_cli(args) -> None:
    from playpen.baselines import evaluate_published, published_baseline
    from playpen.comparison import print_summary, write_comparison

    if args.skip_gameplay and not args.results_dir:
        raise PlaypenError("--skip_gameplay scores episodes played earlier: pass their directory with -r")
    if args.baseline == args.model:
        raise PlaypenError(f"--baseline {args.baseline} is the model being evaluated; a comparison with itself "
                           f"shows nothing: pass another model as --baseline (e.g. the base it was tuned from)")
    results_dir, gen_args = check_gameplay_arguments(args)
    published = published_baseline(args.baseline) if args.baseline else None
    played_baseline = args.baseline if args.baseline and not published else None
    specs = find_models([args.model] + ([played_baseline] if played_baseline else []))
    if args.baseline_4bit:
        if not played_baseline:
            raise PlaypenError("--baseline_4bit changes how --baseline is loaded; pass --baseline BASE too (a "
                               "registered model, not a published run)")
        played_baseline, specs[played_baseline] = four_bit_baseline(specs[args.model], specs.pop(args.baseline))
    specs, template_kwargs = with_published_chat_template_kwargs(specs)
    selection = select_from_cli(args, EVAL_SPLIT)
    from playpen.console import library_chatter_to

    with resumable({"-r": results_dir}), library_chatter_to(results_dir / GAMEPLAY_LOG, verbose=args.verbose), \
            engines.engine_for_command(args, results_dir):  # --engine hf|vllm
        evaluations = evaluate(specs, selection, results_dir, gen_args,
                               batch_size=args.batch_size or DEFAULT_BATCH_SIZE, skip_gameplay=args.skip_gameplay,
                               chat_template_kwargs=template_kwargs,
                               baseline_sources={args.model: baseline_source(args.baseline, published, results_dir)}
                               if args.baseline else None)
        baseline = evaluate_published(published, selection) if published else evaluations.get(played_baseline)
    tuned = evaluations[args.model]
    print_summary(tuned, results_dir)
    reasons = tuned.instances["not_comparable_because"]
    if reasons:
        print(f"note: not comparable with the playpen leaderboard: {'; '.join(reasons)}")
    if baseline is not None:
        write_comparison(baseline, tuned, results_dir, tuned.instances.get("baseline_source"))
    if any(evaluation.failed for evaluation in [*evaluations.values(), *([baseline] if published else [])]):
        raise PlaypenError("some games failed (listed above and in val.json 'failed_games'); "
                           "their scores are missing, not zero")
