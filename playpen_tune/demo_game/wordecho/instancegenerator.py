"""Generate the wordecho instance files in ``in/``.

    python playpen_tune/demo_game/wordecho/instancegenerator.py

writes (deterministically, seed 42):

* ``in/instances_train.json``   - 48 episodes, experiment ``train``
* ``in/instances_heldout.json`` - 12 episodes, experiment ``heldout``
* ``in/instances.json``         - both experiments (clemcore's default file, 60 episodes)
* ``splits.jsonl``              - the instance split of ``instances.json``: one row per episode with
  ``game``, ``experiment``, ``task_id`` and ``split`` (``train`` or ``validation``), the format of
  ``playpen --split_source`` (upstream's ``colab-potsdam/playpen-data`` rows plus a split column)

Every episode is an ordered pair of two different words from one shared vocabulary of 12 words:
``(WORDS[i], WORDS[(i + k) % 12])``, with offsets ``k`` 1-4 for train and 5 for held-out. So each
word is asked 4 times in round 1 and 4 times in round 2 of the train set (once each in held-out),
and train and held-out use the same words but never the same pair: held-out episodes are new
dialogues made of known words. The two splits have different experiment names, so their results never overwrite
each other even when they are written to the same results directory.
"""
import json
import os
import random

from clemcore.clemgame import GameInstanceGenerator

GAME_DIR = os.path.dirname(os.path.abspath(__file__))

WORDS = ["apple", "river", "stone", "cloud", "tiger", "lemon",
         "chair", "piano", "robot", "candle", "mirror", "garden"]
TRAIN_OFFSETS = (1, 2, 3, 4)
HELDOUT_OFFSETS = (5,)
SEED = 42

INITIAL_PROMPT = "Word echo game. I say a word, you repeat it. Answer in the form ANSWER: <word>"
ROUND_PROMPT = "Say the word: $WORD$"


def split_pairs(seed: int = SEED) -> dict:
    """Disjoint, balanced train/held-out lists of ordered word pairs (shuffled with ``seed``)."""
    splits = {}
    for split, offsets in (("train", TRAIN_OFFSETS), ("heldout", HELDOUT_OFFSETS)):
        pairs = [(WORDS[i], WORDS[(i + k) % len(WORDS)]) for k in offsets for i in range(len(WORDS))]
        random.Random(seed).shuffle(pairs)
        splits[split] = pairs
    return splits


class WordEchoInstanceGenerator(GameInstanceGenerator):

    def __init__(self):
        super().__init__(GAME_DIR)

    def on_generate(self, seed: int, splits: tuple = ("train",)):
        for split in splits:
            experiment = self.add_experiment(split)
            experiment["initial_prompt"] = INITIAL_PROMPT
            experiment["round_prompt"] = ROUND_PROMPT
            for game_id, pair in enumerate(split_pairs(seed)[split]):
                instance = self.add_game_instance(experiment, game_id)
                instance["target_words"] = list(pair)


SPLIT_NAMES = {"train": "train", "heldout": "validation"}  # experiment -> split in splits.jsonl


def write_split_file(seed: int = SEED) -> None:
    rows = [{"game": "wordecho", "experiment": experiment, "task_id": game_id, "split": split}
            for experiment, split in SPLIT_NAMES.items() for game_id in range(len(split_pairs(seed)[experiment]))]
    with open(os.path.join(GAME_DIR, "splits.jsonl"), "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)


if __name__ == "__main__":
    WordEchoInstanceGenerator().generate("instances_train.json", seed=SEED, splits=("train",))
    WordEchoInstanceGenerator().generate("instances_heldout.json", seed=SEED, splits=("heldout",))
    WordEchoInstanceGenerator().generate("instances.json", seed=SEED, splits=("train", "heldout"))
    write_split_file()
