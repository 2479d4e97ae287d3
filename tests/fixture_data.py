"""Test data made by code: clembench-evaluation style files and a results directory played by clemcore.

Nothing here reads data from outside the repository:

* :func:`sft_rows` and :func:`preference_rows` are small, learnable rows in the clembench-evaluation
  formats (``{"messages": [...]}`` and ``{"prompt", "chosen", "rejected"}`` plain strings);
* :func:`play_relay` plays the two-player test game ``relay`` (``tests/data/games/relay``) with
  clemcore's programmatic players and scores it, so the transcripts are real clemcore episodes.
"""
from __future__ import annotations

import json
from pathlib import Path

RELAY_GAME_DIR = Path(__file__).resolve().parent / "data" / "games" / "relay"
RELAY_RUN_DIR = "mock--mock"  # clemcore's folder for the two scripted players

WORDS = ["apple", "river", "stone", "cloud", "tiger", "lemon", "chair", "piano",
         "robot", "candle", "mirror", "garden", "ocean", "forest", "window", "butter"]
LETTER_WORDS = {"A": "apple, ant, arrow", "B": "bread, bird, boat", "C": "cat, cup, cloud",
                "D": "dog, door, drum", "F": "fish, fork, fire", "G": "goat, gate, gold",
                "M": "moon, milk, map", "S": "sun, sock, star"}


def sft_rows(count: int) -> list[dict]:
    """``count`` single-turn ``{"messages": [user, assistant]}`` rows (four short task kinds, in turn)."""
    return [{"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}
            for prompt, answer in _tasks(count)]


def preference_rows(count: int) -> list[dict]:
    """``count`` ``{"prompt", "chosen", "rejected"}`` rows: the right answer vs. a padded, wrong one."""
    return [{"prompt": prompt, "chosen": answer, "rejected": f"{answer.swapcase()} is my answer, I think."}
            for prompt, answer in _tasks(count)]


def _tasks(count: int) -> list[tuple[str, str]]:
    letters = list(LETTER_WORDS)
    tasks = []
    for i in range(count):
        word = WORDS[i % len(WORDS)]
        kind = i % 4
        if kind == 0:
            letter = letters[(i // 4) % len(letters)]
            tasks.append((f"List three words that start with the letter {letter}.", LETTER_WORDS[letter]))
        elif kind == 1:
            tasks.append((f"Spell the word {word} backwards.", word[::-1]))
        elif kind == 2:
            a, b = i % 7 + 1, i % 5 + 2
            tasks.append((f"What is {a} plus {b}?", str(a + b)))
        else:
            tasks.append((f"Write the word {word} in capital letters.", word.upper()))
    return tasks


def write_json(path: Path, rows: list) -> Path:
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


def relay_instances() -> list[dict]:
    """The relay game's instances, each with its experiment name (``experiment``)."""
    document = json.loads((RELAY_GAME_DIR / "in" / "instances.json").read_text(encoding="utf-8"))
    return [dict(instance, experiment=experiment["name"])
            for experiment in document["experiments"] for instance in experiment["game_instances"]]


def play_relay(workdir: Path) -> Path:
    """Play every relay instance with two ``mock`` players from ``workdir``; return the results dir.

    The episodes land in ``<workdir>/results/mock--mock/relay/<experiment>/instance_<id>/``.
    """
    from playpen.files import append_entry
    from playpen_tune.games import play

    append_entry({"benchmark_path": str(RELAY_GAME_DIR)}, workdir / "game_registry.json")
    return play(["mock", "mock"], workdir / "results", instances="instances", game="relay")


def save_prequantized(source_dir: str | Path, output_dir: str | Path) -> Path:
    """Load ``source_dir`` in 4-bit NF4 (double quant, fp32 compute) and save the quantized copy."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from playpen_tune.quantization import DEFAULT_QUANTIZATION, to_bnb_config

    quantization = to_bnb_config({**DEFAULT_QUANTIZATION, "bnb_4bit_compute_dtype": "float32"})
    model = AutoModelForCausalLM.from_pretrained(source_dir, quantization_config=quantization,
                                                 dtype=torch.float32)
    model.save_pretrained(output_dir)
    AutoTokenizer.from_pretrained(source_dir).save_pretrained(output_dir)
    return Path(output_dir)
