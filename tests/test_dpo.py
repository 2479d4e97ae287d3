"""dpo_qlora end to end on tiny offline models: fresh adapter on a base, DPO on top of SFT (the
reference is the SFT policy), prompt truncation, and user errors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

LN2 = math.log(2)
FAST = ["--max_length", "96", "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1",
        "--logging_steps", "1", "--save_steps", "100"]
PAIRS = 24


def subset(source: Path, target: Path) -> Path:
    """The first PAIRS rows of a clembench-evaluation style file, written to ``target``."""
    target.write_text(json.dumps(json.loads(source.read_text())[:PAIRS]))
    return target


@pytest.fixture
def dpo_file(workdir, evaluation_files) -> Path:
    return subset(evaluation_files["dpo"], workdir / "dpo.json")


@pytest.fixture
def sft_file(workdir, evaluation_files) -> Path:
    """The first PAIRS rows of the generated SFT file."""
    return subset(evaluation_files["sft"], workdir / "sft.json")




def read_manifest(workdir: Path, name: str) -> dict:
    out = workdir / "models" / name
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    assert not (out / "ref").exists()  # the frozen reference copy is not saved next to the DPO adapter
    return json.loads((out / "playpen_run.json").read_text())


def registry_entries(workdir: Path) -> dict:
    return {e["model_name"]: e for e in json.loads((workdir / "model_registry.json").read_text())}


def mean(values):
    return sum(values) / len(values)


def test_dpo_on_base_model_raises_the_reward_margin(playpen, workdir, dpo_file):
    result = playpen("learn", "-l", "dpo_qlora", "-m", "tiny", "--dataset", dpo_file, "--max_steps", "12",
                     "--learning_rate", "2e-2", *FAST)
    assert result.code == 0, result
    manifest = read_manifest(workdir, "tiny-dpo_qlora")
    assert manifest["learner"]["name"] == "dpo_qlora"
    assert manifest["reference"] == "base model with adapter disabled"
    assert manifest["parent_adapter"] is None
    assert manifest["data_format"].startswith("preference (text) wrapped as conversations")
    assert manifest["data"]["total"] == PAIRS and manifest["data"]["pairs_trained"] == PAIRS
    assert manifest["loss_type"] == ["sigmoid"] and manifest["beta"] == 0.1
    assert manifest["lora"]["target_modules"] == "all-linear"
    margins = [entry["rewards/margins"] for entry in manifest["reward_history"]]
    assert len(margins) == 12 and all(math.isfinite(m) for m in margins)
    metrics = manifest["metrics"]
    # a fresh LoRA adapter (B = 0) is the base exactly: step 1 has zero margin and loss ln 2
    assert metrics["first_reward_margins"] == margins[0] == 0.0
    assert metrics["first_loss"] == pytest.approx(LN2, abs=1e-6)
    assert metrics["final_reward_margins"] == margins[-1]
    assert mean(margins[-3:]) > margins[0] + 0.1, margins
    assert mean([e["loss"] for e in manifest["loss_history"][-3:]]) < LN2 - 0.05
    entry = registry_entries(workdir)["tiny-dpo_qlora"]
    assert entry["backend"] == "playpen_qlora"
    assert entry["model_config"]["peft_model"] == str((workdir / "models" / "tiny-dpo_qlora").resolve())
    assert "first_reward_margins" in result.out and "final_reward_margins" in result.out


def _completion_logps(model, batch):
    """Summed log-probs of the completion tokens (plain forward, full logits)."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    labels = batch["input_ids"][:, 1:]
    mask = batch["completion_mask"][:, 1:].float()
    token_logps = torch.log_softmax(logits, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return (token_logps * mask).sum(dim=1)


def _dpo_loss(policy, reference, beta):
    import torch.nn.functional as F

    chosen, rejected = (policy - reference).chunk(2)
    return (-F.logsigmoid(beta * (chosen - rejected))).mean().item()


def test_dpo_held_out_loss_starts_at_ln2(playpen, workdir, dpo_file):
    """Before training the policy is its reference, so the held-out DPO loss is ln 2 exactly."""
    result = playpen("learn", "-l", "dpo_qlora", "-m", "tiny", "--dataset", dpo_file, "--max_steps", "4",
                     "--eval_fraction", "0.25", "--eval_steps", "2", *FAST)
    assert result.code == 0, result
    manifest = read_manifest(workdir, "tiny-dpo_qlora")
    assert manifest["data"]["held_out"]["total"] == PAIRS // 4 and manifest["data"]["pairs_trained"] == PAIRS * 3 // 4
    assert manifest["metrics"]["first_eval_loss"] == pytest.approx(LN2, abs=1e-4)
    assert [entry["step"] for entry in manifest["eval_loss_history"]] == [2, 4]
    assert manifest["metrics"]["final_eval_loss"] == manifest["eval_loss_history"][-1]["eval_loss"]
    # training_curves.png: loss (train and held-out) and DPO's reward accuracy and margin, as for SFT and GRPO
    assert manifest["curves"] == "training_curves.png"
    assert (workdir / "models" / "tiny-dpo_qlora" / "training_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_dpo_continues_the_sft_adapter_against_the_sft_policy(playpen, workdir, dpo_file, sft_file, monkeypatch):
    import torch
    from safetensors.torch import load_file
    from trl import DPOTrainer
    from trl.trainer.utils import use_adapter

    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", sft_file, "--max_steps", "8",
                     "--learning_rate", "2e-2", "--max_length", "128", "--per_device_train_batch_size", "4",
                     "--gradient_accumulation_steps", "1", "--logging_steps", "1", "--save_steps", "100")
    assert result.code == 0, result
    sft_dir = workdir / "models" / "tiny-sft_qlora"
    sft_weights = load_file(str(sft_dir / "adapter_model.safetensors"))

    seen = {}
    original_train = DPOTrainer.train

    def observed_train(self, *args, **kwargs):
        """Inspect the trainer exactly as the CLI built it, train, and inspect the result."""
        model = self.model
        params = dict(model.named_parameters())
        seen["trainable"] = {n: p.detach().clone() for n, p in params.items() if p.requires_grad}
        seen["ref"] = {n: p.detach().clone() for n, p in params.items() if ".ref." in n}
        seen["ref_trainable"] = [n for n in seen["ref"] if params[n].requires_grad]
        batch = self.data_collator([self.train_dataset[i] for i in range(len(self.train_dataset))])
        with torch.no_grad():
            policy = _completion_logps(model, batch)
            with use_adapter(model, "ref"):  # how TRL computes the reference for a continued adapter
                reference = _completion_logps(model, batch)
            with model.disable_adapter():
                base = _completion_logps(model, batch)
        seen["loss_vs_ref"] = _dpo_loss(policy, reference, self.beta)
        seen["loss_vs_base"] = _dpo_loss(policy, base, self.beta)
        seen["max_ref_gap"] = (policy - reference).abs().max().item()
        seen["max_base_gap"] = (policy - base).abs().max().item()
        output = original_train(self, *args, **kwargs)
        params = dict(model.named_parameters())
        seen["ref_moved"] = max((params[n] - t).abs().max().item() for n, t in seen["ref"].items())
        seen["policy_moved"] = max((params[n] - t).abs().max().item() for n, t in seen["trainable"].items())
        seen["final_weights"] = {n: params[n].detach().clone() for n in seen["trainable"]}
        model.eval()
        with torch.no_grad():
            seen["probe"] = batch["input_ids"][:2]
            seen["final_logits"] = model(input_ids=seen["probe"]).logits.float()
        return output

    monkeypatch.setattr(DPOTrainer, "train", observed_train)
    result = playpen("learn", "-l", "dpo_qlora", "-m", "tiny-sft_qlora", "--dataset", dpo_file, "--max_steps", "4",
                     "--learning_rate", "2e-2", *FAST)
    assert result.code == 0, result

    # (a) DPO starts from the SFT adapter: the trainable weights are exactly the saved SFT tensors
    names = {n.replace(".default.", "."): n for n in seen["trainable"]}
    assert set(names) == set(sft_weights) and len(sft_weights) == 28  # 14 layers x (lora_A, lora_B)
    for key, tensor in sft_weights.items():
        assert torch.equal(seen["trainable"][names[key]], tensor.to(seen["trainable"][names[key]].dtype)), key
    assert any(t.abs().max() > 0 for k, t in sft_weights.items() if "lora_B" in k)  # SFT moved away from init
    # the reference is a frozen copy of the SFT adapter: not trainable, unchanged by DPO, while the policy moved
    assert len(seen["ref"]) == 28 and seen["ref_trainable"] == []
    assert seen["ref_moved"] == 0.0 and seen["policy_moved"] > 1e-3

    # (b) at step 0 policy == reference: loss ln 2; with the bare base as reference it would not be
    assert seen["max_ref_gap"] < 0.05  # bf16 policy adapter vs fp32 copy, summed over a completion
    assert seen["loss_vs_ref"] == pytest.approx(LN2, abs=1e-3)
    assert seen["max_base_gap"] > 1.0 and abs(seen["loss_vs_base"] - LN2) > 0.02, seen["loss_vs_base"]
    manifest = read_manifest(workdir, "tiny-sft_qlora-dpo_qlora")
    assert manifest["loss_history"][0]["step"] == 1
    assert manifest["metrics"]["first_loss"] == pytest.approx(LN2, abs=1e-3)
    assert abs(manifest["metrics"]["first_reward_margins"]) < 1e-3

    # (c) the manifest records the parent and the reference; the quantization is the parent's
    assert manifest["parent_adapter"] == str(sft_dir.resolve())
    assert manifest["reference"].startswith("frozen copy of the parent adapter") and str(sft_dir.resolve()) in \
        manifest["reference"]
    sft_manifest = json.loads((sft_dir / "playpen_run.json").read_text())
    assert manifest["quantization"] == sft_manifest["quantization"]
    assert manifest["base_model"]["model_name"] == "tiny-sft_qlora"
    entry = registry_entries(workdir)["tiny-sft_qlora-dpo_qlora"]
    assert entry["huggingface_id"] == registry_entries(workdir)["tiny"]["huggingface_id"]

    # (d) the saved adapter alone on the base is the trained DPO policy (as the playpen_qlora backend loads it)
    from clemcore.backends import ModelRegistry

    from playpen_tune.backend import load_tuned_model

    registry = ModelRegistry.from_packaged_and_cwd_files()
    logits = {}
    for name in ("tiny-sft_qlora-dpo_qlora", "tiny-sft_qlora"):
        model = load_tuned_model(registry.get_first_model_spec_that_unify_with(name))
        assert list(model.peft_config) == ["default"]
        with torch.no_grad():
            logits[name] = model(input_ids=seen["probe"]).logits.float()
    reload_gap = (logits["tiny-sft_qlora-dpo_qlora"] - seen["final_logits"]).abs().max().item()
    sft_gap = (logits["tiny-sft_qlora"] - seen["final_logits"]).abs().max().item()
    # same weights bit for bit; logits differ only by the adapter's compute dtype (bf16 in training, fp32 reloaded)
    assert reload_gap < 0.05 and sft_gap > 20 * reload_gap, (reload_gap, sft_gap)
    saved = load_file(str(workdir / "models" / "tiny-sft_qlora-dpo_qlora" / "adapter_model.safetensors"))
    assert set(saved) == set(sft_weights)
    for key, tensor in saved.items():
        assert torch.equal(seen["final_weights"][names[key]], tensor.to(seen["final_weights"][names[key]].dtype)), key


def test_max_prompt_length_keeps_the_end_of_the_prompt(workdir, dpo_file):
    from playpen import config as cfg
    from playpen.learners import LearnRequest
    from playpen.models import find_model
    from playpen_tune.learners.dpo import DPOQLoRALearner

    config = cfg.build_config(DPOQLoRALearner.config_class, {}, cfg.parse_overrides(
        DPOQLoRALearner.config_class, ["--dataset", str(dpo_file), "--max_prompt_length", "12",
                                       "--max_length", "48", "--max_steps", "1"]))
    request = LearnRequest(model=find_model("tiny").to_dict(), config=config, output_dir=workdir / "out", name="x",
                           learner="dpo_qlora")
    run = DPOQLoRALearner().prepare(request)
    trainer, tokenizer = run.trainer, run.tokenizer
    header = tokenizer("<|start_header_id|>assistant<|end_header_id|>\n\n", add_special_tokens=False)["input_ids"]
    prompts = trainer.train_dataset["prompt_ids"]
    assert len(prompts) == PAIRS and all(len(p) == 12 for p in prompts)
    assert all(p[-len(header):] == header for p in prompts)  # the end (assistant header) is kept
    assert run.record.data["prompts_truncated"] == PAIRS
    assert run.record.extra["prompt_truncation"] == "keep the last 12 tokens of the templated prompt"


def assert_user_error(result, *fragments):
    assert result.code == 2, result
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in result.err, result.err


def test_missing_file_is_a_user_error(playpen, workdir):
    result = playpen("learn", "-l", "dpo_qlora", "-m", "tiny", "--dataset", "./nope.json")
    assert_user_error(result, "nope.json: no such file")
    assert not (workdir / "models").exists()


def test_rows_without_rejected_are_a_user_error(playpen, workdir):
    (workdir / "pairs.json").write_text(json.dumps([{"prompt": "p", "chosen": "a"}]))
    result = playpen("learn", "-l", "dpo_qlora", "-m", "tiny", "--dataset", "pairs.json")
    assert_user_error(result, "row 0 (0-based) has columns ['chosen', 'prompt']", "'rejected'")
    assert not (workdir / "models").exists()


def test_results_without_pairs_are_a_user_error(playpen, workdir, relay_results):
    result = playpen("learn", "-l", "dpo_qlora", "-m", "tiny", "--dataset", relay_results)
    assert_user_error(result, "0 preference pairs", "single episode")
    assert not (workdir / "models").exists()


def test_unknown_field_is_a_user_error(playpen, workdir):
    result = playpen("learn", "-l", "dpo_qlora", "-m", "tiny", "--dataset", "x.json", "--betta", "0.2")
    assert_user_error(result, "unknown config field 'betta'", "did you mean 'beta'")
    assert not (workdir / "models").exists()


@pytest.mark.parametrize("option, message", [
    (["--loss_type", "sigmoidd"], "--loss_type: unknown sigmoidd"),
    (["--loss_type", "exo_pair"], "label_smoothing"),
    (["--max_prompt_length", "200"], "--max_prompt_length must be > 0 and smaller than --max_length (96)"),
])
def test_bad_dpo_options_are_user_errors(playpen, workdir, dpo_file, option, message):
    result = playpen("learn", "-l", "dpo_qlora", "-m", "tiny", "--dataset", dpo_file, *FAST, *option)
    assert_user_error(result, message)
    assert not (workdir / "models").exists()


def test_prompts_longer_than_max_length_are_a_user_error(playpen, workdir, dpo_file):
    result = playpen("learn", "-l", "dpo_qlora", "-m", "tiny", "--dataset", dpo_file, "--max_length", "8")
    assert_user_error(result, f"all {PAIRS} preference pairs have prompts of --max_length 8 tokens or more",
                      "--max_prompt_length")
    assert not (workdir / "models").exists()


def test_loss_type_list_and_text_wrapping():
    import datasets

    from playpen_tune.learners.dpo import as_conversations, parse_loss_type
    from playpen_tune.tiny import build_tokenizer

    assert parse_loss_type("sigmoid") == ["sigmoid"]
    assert parse_loss_type("sigmoid, sft") == ["sigmoid", "sft"]
    rows = datasets.Dataset.from_list([{"prompt": "Say YES.", "chosen": "YES", "rejected": "YES, sure."}])
    model = {"model_name": "m", "model_config": {"chat_template_kwargs": {"enable_thinking": False}}}
    wrapped, described = as_conversations(rows, "preference (text)", build_tokenizer(), model)
    assert wrapped[0]["prompt"] == [{"role": "user", "content": "Say YES."}]
    assert wrapped[0]["chosen"] == [{"role": "assistant", "content": "YES"}]
    assert wrapped[0]["rejected"] == [{"role": "assistant", "content": "YES, sure."}]
    assert wrapped[0]["chat_template_kwargs"] == {"enable_thinking": False}
    assert "wrapped as conversations" in described and "enable_thinking" in described
