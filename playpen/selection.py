"""What ``playpen eval`` and ``playpen play`` play: the games of a suite (or ``-g``), their instances
file (``-i``), an experiment (``-e``) and the instances of a split (``--split``, ``--split_source``).

The split is checked against the game registry before anything is played: a game, experiment or
instance id of the split that the registry's games do not have is an error, never skipped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from playpen.errors import PlaypenError
from playpen.playing import InstancesUnreadable, selected_episodes
from playpen.splits import (
    DEFAULT_SPLIT_SOURCE,
    EVAL_SPLIT,
    HUB_CONFIGS,
    InstanceSplit,
    SplitSourceUnreadable,
    load_split,
)
from playpen.suites import GAME_SUITE, STATIC_BENCHMARK, eval_suites

NO_GAMES_HELP = ("create ./game_registry.json pointing at your clembench checkout, e.g. "
                 "[{\"benchmark_path\": \"/path/to/clembench\"}], or set CLEMBENCH_HOME")


@dataclass
class Selection:
    """The games and episodes one command plays."""

    suites: dict  # suite ("clem", "static" or "game" for -g) -> [GameSpec] with something to play
    wanted: dict  # game -> {(experiment, game_id)}
    split: InstanceSplit | None  # None: --all_instances
    instances: str | None  # -i
    experiment: str | None  # -e
    whole_suites: bool  # --suite all, without -g
    failed: dict = field(default_factory=dict)  # game -> why its instances could not be read (a failed game)

    def games(self) -> dict:
        """``{game name: GameSpec}`` of the games with something to play."""
        return {spec["game_name"]: spec for specs in self.suites.values() for spec in specs}

    def trees(self) -> dict[str, list]:
        """``{"clem" | "static": [GameSpec]}``: the results subdirectory each game is played into
        (upstream's layout: the static suite's games under ``static/``, all others under ``clem/``)."""
        trees: dict[str, list] = {}
        for spec in self.games().values():
            benchmarks = spec["benchmark"] if "benchmark" in spec else []
            trees.setdefault("static" if STATIC_BENCHMARK in benchmarks else "clem", []).append(spec)
        return trees

    def instances_filter(self):
        return self.split.instances_filter() if self.split else None

    def not_comparable(self) -> list[str]:
        """Why this selection's numbers are not comparable with the playpen leaderboard (empty list: they are;
        generation settings: :mod:`playpen.published`)."""
        reasons = []
        if self.split is None:
            reasons.append("--all_instances: every instance was played, not the validation split")
        elif self.split.source != DEFAULT_SPLIT_SOURCE or self.split.split != EVAL_SPLIT:
            reasons.append(f"played {self.split.describe()}, not split '{EVAL_SPLIT}' of {DEFAULT_SPLIT_SOURCE}")
        if not self.whole_suites:
            reasons.append("only some games were played (-g or --suite)")
        if self.experiment or self.instances:
            reasons.append("-e or -i restricted the instances")
        return reasons

    def to_json(self) -> dict:
        """The instances played: split source, split (None for --all_instances), -i, -e and the ids per game."""
        return {"split_source": self.split.source if self.split else None,
                "split": self.split.split if self.split else None,
                "split_revision": self.split.revision if self.split else None,
                "all_instances": self.split is None, "instances_file": self.instances, "experiment": self.experiment,
                "instances": {game: [list(key) for key in sorted(self.wanted[game])] for game in self.games()}}


def select(suite: str, game: str | None, *, experiment: str | None = None, instances: str | None = None,
           split: str | None = None, split_source: str | None = None, offer_all_instances: bool = True,
           split_revision: str | None = None) -> Selection:
    """Resolve the games and episodes to play; ``split`` None plays every instance (``--all_instances``).

    ``offer_all_instances`` False: the calling command has no ``--all_instances``, so its errors do not suggest it.
    ``split_revision``: the revision of a hub split source (``--split_revision``).
    """
    from playpen.clemcore_bridge import game_registry

    registry = game_registry()
    suites = select_games(registry, suite, game)
    failed = _unreadable_instances(suites, instances)
    specs = [spec for specs in suites.values() for spec in specs if spec["game_name"] not in failed]
    if experiment and specs and not any(selected_episodes(spec, instances, experiment) for spec in specs):
        raise PlaypenError(f"no instances of experiment '{experiment}' in "
                           f"{', '.join(spec['game_name'] for spec in specs)}; check -e and -i")
    instance_split = None if split is None else _load(split_source, split, suite if not game else "all",
                                                      offer_all_instances, split_revision)
    known = {spec["game_name"] for spec in registry}
    if instance_split is not None:
        missing = sorted(instance_split.games() - known)
        if missing and game:
            print(f"note: {instance_split.describe()} also names game(s) missing from the game registry: "
                  f"{', '.join(missing)}; -g plays only {game}")
        elif missing:
            raise PlaypenError(f"{instance_split.describe()} names game(s) missing from the game registry: "
                               f"{', '.join(missing)}; add them to ./game_registry.json, or pass -g GAME to "
                               f"play only some games (not leaderboard-comparable)")
    instances_filter = instance_split.instances_filter() if instance_split else None
    wanted = {}
    for spec in specs:
        if instance_split is not None:
            _check_split_instances(instance_split, spec, instances)
        wanted[spec["game_name"]] = selected_episodes(spec, instances, experiment, instances_filter)
    if instance_split is not None:
        empty = sorted(name for name, episodes in wanted.items() if not episodes)
        if empty and (game or not any(wanted.values())):
            fixes = ("--split, --split_source, or --all_instances" if offer_all_instances
                     else "--split or --split_source")
            raise PlaypenError(f"{instance_split.describe()} has no instances of {', '.join(empty)}"
                               f"{f' in experiment {experiment!r}' if experiment else ''}; pass another {fixes}")
        for name in empty:
            print(f"note: {name} has no instances in {instance_split.describe()}; not played")
    kept = {name: [spec for spec in game_specs if wanted.get(spec["game_name"])] for name, game_specs in suites.items()}
    return Selection(suites={name: specs for name, specs in kept.items() if specs},
                     wanted={name: episodes for name, episodes in wanted.items() if episodes},
                     split=instance_split, instances=instances, experiment=experiment,
                     whole_suites=not game and suite == "all", failed=failed)


def _unreadable_instances(suites: dict, instances: str | None) -> dict[str, str]:
    """``{game: why}`` of the games whose instances file cannot be read: each a failed game, printed as a note.

    An instances file the user named with ``-i`` is an error instead (they can fix the name).
    """
    failed = {}
    for spec in (spec for specs in suites.values() for spec in specs):
        try:
            selected_episodes(spec, instances, None)
        except InstancesUnreadable as error:
            if instances:
                raise
            failed[spec["game_name"]] = str(error)
            print(f"note: {spec['game_name']} cannot be played: {error}")
    return failed


def _load(split_source: str | None, split: str, suite: str, offer_all_instances: bool,
          revision: str | None = None) -> InstanceSplit:
    try:
        return load_split(split_source, split, [name for name in HUB_CONFIGS if suite in (name, "all")], revision)
    except SplitSourceUnreadable as error:
        alternative = (" or --all_instances to play every instance (not comparable with the playpen leaderboard)"
                       if offer_all_instances else "")
        raise PlaypenError(f"{error}; pass --split_source FILE (a .jsonl/.json/.csv file with game, experiment, "
                           f"task_id, split){alternative}") from None


def _check_split_instances(split: InstanceSplit, game_spec, instances: str | None) -> None:
    """Every instance the split names for this game must be in the game's instances file."""
    name = game_spec["game_name"]
    available = selected_episodes(game_spec, instances, None)
    unknown = sorted(split.of_game(name) - available)
    if unknown:
        experiments = sorted({experiment for experiment, _ in available})
        shown = ", ".join(f"{experiment}/{task_id}" for experiment, task_id in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise PlaypenError(f"{split.describe()} names {len(unknown)} instance(s) of {name} that its instances "
                           f"file ({getattr(game_spec, 'instances', 'instances')}.json, experiments: "
                           f"{', '.join(experiments)}) does not have: {shown}{more}; update the game "
                           f"or use the split source made for this version of it")


def check_game_spec_json(selector: str, option: str = "-g") -> None:
    """A game selector that starts like GameSpec JSON must be a JSON object (else it reads as an unknown game)."""
    try:
        parsed = json.loads(selector)
    except json.JSONDecodeError as error:
        raise PlaypenError(f"{option} {selector!r} is malformed GameSpec JSON ({error.msg} at column {error.colno}); "
                           f"pass a game name or a JSON object such as '{{\"game_name\": \"wordle\"}}'") from None
    if not isinstance(parsed, dict):
        raise PlaypenError(f"{option} {selector!r} is JSON but not an object; pass a game name or a JSON object "
                           f"such as '{{\"game_name\": \"wordle\"}}'")


def select_games(registry, suite: str, game: str | None) -> dict[str, list]:
    """``{suite_name: [GameSpec, ...]}``; ``-g`` replaces the suite selection."""
    if len(registry) == 0:
        raise PlaypenError(f"no clemgames found; {NO_GAMES_HELP}")
    if game and game.lstrip().startswith("{"):
        check_game_spec_json(game)
    suites = eval_suites()
    wanted = ({GAME_SUITE: game} if game else
              {name: entry.selector for name, entry in suites.items() if suite in (name, "all")})
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
        raise PlaypenError(f"no games of the suites {', '.join(map(str, suites.values()))} in the game registry; "
                           f"pass -g GAME or {NO_GAMES_HELP}")
    return selected
