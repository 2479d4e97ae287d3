"""Upstream playpen 3.x trainer files run through `playpen run` as they are: its buffers and their callbacks, the
epoch results folders and the starter trainers, with clemcore's sequential, batchwise and branching runners on
the test games; one file trains with TRL on what it collected."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from playpen_tune.games import DEMO_SPLIT_FILE


def write_trainer(directory: Path, name: str, source: str, **constants) -> str:
    header = "".join(f"{key} = {value!r}\n" for key, value in constants.items())
    (directory / name).write_text(header + textwrap.dedent(source))
    return name


SEQUENTIAL = '''
import json

from playpen import to_sub_selector
from playpen.starters.sequential_trainer import SequentialPlayPenTrainer


class EchoTrainer(SequentialPlayPenTrainer):
    """A starter subclass as upstream's examples write them: settings in __init__, training in _train."""

    def __init__(self, learner, teacher=None):
        super().__init__(learner, teacher)
        self.game = "wordecho"
        self.split_source = SPLIT_FILE
        self.num_epochs = 2
        self.collected = []

    def _train(self):
        by_model = self.episode_buffer.to_conversational_dataset(self.learner).to_list()
        by_player = self.episode_buffer.to_conversational_dataset("Player 1").to_list()
        rows = [json.loads(line) for line in open(SPLIT_FILE)]
        self.collected.append({"by_model": by_model, "same_by_player": by_player == by_model,
                               "episodes": len(self.episode_buffer),
                               "sub_selector": to_sub_selector(rows)("wordecho", "train")})
        json.dump(self.collected, open("collected.json", "w"))
'''


def answers_echo(messages: list[dict]) -> bool:
    """Each answer of a wordecho conversation repeats the word of the message before it."""
    pairs = list(zip(messages[::2], messages[1::2], strict=False))
    return all(user["role"] == "user" and answer["role"] == "assistant"
               and answer["content"] == "ANSWER: " + user["content"].rsplit("Say the word: ", 1)[1]
               for user, answer in pairs)


def test_sequential_starter_collects_episodes_per_epoch(parity_workdir, playpen):
    trainer = write_trainer(parity_workdir, "sequential.py", SEQUENTIAL, SPLIT_FILE=str(DEMO_SPLIT_FILE))
    result = playpen("run", trainer, "-l", "mock")
    assert result.code == 0, result
    epochs = json.loads((parity_workdir / "collected.json").read_text())
    assert len(epochs) == 2
    for epoch in epochs:
        assert epoch["episodes"] == 48 and len(epoch["by_model"]) == 48 and epoch["same_by_player"]
        assert all(len(row["messages"]) == 4 and answers_echo(row["messages"]) for row in epoch["by_model"])
        assert epoch["sub_selector"] == list(range(48))
    for epoch in ("epoch_00001", "epoch_00002"):  # clemcore's episode files, one folder per epoch
        played = sorted((parity_workdir / "playpen-records" / "mock" / epoch / "wordecho" / "train").glob("instance_*"))
        assert len(played) == 48 and all((p / "interactions.json").is_file() for p in played)


BATCH_STARTER = '''
import json

from playpen.starters.batch_trainer import BatchwisePlayPenTrainer


class GuesserTrainer(BatchwisePlayPenTrainer):
    """The batchwise starter on the two-player game: the teacher describes (Player 1), the learner guesses."""

    def __init__(self, learner, teacher):
        super().__init__(learner, teacher)
        self.game = "relay"
        self.split_source = SPLIT_FILE
        self.num_epochs = 1
        self.batch_size = 4

    def _train(self):
        json.dump({role: self.episode_buffer.to_conversational_dataset(role).to_list()
                   for role in ("Player 1", "Player 2")}, open("roles.json", "w"))
'''


def test_batch_starter_plays_teacher_first_and_keeps_each_players_side(workdir, playpen, tmp_path):
    from playpen.files import append_entry
    from tests.fixture_data import RELAY_GAME_DIR, relay_instances

    append_entry({"benchmark_path": str(RELAY_GAME_DIR)}, workdir / "game_registry.json")
    split = tmp_path / "relay-splits.jsonl"
    split.write_text("".join(json.dumps({"game": "relay", "experiment": row["experiment"], "task_id": row["game_id"],
                                         "split": "train"}) + "\n" for row in relay_instances()))
    result = playpen("run", write_trainer(workdir, "batch.py", BATCH_STARTER, SPLIT_FILE=str(split)),
                     "-l", "mock", "-t", "mock")
    assert result.code == 0, result
    roles = json.loads((workdir / "roles.json").read_text())
    assert len(roles["Player 1"]) == len(roles["Player 2"]) == len(relay_instances())
    assert all([m["role"] for m in row["messages"]] == ["user", "assistant"] for rows in roles.values() for row in rows)
    assert all("Target word:" in row["messages"][0]["content"] and row["messages"][1]["content"].startswith("CLUE:")
               for row in roles["Player 1"])
    assert all("The describer says: CLUE:" in row["messages"][0]["content"]
               and row["messages"][1]["content"].startswith("GUESS:") for row in roles["Player 2"])
    assert len(list((workdir / "playpen-records" / "mock--mock" / "epoch_00001" / "relay")
                    .glob("*/instance_*/interactions.json"))) == len(relay_instances())


BATCHWISE_TRL = '''
import json
from pathlib import Path

from clemcore.backends import Model
from clemcore.clemgame import (ExperimentFileSaver, GameBenchmark, GameBenchmarkCallbackList, GameInstances,
                               InstanceFileSaver, InteractionsFileSaver)
from clemcore.clemgame.runners import batchwise

from playpen import BasePlaypenTrainer, EpisodeBuffer, EpisodeBufferCallback, to_instances_filter
from playpen.callbacks.files import EpochResultsFolder, EpochResultsFolderCallback


class DistillingTrainer(BasePlaypenTrainer):
    """Upstream's batchwise example, written out: the teacher plays, the learner is trained with TRL on the
    teacher's side of the episodes."""

    def __init__(self, learner, teacher):
        super().__init__(learner, teacher)
        self.episode_buffer = EpisodeBuffer()
        folder = EpochResultsFolder(Path("playpen-records"), [teacher])
        infos = Model.to_infos([teacher])
        self.callbacks = GameBenchmarkCallbackList([
            EpisodeBufferCallback(self.episode_buffer), EpochResultsFolderCallback(folder), InstanceFileSaver(folder),
            ExperimentFileSaver(folder, player_model_infos=infos),
            InteractionsFileSaver(folder, player_model_infos=infos)])

    def learn(self):
        from trl import SFTConfig, SFTTrainer

        rows = [json.loads(line) for line in open(SPLIT_FILE)]
        spec = self.get_game_registry().get_game_specs_that_unify_with("wordecho")[0]
        with GameBenchmark.load_from_spec(spec) as game_benchmark:
            train_rows = [r for r in rows if r["split"] == "train"]
            train = GameInstances.from_game_spec(spec).filter(to_instances_filter(train_rows))
            batchwise.run(game_benchmark, train, [self.teacher], callbacks=self.callbacks, batch_size=8)
        dataset = self.episode_buffer.to_conversational_dataset(self.teacher)
        args = SFTConfig(output_dir="trainer-out", max_steps=24, learning_rate=3e-3, per_device_train_batch_size=8,
                         logging_steps=4, save_strategy="no", report_to=[], use_cpu=True, max_length=128)
        trainer = SFTTrainer(model=self.learner.model, args=args, train_dataset=dataset,
                             processing_class=self.learner.tokenizer)
        trainer.train()
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        json.dump({"losses": losses, "conversations": dataset.to_list()}, open("trained.json", "w"))
'''


def test_batchwise_trainer_file_trains_with_trl_on_what_it_collected(parity_workdir, playpen):
    trainer = write_trainer(parity_workdir, "batchwise.py", BATCHWISE_TRL, SPLIT_FILE=str(DEMO_SPLIT_FILE))
    result = playpen("run", trainer, "-l", "tiny", "-t", "mock")
    assert result.code == 0, result
    trained = json.loads((parity_workdir / "trained.json").read_text())
    # eight games at a time, each kept in its own episode: every answer follows its own prompt
    assert len(trained["conversations"]) == 48
    assert all(len(row["messages"]) == 4 and answers_echo(row["messages"]) for row in trained["conversations"])
    assert len(trained["losses"]) >= 3 and trained["losses"][-1] < trained["losses"][0] * 0.8
    assert len(list((parity_workdir / "playpen-records" / "mock" / "epoch_00001" / "wordecho" / "train")
                    .glob("instance_*/interactions.json"))) == 48


BRANCHING_DPO = '''
import json

from clemcore.clemgame.runners import branching

from playpen.starters.branching_trainer import BranchingPlayPenTrainer


class DPOPlayPenTrainer(BranchingPlayPenTrainer):
    """As upstream's TRL DPO example: the branching starter with its settings changed in __init__."""

    def __init__(self, learner, teacher=None):
        super().__init__(learner, teacher)
        self.game = "parity"
        self.split_source = SPLIT_FILE
        self.num_epochs = 1
        self.branching_factor = 2
        self.branching_criteria = branching.is_player_model(self.learner)
        self.learner_role = "Player 1"

    def _train(self):
        buffer = self.episode_buffer
        json.dump({"pairs": buffer.to_preference_dataset(self.learner_role).to_list(),
                   "all_points": len(buffer.to_preference_dataset(self.learner, require_different_scores=False)),
                   "conversations": buffer.to_conversational_dataset(self.learner).to_list(),
                   "points": [[str(p.game_snapshot.origin), p.branch, p.episode_score, p.diverging_step.response]
                              for p in buffer.branching_points]}, open("branched.json", "w"))
'''


def test_branching_starter_gives_pairs_of_sibling_turns_that_scored_differently(parity_workdir, playpen):
    """The sampling tiny model plays parity (two rounds; a round scores when the answer has an even number of
    characters), each of its turns branched two ways: four episodes per instance, three branching points."""
    trainer = write_trainer(parity_workdir, "branching_dpo.py", BRANCHING_DPO,
                            SPLIT_FILE=str(parity_workdir / "parity-splits.jsonl"))
    result = playpen("run", trainer, "-l", "tiny", "-T", "1.0", "-L", "4")
    assert result.code == 0, result
    out = json.loads((parity_workdir / "branched.json").read_text())
    leaves = sorted((parity_workdir / "playpen-records-branching" / "tiny" / "epoch_00001" / "parity" / "two_rounds")
                    .glob("instance_*/branch_*/interactions.json"))
    assert len(leaves) == len(out["conversations"]) >= 6 * 3  # an answer of no text ends a tree early
    # per point and branch: the mean score of the episodes through it (clemcore's rewards), and its answer
    branches: dict = {}
    for origin, branch, score, response in out["points"]:
        branches.setdefault(origin, {}).setdefault(branch, [response, []])[1].append(score)
    expected = []
    for by_branch in branches.values():
        means = sorted(((sum(s) / len(s), answer) for answer, s in by_branch.values()), reverse=True)
        if len(means) > 1 and means[0][0] != means[-1][0] and means[0][1] != means[-1][1]:
            expected.append((means[0][1], means[-1][1]))
    assert out["all_points"] == sum(len(by_branch) > 1 for by_branch in branches.values())
    assert expected and sorted((p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in out["pairs"]) \
        == sorted(expected)
    assert all(p["prompt"][-1]["role"] == "user" and p["prompt"][0]["content"].startswith("Parity game.")
               for p in out["pairs"])


@pytest.mark.parametrize("line, named", [
    ("from playpen import make_tree_env", "imports 'make_tree_env' from playpen,"),
    ("from playpen.branching.master import BranchingGameBenchmark", "imports module playpen.branching,"),
])
def test_an_upstream_name_we_do_not_provide_is_one_error_line(workdir, playpen, line, named):
    (workdir / "old.py").write_text(line + "\n")
    result = playpen("run", "old.py", "-l", "mock")
    assert result.code == 2 and result.err.count("error:") == 1 and named in result.err, result
    assert "Upstream trainer files" in result.err and "Traceback" not in result.err


def test_upstream_names_import_light():
    """``from playpen import ...`` of the upstream names costs no torch and no clemcore until a callback is used."""
    code = ("import sys\nfrom playpen import BasePlaypenTrainer, EpisodeBuffer, to_instances_filter, to_sub_selector\n"
            "print([m for m in ('torch', 'transformers', 'clemcore', 'datasets') if m in sys.modules], "
            "EpisodeBuffer.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "playpen.buffers"]
    import playpen
    import playpen.callbacks.buffers as callbacks

    assert playpen.EpisodeBufferCallback is callbacks.EpisodeBufferCallback
    assert playpen.BranchingEpisodeBufferCallback is callbacks.BranchingEpisodeBufferCallback
