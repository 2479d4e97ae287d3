"""`playpen play`: interaction data on the train split, scored by clemcore, with eval's resume and settings
guard; -n repetitions; and an upstream 3.x trainer file that trains with TRL on the episodes it collected."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from playpen_tune.games import DEMO_SPLIT_FILE
from tests.conftest import snapshot

SPLIT = ["-g", "wordecho", "--split_source", str(DEMO_SPLIT_FILE)]


@pytest.fixture
def demo_workdir(workdir) -> Path:
    from playpen_tune.games import write_game_registry

    write_game_registry(workdir)
    return workdir


@pytest.fixture
def expert_episodes(demo_workdir, playpen) -> Path:
    result = playpen("play", "mock", *SPLIT, "-r", "tr")
    assert result.code == 0, result
    return demo_workdir / "tr"


def test_play_collects_the_train_split_scored_by_clemcore(expert_episodes, playpen):
    played = expert_episodes / "clem" / "mock" / "wordecho"
    assert sorted(p.name for p in played.iterdir() if p.is_dir()) == ["train"]  # no validation instance
    scores = [json.loads(p.read_text())["episode scores"] for p in played.glob("train/instance_*/scores.json")]
    assert len(scores) == 48 and all(s["Success"] == 1 for s in scores)
    summary = json.loads((expert_episodes / "mock.play.json").read_text())
    assert summary["split"] == "train" and summary["split_source"] == str(DEMO_SPLIT_FILE)
    assert summary["episodes"] == {"wordecho": 48} and summary["failed_games"] == {}
    assert summary["instances"]["wordecho"] == [["train", game_id] for game_id in range(48)]
    from playpen_tune.data import load_sft_dataset

    dataset, report = load_sft_dataset([str(expert_episodes)])  # what `learn --dataset tr` reads
    assert len(dataset) == 48 and report.sources[0]["kind"] == "transcripts"


def test_play_again_resumes_and_refuses_other_settings(expert_episodes, playpen):
    episodes = sorted(expert_episodes.rglob("interactions.json"))
    before = {p: p.stat().st_mtime_ns for p in episodes}
    again = playpen("play", "mock", *SPLIT, "-r", "tr")
    assert again.code == 0, again
    assert "already played" in again.out and {p: p.stat().st_mtime_ns for p in episodes} == before
    files = snapshot(expert_episodes / "clem")
    other = playpen("play", "mock", *SPLIT, "-r", "tr", "-L", "7")
    assert other.code == 2 and "played with a different gen_args" in other.err
    assert snapshot(expert_episodes / "clem") == files


@pytest.mark.parametrize("args, message", [
    (["-n", "0"], "-n must be >= 1"),
    (["-n", "2"], "pass -T above 0"),
    (["-b", "0"], "--batch_size must be >= 1"),
    (["--split", "test"], "has no split 'test'"),
])
def test_bad_play_input_is_one_error_line_and_writes_nothing(demo_workdir, playpen, args, message):
    before = snapshot(demo_workdir)
    result = playpen("play", "mock", *SPLIT, "-r", "tr", *args)
    assert result.code == 2, result
    assert [line for line in result.err.splitlines() if line.startswith("error:")] == [result.err.strip()]
    assert message in result.err
    assert snapshot(demo_workdir) == before


def test_repetitions_play_each_instance_n_times_for_on_policy_pairs(demo_workdir, playpen, tmp_path):
    """-n 2 -T 1: two sampled episodes per instance (DIR and DIR/repeat_2); dpo_qlora's loader pairs them by
    instance. The random tiny model aborts every episode, so its pairs have equal scores and none is kept."""
    rows = [{"game": "wordecho", "experiment": "train", "task_id": i, "split": "train"} for i in range(4)]
    source = tmp_path / "four.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = playpen("play", "tiny", "-g", "wordecho", "--split_source", source, "-r", "tr", "-n", "2", "-T", "1.0",
                     "-L", "6")
    assert result.code == 0, result
    first = sorted((demo_workdir / "tr" / "clem" / "tiny" / "wordecho" / "train").glob("instance_*/scores.json"))
    second = sorted((demo_workdir / "tr" / "repeat_2" / "clem" / "tiny" / "wordecho" / "train")
                    .glob("instance_*/scores.json"))
    assert [p.parent.name for p in first] == [p.parent.name for p in second] == [f"instance_{i:05d}" for i in range(4)]
    assert json.loads((demo_workdir / "tr" / "tiny.play.json").read_text())["episodes"] == {"wordecho": 8}
    learn = playpen("learn", "-l", "dpo_qlora", "-m", "tiny", "--dataset", "tr", "--split_source", DEMO_SPLIT_FILE)
    assert learn.code == 2  # pairs were formed per instance (4 comparisons), none with different scores
    assert "0 preference pairs from tr (removed: equal scores 4)" in learn.err, learn


TRAINER_3X = '''
import json

from playpen import BasePlaypenTrainer, to_instances_filter


class EpisodeSFT(BasePlaypenTrainer):
    """Upstream 3.x style: learn() without arguments; SFT with TRL on episodes of `playpen play`."""

    def learn(self):
        from clemcore.clemgame import GameInstances
        from trl import SFTConfig, SFTTrainer

        from playpen_tune.data import load_sft_dataset

        rows = [json.loads(line) for line in open(SPLIT_FILE)]
        spec = self.get_game_registry().get_game_spec("wordecho")
        train_rows = [r for r in rows if r["split"] == "train"]
        train = GameInstances.from_game_spec(spec).filter(to_instances_filter(train_rows))
        dataset, _ = load_sft_dataset([EPISODES])
        args = SFTConfig(output_dir="trainer-out", max_steps=24, learning_rate=3e-3, per_device_train_batch_size=8,
                         logging_steps=4, save_strategy="no", report_to=[], use_cpu=True, max_length=128)
        trainer = SFTTrainer(model=self.learner.model, args=args, train_dataset=dataset,
                             processing_class=self.learner.tokenizer)
        trainer.train()
        trainer.save_model("trainer-out")
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        with open("trained.json", "w") as handle:
            json.dump({"losses": losses, "examples": len(dataset), "train_instances": len(train),
                       "teacher": self.teacher is not None}, handle)
'''


def test_run_trains_an_upstream_3x_trainer_file_on_played_episodes(expert_episodes, playpen):
    workdir = expert_episodes.parent
    (workdir / "trainer_3x.py").write_text(f"SPLIT_FILE = {str(DEMO_SPLIT_FILE)!r}\n"
                                           f"EPISODES = {str(expert_episodes)!r}\n" + textwrap.dedent(TRAINER_3X))
    result = playpen("run", "trainer_3x.py", "-l", "tiny")
    assert result.code == 0, result
    trained = json.loads((workdir / "trained.json").read_text())
    assert trained["examples"] == 48 and trained["train_instances"] == 48 and trained["teacher"] is False
    assert len(trained["losses"]) >= 3 and trained["losses"][-1] < trained["losses"][0] * 0.8
    assert (workdir / "trainer-out" / "model.safetensors").is_file()


def test_a_failed_game_is_reported_in_play_json_and_the_exit_status(demo_workdir, playpen):
    """-t adds the partner as the second player (run dir 'mock--programmatic'); wordecho has one player, so
    clemcore prepares no episode: the game is FAILED, never an empty success."""
    result = playpen("play", "mock", "-t", "programmatic", *SPLIT, "-r", "tr")
    assert result.code == 2 and "some games failed" in result.err, result
    summary = json.loads((demo_workdir / "tr" / "mock--programmatic.play.json").read_text())
    assert summary["players"] == ["mock", "programmatic"] and summary["episodes"] == {"wordecho": 0}
    assert "48 of 48 episodes were not played and scored" in summary["failed_games"]["wordecho"]
