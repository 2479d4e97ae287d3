"""``playpen play MODEL --branching K``: each instance is played as a tree of episodes, for turn-level preferences.

clemcore's branching runner copies the game at every turn of MODEL into K branches, which go on independently
(sampling makes them differ). ``--max_branches N`` caps the finished episodes (leaves) of one instance's tree:
a turn is branched only while its K-1 extra branches still fit, so early turns branch first. Every leaf is
written as a clemcore episode record and scored by clemcore:

``<results>/clem/<players>/<game>/<experiment>/instance_<id>/branch_<k>/`` holds ``interactions.json``,
``instance.json`` and ``branch.json`` (the branching points the leaf passed: point id, which branch it took,
the player and which of that player's answers differs there); the instance folder holds ``tree.json`` (the
tree's points with their parent point, written when the whole tree was played, so a re-run skips it) and a
copy of ``experiment.json`` (clemcore's scorer reads it from the folder above an episode).

``dpo_qlora --dataset DIR`` turns the branches of each point into one pair (:mod:`playpen_tune.data.branches`).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from clemcore.clemgame import GameBenchmarkCallback

from playpen import engines
from playpen.errors import PlaypenError
from playpen.files import atomic_write_text

TREE_FILE = "tree.json"
BRANCH_FILE = "branch.json"
DEFAULT_MAX_BRANCHES = 16


def check_branching_arguments(branching: int | None, max_branches: int | None, temperature: float,
                              repetitions: int) -> int | None:
    """Check ``--branching K --max_branches N`` (a tree needs K >= 2, N >= K, sampling and no ``-n``); return N
    (default :data:`DEFAULT_MAX_BRANCHES` with ``--branching``)."""
    if branching is None:
        if max_branches is not None:
            raise PlaypenError("--max_branches caps the trees of --branching; pass --branching K too, or drop it")
        return None
    max_branches = DEFAULT_MAX_BRANCHES if max_branches is None else max_branches
    if branching < 2:
        raise PlaypenError(f"--branching must be >= 2 (branches per turn of the model), got {branching}")
    if max_branches < branching:
        raise PlaypenError(f"--max_branches {max_branches} is below --branching {branching}: not even the first turn "
                           f"could branch; pass --max_branches >= {branching} (each branched turn adds "
                           f"{branching - 1} episodes to the tree)")
    if temperature <= 0:
        raise PlaypenError(f"--branching {branching} plays each turn {branching} times, which gives different "
                           f"branches only when sampling: pass -T above 0 (e.g. -T 0.7)")
    if repetitions != 1:
        raise PlaypenError("--branching plays each instance once, as a tree of episodes; drop -n")
    return max_branches


class BranchTree:
    """The tree of one instance while it is played: shared by all branches (deep copies return it).

    It is also the runner's branching condition: a turn of ``model`` branches while the tree's leaves
    plus the K-1 new ones stay within ``max_branches``.
    """

    def __init__(self, model, factor: int, max_branches: int):
        self.model, self.factor, self.max_branches = model, factor, max_branches
        self.reset()

    def __deepcopy__(self, memo):
        return self

    def reset(self) -> None:
        self.leaves = 1  # episodes the tree will end with
        self.written: list[str] = []
        self.points: dict = {}  # snapshot origin -> {"id", "parent", "branches"}

    def __call__(self, player=None, **_) -> bool:
        if player is None or player.model is not self.model or self.leaves + self.factor - 1 > self.max_branches:
            return False
        self.leaves += self.factor - 1
        return True

    def enter(self, snapshot, parent) -> dict:
        """The point of ``snapshot`` (created on its first branch) and which branch of it this one is."""
        point = self.points.setdefault(snapshot.origin, {"id": f"p{len(self.points)}", "parent": parent,
                                                         "branches": 0})
        point["branches"] += 1
        return {"point": point["id"], "branch": point["branches"] - 1}

    def to_json(self, instance: dict, experiment: str) -> dict:
        return {"game_id": instance["game_id"], "experiment": experiment, "branching_factor": self.factor,
                "max_branches": self.max_branches, "leaves": self.written,
                "points": {point["id"]: {"parent": point["parent"], "branches": point["branches"]}
                           for point in self.points.values()}}


class BranchRecordSaver(GameBenchmarkCallback):
    """A clemcore callback that follows one branch (the runner deep-copies it with the game) and writes the
    branch's episode record when it ends."""

    def __init__(self, tree: BranchTree, instance_dir: Path, player_model_infos: dict):
        self.tree, self.instance_dir, self.infos = tree, instance_dir, player_model_infos
        self.recorder = None
        self.path: list[dict] = []
        self.answers: dict[str, int] = {}  # player name -> answers given so far

    def on_game_start(self, game_master, game_instance):
        from clemcore.clemgame import GameInteractionsRecorder

        self.recorder = GameInteractionsRecorder(game_master.game_spec.game_name, game_master.experiment["name"],
                                                 game_instance["game_id"], self.instance_dir.parents[2].name,
                                                 self.infos)
        for player in game_master.get_players():
            self.recorder.log_player(player.name, player.game_role, player.model.name)
        game_master.register(self.recorder)

    def on_branching_point(self, game_master, game_instance, snapshot):
        player = game_master.current_player.name
        parent = {key: self.path[-1][key] for key in ("point", "branch")} if self.path else None
        self.path.append({**self.tree.enter(snapshot, parent), "player": player,
                          "answer": self.answers.get(player, 0)})

    def on_game_step(self, game_master, game_instance, game_step):
        self.answers[game_step.player_name] = self.answers.get(game_step.player_name, 0) + 1

    def on_game_end(self, game_master, game_instance, exception=None, rewards=None):
        if exception is not None:
            return
        leaf = self.instance_dir / f"branch_{len(self.tree.written) + 1:05d}"
        self.tree.written.append(leaf.name)
        leaf.mkdir(parents=True, exist_ok=True)
        for name, data in (("interactions.json", self.recorder.interactions), ("instance.json", game_instance),
                           (BRANCH_FILE, {"leaf": leaf.name, "path": self.path})):
            atomic_write_text(leaf / name, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def play_trees(player_models: list, game_spec, rows: list, run_root: Path, factor: int,
               max_branches: int) -> str | None:
    """Play every instance row of ``game_spec`` not yet played as a tree under ``run_root/<game>/``; return
    what went wrong, or None."""
    from clemcore.backends import Model
    from clemcore.clemgame import (
        ExperimentFileSaver,
        GameBenchmark,
        GameBenchmarkCallbackList,
        GameInstances,
        ResultsFolder,
    )
    from clemcore.clemgame.runners import branching

    folder = ResultsFolder(run_root.parent, run_root.name)
    infos = Model.to_infos(player_models)
    tree = BranchTree(player_models[0], factor, max_branches)
    problems = []
    with GameBenchmark.load_from_spec(game_spec) as benchmark:
        for row in rows:
            instance_dir = run_root / game_spec["game_name"] / row["experiment"]["name"] / \
                f"instance_{row['game_instance']['game_id']:05d}"
            if (instance_dir / TREE_FILE).is_file():
                continue
            if instance_dir.exists():
                shutil.rmtree(instance_dir)  # the unfinished tree of an interrupted run: played again
            tree.reset()
            callbacks = GameBenchmarkCallbackList([ExperimentFileSaver(folder, player_model_infos=infos),
                                                   BranchRecordSaver(tree, instance_dir, infos)])
            branching.run(benchmark, GameInstances(game_spec["game_name"], [row]), player_models,
                          callbacks=callbacks, branching_factor=factor, branching_condition=tree)
            if len(tree.written) != tree.leaves:
                problems.append(f"instance {row['game_instance']['game_id']}: {tree.leaves - len(tree.written)} of "
                                f"{tree.leaves} branches raised")
                continue
            experiment = instance_dir.parent / "experiment.json"
            shutil.copyfile(experiment, instance_dir / "experiment.json")
            atomic_write_text(instance_dir / TREE_FILE, json.dumps(
                tree.to_json(row["game_instance"], row["experiment"]["name"]), indent=2) + "\n")
    return f"{len(problems)} tree(s) unfinished ({'; '.join(problems[:3])}); see clembench.log" if problems else None


def play_tree_selection(players: list, selection, root: Path, gen_args: dict, *, factor: int,
                        max_branches: int) -> tuple[dict, dict]:
    """Play the selection as trees with ``players`` (model specs; the first one branches) under ``root``'s
    ``clem/`` and ``static/`` and score every leaf with clemcore.

    Returns ``({game: problem}, {game: [scores.json of each scored leaf]})``, as
    :func:`playpen.gameplay.play_selection` does; a game whose instances could not be read failed too.

    The trees are not played through :func:`playpen.playing.play_batch`: clemcore's branching runner turns
    one instance row into many episodes (a leaf per branch), which :class:`BranchRecordSaver` records leaf by
    leaf in ``branch_<k>/`` folders, where ``play_batch`` records one episode per row with clemcore's file savers.
    """
    from clemcore.backends import Model
    from clemcore.clemgame import GameInstances

    from playpen.gameplay import check_same_settings
    from playpen.playing import episode_key, score_game

    run_dir = Model.to_identifier([spec.model_name for spec in players])
    settings = {**gen_args, "branching": factor, "max_branches": max_branches}  # never mixed with other trees
    trees = selection.trees()
    for tree, specs in trees.items():
        check_same_settings(root / tree, players, settings, {spec["game_name"]: selection.instances for spec in specs})
    try:
        player_models = engines.load_models(players, gen_args)  # --engine (playpen.engines)
    except engines.ServerError:  # the vLLM server's problem is the command's, not the games'
        raise
    except Exception as error:  # as playpen play: a model that cannot load fails its games
        problem = f"could not load {run_dir}: {type(error).__name__}: {error}"
        return ({**selection.failed, **{game: problem for game in selection.games()}},
                {game: [] for game in selection.games()})
    from playpen.clemcore_bridge import install_logged_progress_bars

    install_logged_progress_bars()  # clemcore's scoring bars: one line each in the log, not on the console
    failed, scored = dict(selection.failed), {}
    for tree, specs in trees.items():
        for spec in specs:
            game = spec["game_name"]
            rows = list(GameInstances.from_game_spec(spec).filter(
                lambda row, wanted=selection.wanted[game]: episode_key(row) in wanted))
            print(f"  {game}: playing {len(rows)} instance(s) as trees of up to {max_branches} episodes")
            problem = play_trees(player_models, spec, rows, root / tree / run_dir, factor, max_branches)
            scoring_problem = score_game(game, root / tree / run_dir)  # always: the leaves that were played
            problem = problem or scoring_problem
            scored[game] = sorted((root / tree / run_dir / game).glob("*/instance_*/branch_*/scores.json"))
            leaves = sum(len(json.loads(path.read_text(encoding="utf-8"))["leaves"])
                         for path in (root / tree / run_dir / game).glob(f"*/instance_*/{TREE_FILE}"))
            if not problem and len(scored[game]) < leaves:
                problem = f"{leaves - len(scored[game])} of {leaves} episodes were not scored; see clembench.log"
            if problem:
                failed[game] = problem
    return failed, scored
