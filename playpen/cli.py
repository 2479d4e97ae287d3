"""The ``playpen`` command line. Heavy libraries are imported inside the handlers only:
``playpen --help`` and ``playpen list learners`` must stay instant."""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from playpen.errors import PlaypenError

# ----------------------------------------------------------------------------- list

def list_learners(args) -> None:
    """One line per learner; a broken one says why instead of aborting the listing."""
    from playpen.learners import installed_learners

    table = installed_learners()
    print(f"{len(table)} learner(s) installed (use: playpen learn -l NAME -m MODEL):")
    for name, info in table.items():
        origin = f"{info.distribution} {info.version}" if info.distribution else "no distribution"
        print(f"  {name:<16} {info.summary()}  [{origin}]")
        if args.verbose:
            print(f"  {'':<16} {info.target}")


def list_plugins(args) -> None:
    from playpen.plugins import plugin_table

    rows = plugin_table()
    print(f"{len(rows)} plugin(s):")
    for row in rows:
        origin = f"{row['distribution']} {row['version']}" if row["distribution"] else "registered in code"
        print(f"  {row['name']}  [{origin}]")
        print(f"      hooks: {', '.join(row['hooks']) or '-'}")


def list_models(args) -> None:
    from playpen.clemcore_bridge import model_registry

    registry = model_registry()
    specs = list(registry)
    print(f"{len(specs)} registered model(s) (./model_registry.json first, then clemcore's):")
    for spec in specs:
        print(f"  {spec['model_name']} -> {spec['backend']} ({spec['lookup_source']})")
        if args.verbose:
            print(textwrap.indent(spec.to_string(), "      "))


def list_games(args) -> None:
    from clemcore.clemgame import GameSpec

    from playpen.clemcore_bridge import game_registry
    from playpen.selection import check_game_spec_json

    registry = game_registry()
    if not len(registry):
        print("No clemgames found. Point ./game_registry.json at a clembench checkout, e.g. "
              "[{\"benchmark_path\": \"path/to/clembench\"}]")
        return
    if args.selector.lstrip().startswith("{"):
        check_game_spec_json(args.selector, "-s/--selector")
    selector = args.selector if args.selector == "all" else GameSpec.from_string(args.selector)
    try:
        specs = registry.get_game_specs_that_unify_with(selector, verbose=False)
    except ValueError:
        known = sorted({spec["game_name"] for spec in registry})
        raise PlaypenError(f"no game matches the selector {args.selector!r}; known games: "
                           f"{', '.join(known)}") from None
    print(f"{len(specs)} game(s):")
    for spec in specs:
        print(f"  {spec['game_name']}: {spec['description'] if 'description' in spec else ''}")


def list_backends(args) -> None:
    from clemcore.backends import BackendRegistry

    from playpen.clemcore_bridge import install_plugin_backends

    install_plugin_backends()
    registry = BackendRegistry.from_packaged_and_cwd_files()
    print(f"{len(registry)} backend(s):")
    for entry in sorted(registry, key=lambda e: e["backend"]):
        print(f"  {entry['backend']} ({entry['lookup_source']})")
        if args.verbose:
            print(f"      {entry['file_path']}")


LISTERS = {"learners": list_learners, "models": list_models, "games": list_games,
           "backends": list_backends, "plugins": list_plugins}


def run_list(args) -> None:
    LISTERS[args.mode](args)


# ----------------------------------------------------------------------------- learn

def run_learn(args) -> None:
    from playpen.learning import learn_from_cli

    learn_from_cli(args)


# ----------------------------------------------------------------------------- run

def run_trainer_file(args) -> None:
    from playpen.trainer_file import run_trainer_file as run_file

    run_file(args.file_path, args.learner, args.teacher, args.temperature, args.max_tokens)


# ----------------------------------------------------------------------------- eval

def run_eval(args) -> None:
    from playpen.evaluation import evaluate_from_cli

    evaluate_from_cli(args)


# ----------------------------------------------------------------------------- play

def run_play(args) -> None:
    from playpen.collecting import play_from_cli

    play_from_cli(args)


# ----------------------------------------------------------------------------- parser

class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that takes no abbreviations of long options.

    Abbreviations would swallow learner fields: ``--mo 3`` must reach the learner as an
    unknown field, not set ``--model``. Used for plugin commands too (``parser_class``).
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from playpen.plugins import pm

    parser = _Parser(
        prog="playpen",
        description="Tune chat models to play clembench games: learn (QLoRA SFT/DPO and plugin "
                    "learners), register, evaluate with clemscore.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("list", help="list learners, models, games, backends or plugins")
    p.add_argument("mode", choices=sorted(LISTERS), nargs="?", default="games")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("-s", "--selector", default="all", help="game selector for 'list games'")
    p.set_defaults(handler=run_list)

    p = sub.add_parser(
        "learn", add_help=False, help="train a model with a learner (playpen learn -l NAME -h for its options)",
        usage="playpen learn -l LEARNER -m MODEL [-c CONFIG.yaml] [--name NAME] [--resume] "
              "[--overwrite] [--<field> VALUE ...]")
    p.add_argument("-h", "--help", action="store_true", help="show the learner's options")
    p.add_argument("-l", "--learner", help="learner name (playpen list learners)")
    p.add_argument("-m", "--model", help="model name from the model registry (playpen list models)")
    p.add_argument("-c", "--config", type=Path, help="YAML file with learner config fields")
    p.add_argument("--name", help="registry name of the result (default: <model>-<learner>)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    p.add_argument("--overwrite", action="store_true",
                   help="allow replacing a different earlier run in output_dir")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show library messages (warnings, INFO lines) here too; always in <output_dir>/train.log")
    p.set_defaults(handler=run_learn)

    p = sub.add_parser("run", help="run an upstream trainer file (BasePlaypenTrainer or BasePlayPen subclass)")
    p.add_argument("file_path", help="the trainer file")
    p.add_argument("-l", "--learner", required=True, help="the learner model (playpen list models)")
    p.add_argument("-t", "--teacher", default=None, help="optional partner model")
    p.add_argument("-T", "--temperature", type=float, default=0.0, help="sampling temperature. Default: 0.0")
    p.add_argument("-L", "--max_tokens", type=int, default=300, help="max tokens per turn. Default: 300")
    p.set_defaults(handler=run_trainer_file)

    p = sub.add_parser("eval", help="play clembench games with a model and compute clemscore/statscore "
                                    "(the validation split by default)")
    p.add_argument("model", help="model name (playpen list models)")
    _add_gameplay_arguments(p, "validation")
    p.add_argument("--skip_gameplay", action="store_true",
                   help="play nothing: score the episodes already in -r; missing ones fail their game")
    p.add_argument("--baseline", default=None, help="also evaluate this model and compare")
    p.add_argument("--baseline_4bit", action="store_true",
                   help="load --baseline as the tuned model's base is loaded (its 4-bit quantization, no adapter): "
                        "a like-for-like comparison of what the adapter adds; named BASE@4bit")
    p.set_defaults(handler=run_eval)

    p = sub.add_parser("play", help="collect interaction data (the train split by default) for learn --dataset")
    p.add_argument("model", help="model name (playpen list models), also a tuned one or mock/programmatic")
    p.add_argument("-t", "--partner", default=None, help="model of the second player of two-player games")
    _add_gameplay_arguments(p, "train", results_required=True)
    p.add_argument("-n", "--repetitions", type=int, default=1,
                   help="episodes per instance (needs -T > 0 above 1); repetition k goes to DIR/repeat_k. Default: 1")
    p.add_argument("--branching", type=int, default=None, metavar="K",
                   help="play each instance as a tree: every turn of MODEL branches K ways (needs -T > 0); "
                        "dpo_qlora pairs the branches of each turn that scored differently")
    p.add_argument("--max_branches", type=int, default=None, metavar="N",
                   help="with --branching: at most N episodes per instance's tree (early turns branch first). "
                        "Default: 16")
    p.set_defaults(handler=run_play)

    pm.hook.playpen_register_commands(subparsers=sub)
    return parser


def _add_gameplay_arguments(p: argparse.ArgumentParser, default_split: str, results_required: bool = False) -> None:
    """Options ``eval`` and ``play`` share: which games and instances, where to, generation settings (by default
    the published table's, :mod:`playpen.published`)."""
    from playpen.published import DEFAULT_GENERATION
    from playpen.suites import eval_suites

    suites = eval_suites()
    p.add_argument("--suite", choices=[*suites, "all"], default="all",
                   help="; ".join(f"{name}: {suite.help}" for name, suite in suites.items()) + ". Default: all")
    p.add_argument("-g", "--game", default=None,
                   help="game name or GameSpec JSON; overrides --suite's selection")
    p.add_argument("-e", "--experiment", default=None, help="only this experiment")
    p.add_argument("-i", "--instances", default=None, help="instances file name (without .json)")
    p.add_argument("--split", default=None, help=f"split of the split source to play. Default: {default_split}")
    p.add_argument("--split_source", default=None,
                   help="hub dataset id or .jsonl/.json/.csv file with game, experiment, task_id, split rows. "
                        "Default: colab-potsdam/playpen-data")
    p.add_argument("--split_revision", default=None,
                   help="commit, tag or branch of a hub split source (recorded in val.json). Default: its main branch")
    p.add_argument("--all_instances", action="store_true",
                   help="play every instance of the instances files, ignoring splits (not leaderboard-comparable)")
    p.add_argument("-r", "--results_dir", required=results_required,
                   default=None, help="results directory" + ("" if results_required
                                                             else ". Default: playpen-eval/<timestamp>"))
    p.add_argument("-T", "--temperature", type=float, default=DEFAULT_GENERATION["temperature"],
                   help=f"Default: {DEFAULT_GENERATION['temperature']}, as the published table")
    p.add_argument("-L", "--max_tokens", type=int, default=DEFAULT_GENERATION["max_tokens"],
                   help=f"max tokens per turn. Default: {DEFAULT_GENERATION['max_tokens']}, as the published table "
                        f"(pass a small -L for quick runs; they are then not leaderboard-comparable)")
    p.add_argument("-b", "--batch_size", type=int, default=None,
                   help="episodes generated in one batch by models that support it (local HF models); "
                        "others play sequentially. Default: 16")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show library messages (clemcore INFO lines, warnings) here too; "
                        "always in <results>/playpen.log")
    from playpen.engines import add_engine_arguments

    add_engine_arguments(p)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("playpen-tune")
    except PackageNotFoundError:
        return "unknown"


# what to do when a command cannot write (its own output option first)
WRITE_FIXES = {"learn": "choose another --output_dir (or --name)", "eval": "choose another -r/--results_dir",
               "play": "choose another -r/--results_dir", "export": "choose another --output_dir",
               "quickstart": "pass another directory to 'playpen quickstart'"}
RESUME_ALIASES = {"-r": ("-r", "--results_dir")}


def interrupted_line(interrupt, argv: list[str]) -> str:
    """``interrupted (SIGINT); resume with: CMD``, or ``...; nothing to resume from yet (no checkpoint was saved),
    start again with: CMD`` when the command would start over (``--overwrite``, or no change to the command)."""
    from playpen import faults

    command = faults.resume_command(argv, interrupt.resume, RESUME_ALIASES)
    if interrupt.resume.get("--overwrite") is True or not interrupt.resume:
        return (f"interrupted ({interrupt.signal_name}); nothing to resume from yet (no checkpoint was saved), "
                f"start again with: {command}")
    return f"interrupted ({interrupt.signal_name}); resume with: {command}"


def main(argv: list[str] | None = None) -> None:
    from playpen import faults

    argv = list(sys.argv[1:] if argv is None else argv)
    with faults.signals_interrupt():
        _run(argv)


def _run(argv: list[str]) -> None:
    """Parse and run one command; report user errors, write failures and interrupts in one line."""
    from playpen import faults
    from playpen.console import close_progress_bars, hold_log_only_notices
    from playpen.cpu_threads import choose_cpu_threads

    args = None
    try:
        hold_log_only_notices()
        parser = build_parser()
        args, rest = parser.parse_known_args(argv)
        args.learner_options = rest
        args.argv = ["playpen", *argv]
        if args.command_name != "learn" and rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        if getattr(args, "handler", None) is None:
            parser.print_help()
            return
        choose_cpu_threads()
        args.handler(args)
    except PlaypenError as error:
        close_progress_bars()
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except OSError as error:
        if not faults.is_write_fault(error):
            raise
        close_progress_bars()
        fix = WRITE_FIXES.get(getattr(args, "command_name", None), "run playpen where it can write")
        print(f"error: {faults.write_fault_error(error, fix)}", file=sys.stderr)
        sys.exit(PlaypenError.exit_code)
    except KeyboardInterrupt as interrupt:
        close_progress_bars()
        interrupt = interrupt if isinstance(interrupt, faults.Interrupted) else faults.Interrupted()
        if args is None or getattr(args, "argv", None) is None:
            print("interrupted", file=sys.stderr)
        else:
            from playpen.secrets import redact_command_line

            print(interrupted_line(interrupt, redact_command_line(args.argv)), file=sys.stderr)
        sys.exit(interrupt.exit_code)
