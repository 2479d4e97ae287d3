"""The demo clemgame shipped with the project (``wordecho``) and helpers to play it with clemcore.

``wordecho`` is package data of ``playpen_tune`` (``playpen_tune/demo_game/wordecho``, see its
``master.py`` for the rules): one player, two rounds, each round the Game Master says ``Say the word: <word>`` and the
player must answer ``ANSWER: <word>``. The model name ``mock`` plays it as a perfect scripted expert.

clemcore finds games only through its game registry, which it builds from the *current working
directory* (``./game_registry.json`` and ``clemgame.json`` files up to three folders below it), so::

    from pathlib import Path
    from playpen_tune.games import play, write_game_registry

    write_game_registry(Path.cwd())      # once; ./game_registry.json now points at the demo game
    results = play(["mock"], "results/expert", instances="instances_train")
    # results/expert/mock/wordecho/train/instance_00000/{interactions,scores}.json

The same works from the shell: ``clem run -g wordecho -m mock -i instances_train -r results``,
``clem score -g wordecho -r results``, ``clem eval -r results``.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from playpen.api import PlaypenError, append_entry

DEMO_GAME_NAME = "wordecho"
DEMO_GAME_DIR = Path(str(resources.files("playpen_tune").joinpath("demo_game", DEMO_GAME_NAME)))
"""The demo game's directory: package data, installed with ``playpen_tune`` (editable or not)."""

DEMO_SPLIT_FILE = DEMO_GAME_DIR / "splits.jsonl"
"""The demo game's instance split (``train``: experiment ``train``, ``validation``: experiment ``heldout``),
for ``--split_source``."""
GAME_REGISTRY_FILE = "game_registry.json"
DEFAULT_GEN_ARGS = {"temperature": 0.0, "max_tokens": 300}  # the `clem run` defaults


def _demo_game_dir() -> Path:
    if not (DEMO_GAME_DIR / "clemgame.json").is_file():
        raise PlaypenError(f"the demo game is missing at {DEMO_GAME_DIR}; it is package data of playpen-tune, "
                           "so reinstall playpen-tune (pip install --force-reinstall playpen-tune)")
    return DEMO_GAME_DIR


def write_game_registry(directory: str | Path) -> Path:
    """Write ``directory/game_registry.json`` so that clemcore finds the demo game; return its path.

    The entry is ``{"benchmark_path": "<absolute DEMO_GAME_DIR>"}``, which clemcore expands to the
    game's ``clemgame.json`` (with an absolute ``game_path``). An existing registry file is kept
    byte for byte: the entry is appended to its list unless it is already there. clemcore reads the file from
    the working directory of the process that runs the game, so ``directory`` is normally the one
    you call :func:`play` (or ``clem run``) from.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / GAME_REGISTRY_FILE
    append_entry({"benchmark_path": str(_demo_game_dir())}, path)
    return path


def demo_corpus() -> list[str]:
    """Every prompt and expert answer of the demo game's instance files (all splits).

    Pass it as ``corpus`` to :func:`playpen_tune.tiny.build_tiny_chat_model` so that the tiny
    model's tokenizer encodes the game's texts compactly.
    """
    texts: list[str] = []
    for file in sorted((_demo_game_dir() / "in").glob("instances*.json")):
        for experiment in json.loads(file.read_text(encoding="utf-8"))["experiments"]:
            texts.append(experiment["initial_prompt"])
            for instance in experiment["game_instances"]:
                for word in instance["target_words"]:
                    texts.append(experiment["round_prompt"].replace("$WORD$", word))
                    texts.append(f"ANSWER: {word}")
    return list(dict.fromkeys(texts))  # unique, in order


def play(model_names: Sequence[str], results_dir: str | Path, instances: str = "instances_train",
         game: str = DEMO_GAME_NAME, batch_size: int = 1, gen_args: dict | None = None) -> Path:
    """Play ``game`` with clemcore's runner, score it (``clemcore.cli.score``); return the results dir.

    Args:
        model_names: one model per player (``["mock"]`` is the demo game's scripted expert); each
            is a name from clemcore's model registry (``./model_registry.json`` first) or a
            ModelSpec JSON string, exactly as for ``clem run -m``.
        results_dir: root of clemcore's results tree (made absolute, so later ``chdir`` calls do not
            move it). Episodes land in ``<results_dir>/<model names joined by '--'>/<game>/
            <experiment>/instance_<game_id:05d>/`` with ``interactions.json`` and ``scores.json``.
            Episodes already scored there are kept, not played again (delete them to replay).
        instances: instances file name in the game's ``in/`` folder, without ``.json``
            (the demo game has ``instances_train``, ``instances_heldout`` and ``instances``).
        game: a game name from clemcore's game registry.
        batch_size: number of episodes played at once (models that support batching only).
        gen_args: generation arguments for the models, merged over ``{"temperature": 0.0,
            "max_tokens": 300}`` (the ``clem run`` defaults).

    clemcore looks games up from the current working directory only: call this from a directory
    holding a ``game_registry.json`` that lists the game (see :func:`write_game_registry`) or the
    game folder itself. clemcore also writes its log, ``clembench.log``, to the directory the
    process was in when ``clemcore`` was first imported.

    Raises:
        PlaypenError: the game is not in clemcore's registry, a model could not be loaded, or an
            episode was not played and scored (clemcore logs and skips episodes that raise).
    """
    from clemcore.backends import ModelSpec

    from playpen.api import game_registry, play_games

    if not model_names:
        raise PlaypenError("play() needs at least one model name, e.g. ['mock']")
    spec = game_registry().find_game_spec(game)
    if spec is None:
        hint = (f"call playpen_tune.games.write_game_registry({str(Path.cwd())!r}) first"
                if game == DEMO_GAME_NAME else "add it to ./game_registry.json")
        raise PlaypenError(f"clemcore finds no game '{game}' from the working directory {Path.cwd()}; {hint}")

    results_dir = Path(results_dir).resolve()
    problem = play_games(ModelSpec.from_strings(list(model_names)), [spec], results_dir,
                         {**DEFAULT_GEN_ARGS, **(gen_args or {})}, instances=instances, batch_size=batch_size)[game]
    if problem:
        raise PlaypenError(f"'{game}' with {list(model_names)}: {problem}")
    return results_dir
