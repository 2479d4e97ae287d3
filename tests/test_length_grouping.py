"""``--group_by_length`` (on by default): the real Trainers of sft_qlora and dpo_qlora draw batches of
similar length in a new order every epoch; ``--group_by_length false`` gives random batches again."""
from __future__ import annotations

import json
import random

import pytest

WORDS = ["apple", "pear", "grid", "cross", "red", "blue", "word", "game", "clue", "guess"]


def words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(count))


@pytest.fixture
def uneven_sft(workdir):
    """128 conversations from 2 to 120 words, in random order (made here, like clembench's uneven lengths)."""
    rng = random.Random(0)
    rows = [{"messages": [{"role": "user", "content": words(rng, 1 + n % 8)},
                          {"role": "assistant", "content": words(rng, 1 + (n * 37) % 120)}]} for n in range(128)]
    path = workdir / "uneven.json"
    path.write_text(json.dumps(rows))
    return path


@pytest.fixture
def uneven_pairs(workdir):
    rng = random.Random(1)
    rows = [{"prompt": words(rng, 1 + (n * 29) % 60), "chosen": words(rng, 1 + n % 5),
             "rejected": words(rng, 1 + (n * 7) % 6)} for n in range(160)]
    path = workdir / "pairs.json"
    path.write_text(json.dumps(rows))
    return path


def prepare(learner_class, data, workdir, *options, out: str = "out"):
    from playpen import config as cfg
    from playpen.learners import LearnRequest
    from playpen.models import find_model

    overrides = cfg.parse_overrides(learner_class.config_class, ["--dataset", str(data), "--max_length", "256",
                                                                 "--per_device_train_batch_size", "4",
                                                                 "--gradient_accumulation_steps", "1", *options])
    config = cfg.build_config(learner_class.config_class, {}, overrides)
    request = LearnRequest(model=find_model("tiny").to_dict(), config=config, output_dir=workdir / out, name="t",
                           learner={"SFTQLoRALearner": "sft_qlora",
                                    "DPOQLoRALearner": "dpo_qlora"}[learner_class.__name__])
    return learner_class().prepare(request)


def epochs(trainer, count: int = 2) -> list[tuple[list[int], float]]:
    """``count`` epochs of the Trainer's own dataloader: the rows' lengths in the order trained, padding share."""
    dataloader = trainer.get_train_dataloader()
    result = []
    for _ in range(count):
        masks = [batch["attention_mask"] for batch in dataloader]
        lengths = [int(row.sum()) for mask in masks for row in mask]
        result.append((lengths, 1 - sum(lengths) / sum(mask.numel() for mask in masks)))
    return result


def assert_grouping(grouped, random_, rows: int):
    (first, grouped_padding), (second, _) = grouped
    for lengths, _ in grouped + random_:
        assert len(lengths) == rows and sorted(lengths) == sorted(first)  # every example once per epoch
    assert first != second  # a new order every epoch
    random_padding = random_[0][1]
    assert random_padding > 0.2, random_padding
    assert grouped_padding < random_padding / 2, (grouped_padding, random_padding)


def test_sft_groups_by_length_by_default_and_can_be_switched_off(workdir, uneven_sft):
    from playpen_tune.learners.sft import SFTQLoRALearner

    grouped = prepare(SFTQLoRALearner, uneven_sft, workdir)
    assert type(grouped.trainer).__name__ == "LengthGroupedSFTTrainer"
    assert grouped.record.extra["train_sampler"] == "length_grouped"
    plain = prepare(SFTQLoRALearner, uneven_sft, workdir, "--group_by_length", "false", out="plain")
    assert plain.record.extra["train_sampler"] == "random"
    assert_grouping(epochs(grouped.trainer), epochs(plain.trainer), 128)


def test_dpo_groups_pairs_by_their_padded_length(workdir, uneven_pairs):
    from playpen_tune.learners.dpo import DPOQLoRALearner

    grouped = prepare(DPOQLoRALearner, uneven_pairs, workdir)
    assert grouped.record.extra["train_sampler"] == "length_grouped"
    plain = prepare(DPOQLoRALearner, uneven_pairs, workdir, "--group_by_length", "false", out="plain")
    assert plain.record.extra["train_sampler"] == "random"
    assert_grouping(epochs(grouped.trainer), epochs(plain.trainer), 320)


def test_packing_draws_packed_rows_at_random(workdir, uneven_sft):
    from playpen_tune.learners.sft import SFTQLoRALearner

    run = prepare(SFTQLoRALearner, uneven_sft, workdir, "--packing", "true")
    assert run.record.extra["train_sampler"] == "random"
    assert type(run.trainer).__name__ == "SFTTrainer"


def test_the_manifest_records_the_sampler(playpen, workdir, uneven_sft):
    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", uneven_sft, "--max_steps", "2",
                     "--max_length", "128", "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1",
                     "--group_by_length", "false")
    assert result.code == 0, result
    manifest = json.loads((workdir / "models" / "tiny-sft_qlora" / "playpen_run.json").read_text())
    assert manifest["train_sampler"] == "random" and manifest["config"]["group_by_length"] is False
