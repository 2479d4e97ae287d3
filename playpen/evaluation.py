"""``playpen eval``: play games with clemcore, score them with clemcore, write val.json, compare.

Nothing here computes a game score: gameplay is clemcore's runner (through
:func:`playpen.playing.play_games`, which loads each model once for all games), episode scoring is
``clemcore.cli.score`` and the table (clemscore, % played, quality score) is
``clemcore.clemeval.perform_evaluation``. playpen adds plugin backends, resume, per-game
failure tracking, ``<model>.val.json`` and the baseline comparison.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from playpen.errors import PlaypenError
from playpen.paths import refuse_file
from playpen.playing import check_generation_settings, play_games, scores_files, selected_episodes
from playpen.registry import atomic_write_text
from playpen.secrets import without_secrets

# benchmarks/eval_throughput.py: batch 16 played 6.8x the episodes/min of clemcore's sequential
# runner (batch 8: 4.9x) with identical greedy responses. Models that cannot batch play sequentially.
DEFAULT_BATCH_SIZE = 16
EVAL_LOG = "playpen.log"  # library messages of an eval, in its results dir (playpen.console)
SUITES = {"clem": {"benchmark": ["2.0"]}, "static": {"benchmark": ["static_1.0"]}}
NO_GAMES_HELP = ("create ./game_registry.json pointing at your clembench checkout, e.g. "
                 "[{\"benchmark_path\": \"/path/to/clembench\"}], or set CLEMBENCH_HOME")


@dataclass
class ModelEvaluation:
    """One model's results: clemcore's numbers plus what failed."""

    model: str
    games: dict = field(default_factory=dict)  # game -> {"% played", "quality score", "score", "episodes"}
    failed: dict = field(default_factory=dict)  # game -> error message
    clemscore: float | None = None
    statscore: float | None = None
    suites: dict = field(default_factory=dict)  # suite -> {"score", "games"}

    def to_json(self) -> dict:
        return {"clemscore": self.clemscore, "statscore": self.statscore, "model": self.model,
                "games": self.games, "failed_games": self.failed, "suites": self.suites}


def select_games(suite: str, game: str | None) -> dict[str, list]:
    """``{suite_name: [GameSpec, ...]}``; ``-g`` replaces the suite selection."""
    from clemcore.clemgame import GameRegistry

    registry = GameRegistry.from_directories_and_cwd_files()
    if len(registry) == 0:
        raise PlaypenError(f"no clemgames found; {NO_GAMES_HELP}")
    wanted = {"game": game} if game else {name: sel for name, sel in SUITES.items() if suite in (name, "all")}
    selected = {}
    for name, selector in wanted.items():
        try:
            specs = registry.get_game_specs_that_unify_with(
                json.dumps(selector) if isinstance(selector, dict) else selector, verbose=False)
        except ValueError:
            specs = []
        if not specs and (game or suite != "all"):
            names = ", ".join(sorted(spec["game_name"] for spec in registry)) or "none"
            raise PlaypenError(f"no game matches {selector!r}; known games: {names} "
                               f"(see 'playpen list games'; {NO_GAMES_HELP})")
        if specs:
            unique = {}  # a game found twice (game_registry.json and a subdirectory) is played once
            for spec in specs:
                unique.setdefault(spec["game_name"], spec)
            selected[name] = list(unique.values())
    if not selected:
        raise PlaypenError(f"no games of benchmark 2.0 or static_1.0 in the game registry; pass -g GAME or "
                           f"{NO_GAMES_HELP}")
    return selected


SETTINGS_FILE = "playpen_eval.json"


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def check_same_settings(results_dir: Path, model_spec, gen_args: dict, instances: dict) -> None:
    """Refuse to resume into episodes played with another model, adapter or generation settings.

    ``<results_dir>/<model>/playpen_eval.json`` records the registry entry, the adapter's run
    manifest hash, the generation arguments and each game's instances file of the first run.
    """
    entry = model_spec.to_dict()
    adapter = (entry.get("model_config") or {}).get("peft_model")
    settings = {"model": without_secrets(entry), "gen_args": gen_args,
                "adapter_manifest_sha256": _sha256(Path(adapter) / "playpen_run.json") if adapter else None}
    path = results_dir / model_spec.model_name / SETTINGS_FILE
    recorded = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    if recorded is not None:
        changed = [key for key in settings if recorded.get(key) != settings[key]]
        changed += [f"instances of {game}" for game, name in instances.items()
                    if game in recorded.get("instances", {}) and recorded["instances"][game] != name]
        if changed:
            raise PlaypenError(f"{path.parent} holds episodes of '{model_spec.model_name}' played with a different "
                               f"{', '.join(changed)}; pass another -r, or delete that directory to replay them")
        instances = {**recorded.get("instances", {}), **instances}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({**settings, "instances": instances}, indent=2) + "\n")


def clemcore_table(results_dir: Path, selection: dict[str, dict[str, dict]]):
    """clemcore's results table over the selected episodes only, or None when none was scored.

    ``selection`` is ``{model: {game: {(experiment, game_id): scores.json path}}}``. clemcore's
    ``perform_evaluation`` counts every ``scores.json`` under a directory, so the selected ones
    are copied into a temporary directory of the same layout first: episodes played into the
    same ``-r`` by earlier runs with another ``-e`` do not count, and a model and its baseline
    are scored on the same episodes. clemcore's raw.csv and results.csv/.html of the selection
    are then copied into ``results_dir``.
    """
    from clemcore import clemeval

    with tempfile.TemporaryDirectory(prefix="playpen-eval-") as view:
        for scores in (path for games in selection.values() for episodes in games.values()
                       for path in episodes.values()):
            target = Path(view) / scores.relative_to(results_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(scores, target)
        if not any(Path(view).rglob("scores.json")):
            return None
        with contextlib.redirect_stdout(io.StringIO()):  # its progress lines name the temporary directory
            table = clemeval.perform_evaluation(view, return_dataframe=True)
        for name in ("raw.csv", "results.csv", "results.html"):
            atomic_write_text(results_dir / name, (Path(view) / name).read_text(encoding="utf-8"))
    return table


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def summarize(model: str, table, suites: dict[str, list], failed: dict, scored: dict[str, dict]) -> ModelEvaluation:
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
            played = _number(row.get(f"{name}, % Played")) if row is not None else None
            quality = _number(row.get(f"{name}, Quality Score")) if row is not None else None
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
    evaluation.clemscore = evaluation.suites.get("clem", evaluation.suites.get("game", {})).get("score")
    evaluation.statscore = evaluation.suites.get("static", {}).get("score")
    return evaluation


def evaluate(models: list[str], suite: str, game: str | None, results_dir: Path, gen_args: dict,
             experiment: str | None = None, instances: str | None = None, batch_size: int = 1,
             skip_gameplay: bool = False) -> dict[str, ModelEvaluation]:
    """Evaluate each model on the selected games into ``results_dir``; write ``<model>.val.json``."""
    from clemcore.backends import ModelSpec

    from playpen.clemcore_bridge import install_plugin_backends, model_registry

    install_plugin_backends()
    registry = model_registry()
    specs = {}
    for name in models:
        selector = ModelSpec.from_name(name)  # 'mock'/'programmatic': clemcore's scripted players, as in clem run
        matches = ([selector] if selector.is_programmatic()
                   else [spec for spec in registry if spec["model_name"] == name])
        if not matches:
            raise PlaypenError(f"unknown model '{name}'; see 'playpen list models'")
        specs[name] = matches[0]
    suites = select_games(suite, game)
    games = {g["game_name"]: g for gs in suites.values() for g in gs}
    wanted = {name: selected_episodes(spec, instances, experiment) for name, spec in games.items()}
    if experiment and not any(wanted.values()):
        raise PlaypenError(f"no instances of experiment '{experiment}' in {', '.join(games)}; check -e and -i")
    suites = {suite_name: [g for g in game_specs if wanted[g["game_name"]]]  # -e leaves some games nothing to play
              for suite_name, game_specs in suites.items()}
    results_dir.mkdir(parents=True, exist_ok=True)
    playable = [game_spec for name, game_spec in games.items() if wanted[name]]
    failures: dict[str, dict] = {}
    for name, spec in specs.items():
        if not skip_gameplay:
            check_same_settings(results_dir, spec, gen_args, {g: instances for g in games})
        print(f"playpen eval: {name} {'scores' if skip_gameplay else 'plays'} "
              f"{', '.join(g['game_name'] for g in playable)} -> {results_dir}")
        problems = play_games([spec], playable, results_dir, gen_args, instances=instances,
                              experiment=experiment, batch_size=batch_size, play=not skip_gameplay)
        failures[name] = {game: problem for game, problem in problems.items() if problem}
    scored = {name: {game: {key: path for key, path in scores_files(results_dir, name, game).items()
                            if key in episodes} for game, episodes in wanted.items()} for name in models}
    table = clemcore_table(results_dir, scored)
    evaluations = {}
    for name in models:
        evaluation = summarize(name, table, suites, failures[name], scored[name])
        atomic_write_text(results_dir / f"{name}.val.json", json.dumps(evaluation.to_json(), indent=2) + "\n")
        evaluations[name] = evaluation
    return evaluations


def evaluate_from_cli(args) -> None:
    from playpen.comparison import print_summary, write_comparison

    if args.batch_size is not None and args.batch_size < 1:
        raise PlaypenError(f"-b/--batch_size must be >= 1, got {args.batch_size}")
    if args.skip_gameplay and not args.results_dir:
        raise PlaypenError("--skip_gameplay scores episodes played earlier: pass their directory with -r")
    results_dir = refuse_file(args.results_dir or Path("playpen-eval") / datetime.now().strftime("%Y-%m-%dT%H-%M-%S"),
                              "-r/--results_dir")
    check_generation_settings(args.temperature, args.max_tokens)
    models = [args.model] + ([args.baseline] if args.baseline and args.baseline != args.model else [])
    from playpen.console import library_chatter_to

    with library_chatter_to(results_dir / EVAL_LOG, verbose=getattr(args, "verbose", False)):
        evaluations = evaluate(models, args.suite, args.game, results_dir,
                               dict(temperature=args.temperature, max_tokens=args.max_tokens),
                               experiment=args.experiment, instances=args.instances,
                               batch_size=args.batch_size or DEFAULT_BATCH_SIZE, skip_gameplay=args.skip_gameplay)
    tuned = evaluations[args.model]
    print_summary(tuned, results_dir)
    if args.baseline and args.baseline != args.model:
        write_comparison(evaluations[args.baseline], tuned, results_dir)
    if any(evaluation.failed for evaluation in evaluations.values()):
        raise PlaypenError("some games failed (listed above and in val.json 'failed_games'); "
                           "their scores are missing, not zero")
