"""``playpen play``: collect interaction data (episodes scored by clemcore) for ``playpen learn --dataset DIR``.

It plays as ``playpen eval`` does (the shared gameplay of :mod:`playpen.gameplay`: same selection, resume,
settings guard and failure reporting) on the train split by default, with an optional partner model
(``-t``) and ``-n`` repetitions. Repetition 1 is played into ``DIR/clem|static/...``, repetition k
into ``DIR/repeat_k/clem|static/...``, so each instance has ``n`` episodes and ``dpo_qlora --dataset
DIR`` finds pairs of episodes of the same instance that scored differently (on-policy preferences).
"""
from __future__ import annotations

import json
from pathlib import Path

from playpen import engines
from playpen.errors import PlaypenError
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

TRAIN_SPLIT = "train"


def repetition_root(results_dir: Path, repetition: int) -> Path:
    """Where repetition ``repetition`` (1-based) of ``playpen play`` is played."""
    return results_dir if repetition == 1 else results_dir / f"repeat_{repetition}"


def play_from_cli(args) -> None:
    """Play the selection ``-n`` times with MODEL (and PARTNER); write ``DIR/<players>.play.json``."""
    from clemcore.backends import Model

    from playpen.branching_play import check_branching_arguments

    args.max_branches = check_branching_arguments(args.branching, args.max_branches, args.temperature,
                                                  args.repetitions)
    if args.repetitions < 1:
        raise PlaypenError(f"-n must be >= 1 (episodes per instance), got {args.repetitions}")
    if args.repetitions > 1 and args.temperature <= 0:
        raise PlaypenError(f"-n {args.repetitions} plays each instance {args.repetitions} times, which gives "
                           f"different episodes only when sampling: pass -T above 0 (e.g. -T 0.7)")
    results_dir, gen_args = check_gameplay_arguments(args)
    names = [args.model] + ([args.partner] if args.partner else [])
    specs, template_kwargs = with_published_chat_template_kwargs(find_models(names))
    selection = select_from_cli(args, TRAIN_SPLIT)
    players = [specs[name] for name in names]
    run_dir = Model.to_identifier(names)
    results_dir.mkdir(parents=True, exist_ok=True)
    print(f"playpen play: {run_dir} plays {', '.join(selection.games())} "
          f"({selection.split.describe() if selection.split else 'all instances'}) "
          f"{args.repetitions} time(s) -> {results_dir}")
    failed: dict[str, list[str]] = {}
    episodes = {game: 0 for game in [*selection.games(), *selection.failed]}
    outcomes = {game: [] for game in episodes}  # scores.json of every repetition's episodes
    from playpen.console import library_chatter_to

    with library_chatter_to(results_dir / GAMEPLAY_LOG, verbose=args.verbose), \
            engines.engine_for_command(args, results_dir):  # --engine hf|vllm
        for repetition in range(1, args.repetitions + 1):
            problems, scored = _gameplay(args)(players, selection, repetition_root(results_dir, repetition), gen_args)
            for game, problem in problems.items():
                failed.setdefault(game, []).append(f"repetition {repetition}: {problem}")
            for game, files in scored.items():
                episodes[game] += len(files)
                outcomes[game] += files
    from playpen.progress import episode_outcomes, outcome_line

    counts = {game: episode_outcomes(files) for game, files in outcomes.items()}
    branching = {"factor": args.branching, "max_branches": args.max_branches} if args.branching else None
    summary = {"players": names, "repetitions": args.repetitions, "branching": branching, "gen_args": gen_args,
               "chat_template_kwargs": template_kwargs, **selection.to_json(), "episodes": episodes, "outcomes": counts,
               "failed_games": {game: "; ".join(lines) for game, lines in failed.items()}}
    atomic_write_text(results_dir / f"{run_dir}.play.json", json.dumps(summary, indent=2) + "\n")
    print(f"\n{run_dir}: episodes scored by clemcore ({results_dir / (run_dir + '.play.json')})")
    for game in episodes:
        failure = f"; FAILED: {summary['failed_games'][game]}" if game in failed else ""
        print(outcome_line(game, counts[game]) + failure)
    if failed:
        raise PlaypenError(f"some games failed (listed above and in {run_dir}.play.json 'failed_games'); fix the "
                           f"cause (clembench.log) and run the same command again: it plays only the missing episodes")
    print(f"train on them: playpen learn -l sft_qlora -m MODEL --dataset {results_dir}"
          + (" (or -l dpo_qlora for pairs of episodes that scored differently)" if args.repetitions > 1 else "")
          + (" (or -l dpo_qlora for turn-level pairs of branches that scored differently)" if branching else ""))


def _gameplay(args):
    """How ``play`` plays a repetition: ``(players, selection, root, gen_args) -> ({game: problem}, {game:
    [scores.json]})``; as trees with ``--branching`` (:mod:`playpen.branching_play`)."""
    from functools import partial

    if args.branching:
        from playpen.branching_play import play_tree_selection

        return partial(play_tree_selection, factor=args.branching, max_branches=args.max_branches)
    return partial(play_selection, batch_size=args.batch_size or DEFAULT_BATCH_SIZE)
