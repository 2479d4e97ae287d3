"""Does the loop make a model a better clembench player? Base vs SFT vs SFT -> DPO vs SFT -> GRPO,
each measured by ``playpen eval`` on held-out instances.

Every other benchmark measures speed; this one measures what a researcher asks first: whether
``playpen learn`` lifts a model's clemscore on a real game. It only drives the CLI: every arm is a
chain of ``playpen`` subprocess commands, recorded verbatim with wall time and exit status, in a
workspace of its own (``model_registry.json``, ``game_registry.json``, the split file, every model,
play and eval directory), so each number can be reproduced by running the same commands.

Arms (``--arms``, in this order; the later ones start from the SFT model):

* ``base``: ``playpen eval BASE`` on the held-out (validation) instances;
* ``sft``: ``playpen learn -l sft_qlora -m BASE --dataset <transcripts> --split_source SPLIT``, then eval;
* ``dpo``: ``playpen play SFT -n K -T 0.7`` on the train split, ``playpen learn -l dpo_qlora -m SFT
  --dataset <those episodes>`` (whole-episode pairs: differently scored episodes of one instance), eval;
* ``dpo_turn``: ``playpen play SFT --branching K --max_branches N -T 0.7`` on the train split,
  ``dpo_qlora --dataset <the trees>`` (turn-level pairs: sibling branches with different scores), eval;
* ``grpo``: ``playpen learn -l grpo_qlora -m SFT -g GAME`` on the train split, eval; ``--grpo_args``
  (repeatable) adds one GRPO arm per setting (``grpo_1``, ``grpo_2``, ...), each with its reward history.

Each arm's result is read from the ``<model>.val.json`` that ``playpen eval`` wrote (clemscore, % played
and quality per game, as clemcore computed them); learners add their manifest's data counts (examples,
contamination, preference pairs and their kind) and GRPO its ``reward_history`` (mean reward per step,
share of groups with varied rewards) with the least-squares slope of the mean reward over the steps.
The JSON is rewritten after every command, so a killed run leaves what it measured. A command that fails
is recorded with the end of its output; arms that need its model are skipped; the script then exits 1.

Inputs are paths; nothing is read from a fixed location. ``--model_dir`` (a Hugging Face chat model
directory, e.g. SmolLM2's from ``playpen gguf-model``) is registered with ``playpen register``;
``--game_registry`` is a ``game_registry.json`` or a directory of games (default: the demo game
``wordecho``); ``--dataset`` (repeatable) are transcripts or files for SFT, and/or ``--expert PLAYER``
plays clemcore's scripted ``PLAYER`` (``mock``, ``programmatic``) on the train split for them; the split
is ``--split_source FILE`` or ``--train_ids``/``--heldout_ids`` (``EXPERIMENT/ID`` lists, written as a
split file for every ``-g`` game).

    python benchmarks/efficacy.py --model_dir DIR --game_registry clembench-games -g referencegame \\
        --dataset transcripts/results --heldout_ids ... --train_ids ... --out efficacy.json

``--quick`` shrinks every size (steps, samples, tokens) for a smoke run; its numbers mean nothing.
"""
from __future__ import annotations

import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

ARMS = ("base", "sft", "dpo", "dpo_turn", "grpo")
NEEDS_SFT = ("dpo", "dpo_turn", "grpo")
QUICK_SIZES = {"sft_steps": 2, "dpo_steps": 1, "grpo_steps": 1, "samples": 2, "branching": 2, "max_branches": 4,
               "num_generations": 2, "max_tokens": 16}


def add_arguments(parser):
    parser.add_argument("--model_dir", type=Path, required=True,
                        help="Hugging Face chat model directory of the base (registered with 'playpen register')")
    parser.add_argument("--model_name", default="base", help="registry name of the base in the workspace")
    parser.add_argument("--game_registry", type=Path, default=None,
                        help="game_registry.json, or a directory of games. Default: the demo game wordecho")
    parser.add_argument("-g", "--game", action="append", dest="games", default=None,
                        help="game to learn and evaluate (repeatable). Default: wordecho")
    parser.add_argument("--dataset", action="append", type=Path, default=[],
                        help="SFT data: a results directory of transcripts or a .json/.jsonl file (repeatable)")
    parser.add_argument("--expert", default=None,
                        help="also play this scripted player (mock, programmatic) on the train split for SFT data")
    parser.add_argument("--outcomes", default="success", help="SFT's --outcomes (success, failure, aborted)")
    parser.add_argument("--split_source", type=Path, default=None,
                        help="split file (game, experiment, task_id, split rows); eval plays 'validation', "
                             "play/GRPO 'train'")
    parser.add_argument("--train_ids", default=None, help="instead of --split_source: EXPERIMENT/ID,... to learn on")
    parser.add_argument("--heldout_ids", default=None, help="instead of --split_source: EXPERIMENT/ID,... to evaluate")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {', '.join(ARMS)}")
    parser.add_argument("--seed", type=int, default=42, help="--seed of every learner")
    parser.add_argument("--max_tokens", type=int, default=None,
                        help="-L of eval and play, --max_tokens of GRPO (default 64; 16 with --quick)")
    parser.add_argument("--batch_size", type=int, default=16, help="-b of eval and -n play")
    parser.add_argument("--sft_steps", type=int, default=None, help="SFT --max_steps (default 40; 2 with --quick)")
    parser.add_argument("--sft_args", default="", help="more options for SFT's learn command (one string)")
    parser.add_argument("--temperature", type=float, default=0.7, help="-T of the on-policy play for DPO")
    parser.add_argument("--samples", type=int, default=None, help="-n of the DPO play (default 4; 2 with --quick)")
    parser.add_argument("--branching", type=int, default=None, help="--branching of dpo_turn's play (default 2)")
    parser.add_argument("--max_branches", type=int, default=None,
                        help="--max_branches of dpo_turn's play (default 4 x --samples... 16; 4 with --quick)")
    parser.add_argument("--dpo_steps", type=int, default=None, help="DPO --max_steps (default 10; 1 with --quick)")
    parser.add_argument("--dpo_args", default="", help="more options for both DPO learn commands (one string)")
    parser.add_argument("--grpo_steps", type=int, default=None, help="GRPO --max_steps (default 10; 1 with --quick)")
    parser.add_argument("--num_generations", type=int, default=None, help="GRPO group size (default 4; 2 with --quick)")
    parser.add_argument("--grpo_args", action="append", default=None,
                        help="options for one GRPO arm (one string, repeatable: one arm each); they follow and "
                             "override the defaults --temperature 0.7 --reward main_score --format_reward 0.5")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the workspace here (models, plays, evals). Default: a temporary directory")
    parser.add_argument("--command_timeout", type=float, default=6 * 3600, help="seconds per playpen command")


def sizes(args) -> dict:
    """Every size option, from the command line or the (quick) defaults."""
    defaults = QUICK_SIZES if args.quick else {"sft_steps": 40, "dpo_steps": 10, "grpo_steps": 10, "samples": 4,
                                               "branching": 2, "max_branches": 16, "num_generations": 4,
                                               "max_tokens": 64}
    return {name: getattr(args, name) if getattr(args, name) is not None else value
            for name, value in defaults.items()}


# ----------------------------------------------------------------------------- workspace

def parse_ids(text: str, option: str) -> list[tuple[str, int]]:
    ids = []
    for item in (part.strip() for part in text.split(",")):
        experiment, _, task_id = item.rpartition("/")
        if not experiment or not task_id.isdigit():
            raise SystemExit(f"error: {option}: {item!r} is not EXPERIMENT/ID (e.g. letter_grids/3)")
        ids.append((experiment, int(task_id)))
    return ids


def write_split(path: Path, games: list[str], train: list[tuple[str, int]], heldout: list[tuple[str, int]]) -> Path:
    """A split file with every game's train and validation instances."""
    overlap = set(train) & set(heldout)
    if overlap:
        raise SystemExit(f"error: --train_ids and --heldout_ids share {sorted(overlap)[:5]}")
    rows = [{"game": game, "experiment": experiment, "task_id": task_id, "split": split}
            for game in games for split, ids in (("train", train), ("validation", heldout))
            for experiment, task_id in ids]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def split_counts(path: Path, games: list[str]) -> dict:
    """Instances per split of the chosen games in the split file (what eval and play select)."""
    counts: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if row["game"] in games:
                counts[row["split"]] = counts.get(row["split"], 0) + 1
    return counts


def prepare_workspace(args, workspace: Path) -> tuple[Path, list[str]]:
    """Game registry and split file in ``workspace``; returns (split file, games)."""
    games = args.games or ["wordecho"]
    if args.game_registry is None:
        from playpen_tune.games import write_game_registry

        write_game_registry(workspace)
    elif args.game_registry.is_dir():
        (workspace / "game_registry.json").write_text(
            json.dumps([{"benchmark_path": str(args.game_registry.resolve())}]) + "\n", encoding="utf-8")
    else:
        (workspace / "game_registry.json").write_text(args.game_registry.read_text(encoding="utf-8"),
                                                      encoding="utf-8")
    if args.split_source is not None:
        if args.train_ids or args.heldout_ids:
            raise SystemExit("error: pass --split_source or --train_ids/--heldout_ids, not both")
        return args.split_source.resolve(), games
    if games == ["wordecho"] and not (args.train_ids or args.heldout_ids):
        from playpen_tune.games import DEMO_SPLIT_FILE

        return Path(DEMO_SPLIT_FILE), games
    if not (args.train_ids and args.heldout_ids):
        raise SystemExit("error: pass --split_source FILE, or both --train_ids and --heldout_ids")
    return write_split(workspace / "split.jsonl", games, parse_ids(args.train_ids, "--train_ids"),
                       parse_ids(args.heldout_ids, "--heldout_ids")), games


# ----------------------------------------------------------------------------- running

class Bench:
    """Runs the arms' commands in the workspace, records each, and rewrites the JSON after every one."""

    def __init__(self, args, workspace: Path, split: Path, games: list[str], config: dict):
        self.args, self.workspace, self.split, self.games, self.config = args, workspace, split, games, config
        self.playpen = str(common.VENV_BIN / "playpen")
        self.results: dict = {"arms": {}, "workspace": str(workspace)}
        self.failed = False

    def write(self) -> None:
        common.write_json(self.args.out, "efficacy", self.args, self.config, self.results)

    def run(self, arm: dict, *argv) -> bool:
        """``playpen ARGV`` in the workspace; recorded in ``arm["commands"]``. False if it failed."""
        command = [self.playpen, *map(str, argv)]
        record = {"command": shlex.join(["playpen", *command[1:]])}
        arm["commands"].append(record)
        common.log(f"$ {record['command']}")
        began = time.perf_counter()
        try:
            seconds, _ = common.run_timed(command, cwd=self.workspace, env=common.offline_env(),
                                          timeout=self.args.command_timeout)
            record.update(wall_s=round(seconds, 1), ok=True)
        except common.BenchmarkError as error:
            record.update(wall_s=round(time.perf_counter() - began, 1), ok=False, error=str(error)[-4000:])
            arm["error"] = f"{record['command']} failed"
            self.failed = True
            common.log(str(error))
        arm["wall_s"] = round(sum(c["wall_s"] for c in arm["commands"]), 1)
        self.write()
        return record["ok"]

    def game_options(self) -> list[str]:
        return ["-g", self.games[0]] if len(self.games) == 1 else ["--suite", "clem"]

    def evaluate(self, arm: dict, model: str) -> None:
        """``playpen eval MODEL`` on the held-out instances; the arm's numbers from its val.json."""
        results_dir = f"eval/{arm['name']}"
        if not self.run(arm, "eval", model, *self.game_options(), "--split_source", self.split, "-r", results_dir,
                        "-L", self.config["sizes"]["max_tokens"], "-b", self.args.batch_size):
            return
        val = json.loads((self.workspace / results_dir / f"{model}.val.json").read_text(encoding="utf-8"))
        arm["eval"] = {"val_json": f"{results_dir}/{model}.val.json", "clemscore": val["clemscore"],
                       "failed_games": val.get("failed_games", {}),
                       "games": {game: {key: numbers.get(key) for key in ("% played", "quality score", "episodes")}
                                 for game, numbers in val["games"].items()}}
        self.write()

    def manifest(self, model: str) -> dict:
        return json.loads((self.workspace / "models" / model / "playpen_run.json").read_text(encoding="utf-8"))

    def learned(self, arm: dict, model: str) -> None:
        """What the learner's manifest says it trained on (and GRPO's reward history)."""
        record = self.manifest(model)
        data = record.get("data") or {}
        metrics = record.get("metrics") or {}
        arm["learned"] = {"model": model, "learner": record["learner"]["name"],
                          "parent_adapter": record.get("parent_adapter"), "examples": data.get("total"),
                          "pairs_trained": data.get("pairs_trained"),
                          "contamination": (data.get("contamination") or {}).get("summary"),
                          "sources": [{k: s.get(k) for k in ("source", "examples", "dropped", "pairs")}
                                      for s in data.get("sources", [])],
                          "steps": metrics.get("global_step"), "first_loss": metrics.get("first_loss"),
                          "final_loss": metrics.get("final_loss"), "train_wall_s": metrics.get("wall_time_s")}
        if "reward_history" in record:  # GRPO: episode rewards per step; DPO: TRL's implicit reward margins
            arm["reward_history"] = record["reward_history"]
            if record["learner"]["name"] == "grpo_qlora":
                arm["reward_trend"] = reward_trend(record["reward_history"])
        self.write()


def reward_trend(history: list[dict]) -> dict:
    """Mean reward per step, its least-squares slope per step, and the first vs second half's mean."""
    points = [(entry["step"], entry["mean_reward"]) for entry in history
              if common._finite(entry.get("mean_reward"))]
    if len(points) < 2:
        return {"slope_per_step": None, "first_half_mean": None, "second_half_mean": None, "rose": None}
    steps, rewards = zip(*points, strict=True)
    mean_step, mean_reward = sum(steps) / len(steps), sum(rewards) / len(rewards)
    slope = (sum((s - mean_step) * (r - mean_reward) for s, r in points)
             / sum((s - mean_step) ** 2 for s in steps))
    half = len(rewards) // 2
    first, second = sum(rewards[:half]) / half, sum(rewards[half:]) / (len(rewards) - half)
    return {"slope_per_step": slope, "first_half_mean": first, "second_half_mean": second,
            "rose": slope > 0 and second > first}


def run_arms(bench: Bench, arms: list[str], grpo_settings: list[str]) -> None:
    args, sizes_, split, base = bench.args, bench.config["sizes"], bench.split, bench.args.model_name
    sft = f"{base}-sft"
    seed = ["--seed", args.seed]

    def arm(name: str, **extra) -> dict:
        bench.results["arms"][name] = record = {"name": name, "commands": [], **extra}
        return record

    sft_ok = "sft" not in arms  # arms after SFT need its model
    if "base" in arms:
        bench.evaluate(arm("base", model=base), base)
    if "sft" in arms:
        record = arm("sft", model=sft)
        datasets = [str(path.resolve()) for path in args.dataset]
        if args.expert:
            if bench.run(record, "play", args.expert, *bench.game_options(), "--split_source", split,
                         "-r", "expert-transcripts", "-L", sizes_["max_tokens"]):
                datasets.append("expert-transcripts")
        if record.get("error") is None and bench.run(
                record, "learn", "-l", "sft_qlora", "-m", base, *[o for d in datasets for o in ("--dataset", d)],
                "--split_source", split, "--outcomes", args.outcomes, "--max_steps", sizes_["sft_steps"],
                "--logging_steps", 1, "--name", sft, *seed, *shlex.split(args.sft_args)):
            bench.learned(record, sft)
            sft_ok = True
            bench.evaluate(record, sft)
    for name in (a for a in arms if a in NEEDS_SFT):
        if not sft_ok:
            arm(name, skipped="the SFT arm failed")
            continue
        if name in ("dpo", "dpo_turn"):
            play_dir, model = f"play/{name}", f"{sft}-{name}"
            record = arm(name, model=model)
            tree = (["--branching", sizes_["branching"], "--max_branches", sizes_["max_branches"]] if name == "dpo_turn"
                    else ["-n", sizes_["samples"], "-b", args.batch_size])
            if (bench.run(record, "play", sft, *bench.game_options(), "--split_source", split, "-r", play_dir,
                          "-T", args.temperature, "-L", sizes_["max_tokens"], *tree)
                    and bench.run(record, "learn", "-l", "dpo_qlora", "-m", sft, "--dataset", play_dir,
                                  "--split_source", split, "--max_steps", sizes_["dpo_steps"], "--logging_steps", 1,
                                  "--name", model, *seed, *shlex.split(args.dpo_args))):
                bench.learned(record, model)
                bench.evaluate(record, model)
            continue
        for index, setting in enumerate(grpo_settings, start=1):
            label = "grpo" if len(grpo_settings) == 1 else f"grpo_{index}"
            model = f"{sft}-{label}"
            record = arm(label, model=model, setting=setting)
            if bench.run(record, "learn", "-l", "grpo_qlora", "-m", sft, "-g", ",".join(bench.games),
                         "--split_source", split, "--max_steps", sizes_["grpo_steps"],
                         "--num_generations", sizes_["num_generations"], "--max_tokens", sizes_["max_tokens"],
                         "--temperature", 0.7, "--reward", "main_score", "--format_reward", 0.5,
                         "--logging_steps", 1, "--name", model, *seed, *shlex.split(setting)):
                bench.learned(record, model)
                bench.evaluate(record, model)


def print_results(results: dict) -> None:
    rows = []
    for name, arm in results["arms"].items():
        evaluation = arm.get("eval") or {}
        games = evaluation.get("games", {})
        learned = arm.get("learned") or {}
        trend = arm.get("reward_trend") or {}
        rows.append([name, common.fmt(evaluation.get("clemscore")),
                     " ".join(common.fmt(g.get("% played")) for g in games.values()) or "-",
                     " ".join(common.fmt(g.get("quality score")) for g in games.values()) or "-",
                     common.fmt(learned.get("pairs_trained") or learned.get("examples")),
                     common.fmt(trend.get("slope_per_step"), 3), common.fmt(arm.get("wall_s"), 0),
                     "failed" if arm.get("error") else arm.get("skipped", "")])
    common.print_table("efficacy (held-out instances, playpen eval)",
                       ["arm", "clemscore", "% played", "quality", "examples/pairs", "reward slope", "wall s", "note"],
                       rows)


def main(argv=None) -> int:
    args = common.parse_args(__doc__.splitlines()[0], quick_runs=1, default_runs=1, default_threads=0,
                             add_arguments=add_arguments, argv=argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise SystemExit(f"error: --arms: unknown {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    if "sft" in arms and not (args.dataset or args.expert):
        raise SystemExit("error: the sft arm needs --dataset PATH or --expert PLAYER")
    if any(a in NEEDS_SFT for a in arms) and "sft" not in arms:
        raise SystemExit(f"error: the arms {', '.join(a for a in arms if a in NEEDS_SFT)} start from the SFT model: "
                         "add sft to --arms")
    common.set_offline()
    temporary = None
    if args.workdir is None:
        temporary = tempfile.TemporaryDirectory(prefix="playpen-efficacy-")
        workspace = Path(temporary.name)
    else:
        workspace = args.workdir.resolve()
        if workspace.exists() and any(workspace.iterdir()):
            raise SystemExit(f"error: --workdir {workspace} is not empty; name a new directory")
        workspace.mkdir(parents=True, exist_ok=True)
    try:
        split, games = prepare_workspace(args, workspace)
        grpo_settings = args.grpo_args or [""]
        config = {"model_dir": str(args.model_dir.resolve()), "model_name": args.model_name, "games": games,
                  "game_registry": json.loads((workspace / "game_registry.json").read_text(encoding="utf-8")),
                  "datasets": [str(p.resolve()) for p in args.dataset], "expert": args.expert,
                  "outcomes": args.outcomes, "split_source": str(split), "split_counts": split_counts(split, games),
                  "arms": arms, "seed": args.seed, "sizes": sizes(args), "eval_batch_size": args.batch_size,
                  "play_temperature": args.temperature, "sft_args": args.sft_args, "dpo_args": args.dpo_args,
                  "grpo_settings": grpo_settings}
        bench = Bench(args, workspace, split, games, config)
        setup = {"name": "setup", "commands": []}
        bench.results["setup"] = setup
        if bench.run(setup, "register", args.model_name, "--model", args.model_dir.resolve()):
            run_arms(bench, arms, grpo_settings)
        bench.write()
        print_results(bench.results)
    finally:
        if temporary is not None:
            temporary.cleanup()
    return 1 if bench.failed else 0


if __name__ == "__main__":
    sys.exit(main())
