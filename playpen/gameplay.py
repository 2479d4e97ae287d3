"""What the two gameplay commands share: ``playpen eval`` (:mod:`playpen.evaluation`) and ``playpen play``
(:mod:`playpen.collecting`) sit side by side on this module, neither on the other.

Both check the same arguments before anything loads (:func:`check_gameplay_arguments`), select games and
instances the same way (:func:`select_from_cli`, :mod:`playpen.selection`), play with the published
setting's chat template arguments, refuse to resume into episodes played with other settings
(:func:`check_same_settings`) and play a selection into upstream's layout, ``<results>/clem/<players>/...``
and ``<results>/static/<players>/...`` (:func:`play_selection`, through :func:`playpen.playing.play_games`).
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from playpen import engines
from playpen.errors import PlaypenError
from playpen.files import atomic_write_text
from playpen.paths import refuse_file
from playpen.playing import check_generation_settings, play_games, scores_files
from playpen.secrets import without_secrets
from playpen.selection import Selection, select

# benchmarks/eval_throughput.py: batch 16 played 6.8x the episodes/min of clemcore's sequential
# runner (batch 8: 4.9x) with identical greedy responses. Models that cannot batch play sequentially.
DEFAULT_BATCH_SIZE = 16
GAMEPLAY_LOG = "playpen.log"  # library messages of an eval or play, in its results dir (playpen.console)


def select_from_cli(args, default_split: str) -> Selection:
    """The Selection of ``-g``/``--suite``, ``-e``, ``-i``, ``--split``, ``--split_source``, ``--split_revision``,
    ``--all_instances``."""
    if args.all_instances and (args.split or args.split_source or args.split_revision):
        raise PlaypenError("--all_instances plays every instance; drop --split/--split_source/--split_revision, "
                           "or drop --all_instances")
    return select(args.suite, args.game, experiment=args.experiment, instances=args.instances,
                  split=None if args.all_instances else args.split or default_split, split_source=args.split_source,
                  split_revision=args.split_revision)


def check_gameplay_arguments(args) -> tuple[Path, dict]:
    """What ``eval`` and ``play`` check before anything loads: ``-b``, ``-T``, ``-L`` and ``-r``.

    Returns the results directory (``playpen-eval/<timestamp>`` without ``-r``) and the generation arguments.
    """
    if args.batch_size is not None and args.batch_size < 1:
        raise PlaypenError(f"-b/--batch_size must be >= 1, got {args.batch_size}")
    check_generation_settings(args.temperature, args.max_tokens)
    results_dir = refuse_file(args.results_dir or Path("playpen-eval") / datetime.now().strftime("%Y-%m-%dT%H-%M-%S"),
                              "-r/--results_dir")
    return results_dir, dict(temperature=args.temperature, max_tokens=args.max_tokens)


def with_published_chat_template_kwargs(specs: dict) -> tuple[dict, dict]:
    """Each model with the published setting's chat template arguments its template reads (``enable_thinking:
    false``; what its registry entry sets wins): ``({name: ModelSpec}, {name: chat_template_kwargs})``."""
    from playpen import published

    pairs = {name: published.with_published_chat_template_kwargs(spec) for name, spec in specs.items()}
    return {name: spec for name, (spec, _) in pairs.items()}, {name: kwargs for name, (_, kwargs) in pairs.items()}


SETTINGS_FILE = "playpen_eval.json"


def _model_settings(model_spec) -> dict:
    """The registry entry (without secrets and without where it was looked up: a moved directory is the same
    model) and what plugins say identifies the model (``playpen_model_identity``)."""
    from playpen.plugins import pm

    entry = {key: value for key, value in model_spec.to_dict().items() if key != "lookup_source"}
    settings = {"model": without_secrets(entry)}
    for facts in pm.hook.playpen_model_identity(model_entry=entry):
        settings.update(facts or {})
    return settings


def check_same_settings(results_dir: Path, players: list, gen_args: dict, instances: dict) -> None:
    """Refuse to resume into episodes played with another model, adapter, partner or generation settings.

    ``<results_dir>/<players' run dir>/playpen_eval.json`` records the registry entry, the adapter's
    run manifest hash, the partner (``playpen play -t``), the generation arguments and each game's
    instances file of the first run.
    """
    from clemcore.backends import Model

    settings = {**_model_settings(players[0]), "gen_args": gen_args,
                "partner": _model_settings(players[1]) if len(players) > 1 else None,
                **engines.resume_settings()}  # --engine vllm only: files of hf runs stay as they were
    path = results_dir / Model.to_identifier([spec.model_name for spec in players]) / SETTINGS_FILE
    recorded = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    if recorded is not None:
        changed = [key for key in {**recorded, **settings}
                   if key != "instances" and recorded.get(key) != settings.get(key)]
        changed += [f"instances of {game}" for game, name in instances.items()
                    if game in recorded.get("instances", {}) and recorded["instances"][game] != name]
        if changed:
            raise PlaypenError(f"{path.parent} holds episodes of '{path.parent.name}' played with a different "
                               f"{', '.join(changed)}; pass another -r, or delete that directory to replay them")
        instances = {**recorded.get("instances", {}), **instances}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({**settings, "instances": instances}, indent=2) + "\n")


def play_selection(players: list, selection: Selection, root: Path, gen_args: dict, *, batch_size: int,
                   play: bool = True) -> tuple[dict, dict]:
    """Play (resuming) and score the selection with ``players`` under ``root``: ``clem/`` and ``static/``.

    Returns ``({game: problem} of the games that failed, {game: [scores.json of each selected episode that
    clemcore scored]})``; a game whose instances could not be read failed too. ``play --branching``'s
    :func:`playpen.branching_play.play_tree_selection` returns the same.
    """
    from clemcore.backends import Model

    run_dir = Model.to_identifier([spec.model_name for spec in players])
    failed, scored = dict(selection.failed), {}
    for tree, specs in selection.trees().items():
        if play:
            check_same_settings(root / tree, players, gen_args, {spec["game_name"]: selection.instances
                                                                 for spec in specs})
        problems = play_games(players, specs, root / tree, gen_args, instances=selection.instances,
                              experiment=selection.experiment, instances_filter=selection.instances_filter(),
                              batch_size=batch_size, play=play)
        failed.update({game: problem for game, problem in problems.items() if problem})
        for spec in specs:
            game = spec["game_name"]
            scored[game] = [path for key, path in sorted(scores_files(root / tree, run_dir, game).items())
                            if key in selection.wanted[game]]
    return failed, scored
