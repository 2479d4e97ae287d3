"""sft_qlora end to end on tiny offline models: files, transcripts, masking, legacy YAML, errors."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import snapshot

LINEAR4BIT = "bitsandbytes.nn.modules.Linear4bit"
FAST = ["--max_length", "192", "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1",
        "--logging_steps", "1", "--learning_rate", "1e-2", "--save_steps", "10"]


@pytest.fixture
def sft_file(workdir, evaluation_files) -> Path:
    rows = json.loads(evaluation_files["sft"].read_text())[:48]
    path = workdir / "sft.json"
    path.write_text(json.dumps(rows))
    return path


def mean(values):
    return sum(values) / len(values)


def assert_trained(workdir: Path, name: str, base: str) -> dict:
    out = workdir / "models" / name
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    assert (out / "tokenizer_config.json").is_file()
    manifest = json.loads((out / "playpen_run.json").read_text())
    losses = [entry["loss"] for entry in manifest["loss_history"]]
    assert all(math.isfinite(loss) for loss in losses)
    assert mean(losses[-3:]) < mean(losses[:3]) - 0.1, losses  # loss went down
    assert manifest["quantized_modules"][LINEAR4BIT] == 14  # 2 layers x (q,k,v,o,gate,up,down)
    assert manifest["learner"]["name"] == "sft_qlora"
    assert manifest["base_model"]["model_name"] == base
    assert manifest["quantization"]["load_in_4bit"] is True
    assert manifest["quantization"]["bnb_4bit_quant_type"] == "nf4"
    assert manifest["quantization"]["bnb_4bit_use_double_quant"] is True
    assert manifest["quantization"]["bnb_4bit_compute_dtype"] == "float32"  # CPU
    assert manifest["lora"]["r"] == 16 and manifest["lora"]["target_modules"] == "all-linear"
    assert len(manifest["data"]["fingerprint"]) == 64
    assert manifest["versions"]["trl"] and manifest["versions"]["bitsandbytes"]
    assert manifest["command_line"][:3] == ["playpen", "learn", "-l"]
    assert manifest["metrics"]["global_step"] == 20 and manifest["metrics"]["wall_time_s"] > 0
    return manifest


PROBE = [{"role": "user", "content": "List three words that start with the letter A."}]


def load_directly(base: str, quantization: dict, adapter: Path | None, device):
    """The base in 4 bit (transformers + bitsandbytes), with the adapter on top (peft) unless None."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from playpen_tune.quantization import resolve_compute_dtype

    dtype = getattr(torch, resolve_compute_dtype(quantization["bnb_4bit_compute_dtype"]))  # "auto": by device
    prequantized = "quantization_config" in json.loads((Path(base) / "config.json").read_text())
    settings = {} if prequantized else {"quantization_config": BitsAndBytesConfig(
        **dict(quantization, bnb_4bit_compute_dtype=dtype))}  # a pre-quantized checkpoint brings its own
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype, device_map={"": str(device)}, **settings)
    return (PeftModel.from_pretrained(model, str(adapter)) if adapter else model).eval()


def assert_backend_plays_the_adapter(name: str) -> str:
    """Through the playpen_qlora clemcore backend, the registered model ``name`` computes what its
    adapter loaded directly on the 4-bit base computes (same logits, same greedy answer), and not
    what the bare base computes. Returns the backend's answer."""
    import torch
    from clemcore.backends import ModelRegistry
    from transformers import AutoTokenizer

    from playpen_tune.backend import QLoRABackend

    spec = ModelRegistry.from_packaged_and_cwd_files().get_first_model_spec_that_unify_with(name)
    model = QLoRABackend().get_model_for(spec)
    model.set_gen_args(temperature=0.0, max_tokens=5)
    assert type(model.model.base_model.model.model.layers[0].self_attn.q_proj.base_layer).__name__ == "Linear4bit"
    assert "default" in model.model.peft_config
    _, _, text = model.generate_response(PROBE)

    adapter, quantization = Path(spec.model_config["peft_model"]), spec.model_config["quantization"]
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    probe = tokenizer.apply_chat_template(PROBE, add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True).to(model.model.device)
    direct = load_directly(spec.huggingface_id, quantization, adapter, model.model.device)
    bare = load_directly(spec.huggingface_id, quantization, None, model.model.device)
    with torch.no_grad():
        logits = {label: m(**probe).logits for label, m in (("backend", model.model), ("direct", direct),
                                                              ("bare", bare))}
        greedy = direct.generate(**probe, do_sample=False, max_new_tokens=5)[0, probe["input_ids"].shape[1]:]
    assert torch.allclose(logits["backend"], logits["direct"], rtol=0, atol=1e-5)
    assert (logits["bare"] - logits["direct"]).abs().max() > 1e-3  # the adapter changes what the model says
    eot = tokenizer.eos_token
    assert text == tokenizer.decode(greedy).split(eot)[0].strip()  # clemcore culls from eos_to_cull on
    return text


@pytest.mark.parametrize("base", ["tiny", "tiny-bnb-4bit"])
def test_sft_on_clembench_evaluation_file(playpen, workdir, sft_file, base):
    result = playpen("learn", "-l", "sft_qlora", "-m", base, "--dataset", sft_file, "--max_steps", "20", *FAST)
    assert result.code == 0, result
    manifest = assert_trained(workdir, f"{base}-sft_qlora", base)
    assert manifest["quantization"]["prequantized"] is (base == "tiny-bnb-4bit")
    assert manifest["data"]["sources"][0]["examples"] == 48
    assert manifest["loss_masking"] == "assistant_only"
    entry = {e["model_name"]: e for e in json.loads((workdir / "model_registry.json").read_text())}[f"{base}-sft_qlora"]
    assert entry["backend"] == "playpen_qlora"
    assert entry["model_config"]["peft_model"] == str((workdir / "models" / f"{base}-sft_qlora").resolve())
    assert_backend_plays_the_adapter(f"{base}-sft_qlora")


def test_sft_on_transcripts_dir(playpen, workdir, relay_results):
    from tests.fixture_data import relay_instances

    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", relay_results, "--max_steps", "20",
                     "--roles", "Describer", *FAST, "--max_length", "1024")
    assert result.code == 0, result
    manifest = assert_trained(workdir, "tiny-sft_qlora", "tiny")
    source = manifest["data"]["sources"][0]
    assert source["kind"] == "transcripts"
    instances = relay_instances()  # the scripted guesser picks the first candidate with the target's letter
    won = sum(next(c for c in i["candidates"] if c[0] == i["target"][0]) == i["target"] for i in instances)
    assert source["examples"] == won  # successful episodes, one describer conversation each
    assert source["dropped"]["roles"] == len(instances) and source["dropped"]["outcomes"] == len(instances) - won
    assert manifest["examples_trained"] == won


def test_held_out_loss_is_measured_before_during_and_after_training(playpen, workdir, sft_file):
    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", sft_file, "--max_steps", "20", *FAST,
                     "--eval_fraction", "0.25", "--eval_steps", "10")
    assert result.code == 0, result
    manifest = assert_trained(workdir, "tiny-sft_qlora", "tiny")
    assert manifest["data"]["held_out"] == {"held_out_fraction": 0.25, "total": 12, "seed": 42,
                                            "drawn_from": manifest["data"]["fingerprint"]}
    assert manifest["examples_trained"] == 36  # the 12 held-out examples are never trained on
    assert "held-out: 12 of the 48 examples (--eval_fraction 0.25, --seed 42)" in result.out
    history = manifest["eval_loss_history"]
    assert [entry["step"] for entry in history] == [10, 20]  # every --eval_steps; the last one is the final
    metrics = manifest["metrics"]
    assert metrics["final_eval_loss"] == history[-1]["eval_loss"]
    best = min(history, key=lambda entry: entry["eval_loss"])
    assert (metrics["best_eval_loss"], metrics["best_eval_step"]) == (best["eval_loss"], best["step"])
    assert f"held-out loss: {metrics['first_eval_loss']:.4f} before training" in result.out
    hint = f"models/tiny-sft_qlora/checkpoint-{best['step']} holds the lowest; to play it: playpen register"
    assert (hint in result.out) == (best["step"] != 20)  # checkpoints every 10 steps (FAST)
    assert metrics["final_eval_loss"] < metrics["first_eval_loss"] - 0.1  # held-out loss went down too


def test_held_out_dataset_is_loaded_like_the_training_data(playpen, workdir, sft_file, evaluation_files):
    rows = json.loads(evaluation_files["sft"].read_text())[48:60]
    (workdir / "heldout.json").write_text(json.dumps(rows))
    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", sft_file, "--max_steps", "3", *FAST,
                     "--eval_dataset", "heldout.json")
    assert result.code == 0, result
    manifest = json.loads((workdir / "models" / "tiny-sft_qlora" / "playpen_run.json").read_text())
    held_out = manifest["data"]["held_out"]
    assert held_out["total"] == 12 and held_out["sources"][0]["source"] == "heldout.json"
    assert len(held_out["fingerprint"]) == 64 and held_out["fingerprint"] != manifest["data"]["fingerprint"]
    assert manifest["examples_trained"] == 48
    assert "held-out data: 12 examples" in result.out
    assert [entry["step"] for entry in manifest["eval_loss_history"]] == [3]  # measured once more at the end
    assert math.isfinite(manifest["metrics"]["first_eval_loss"])


def test_truncating_away_every_answer_is_a_user_error(playpen, workdir, relay_results):
    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", relay_results, "--max_length", "32")
    assert result.code == 2 and "raise --max_length" in result.err
    assert not (workdir / "models").exists()


def test_user_turns_are_masked(workdir, sft_file):
    """The batches the learner trains on carry label -100 on every non-assistant token."""
    from playpen.config import build_config
    from playpen.learners import LearnRequest
    from playpen.models import find_model
    from playpen_tune.config import SFTQLoRAConfig
    from playpen_tune.learners.sft import SFTQLoRALearner

    rows = [{"messages": [{"role": "user", "content": "Say the word: apple."},
                          {"role": "assistant", "content": "ANSWER: apple"},
                          {"role": "user", "content": "Say the word: pear."},
                          {"role": "assistant", "content": "ANSWER: pear"}]}] * 4
    data = workdir / "multi.json"
    data.write_text(json.dumps(rows))
    config = build_config(SFTQLoRAConfig, {}, {"dataset": [str(data)], "max_steps": "1"})
    request = LearnRequest(model=find_model("tiny").to_dict(), config=config, output_dir=workdir / "out", name="t",
                           learner="sft_qlora")
    run = SFTQLoRALearner().prepare(request)
    batch = next(iter(run.trainer.get_train_dataloader()))
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    tokenizer = run.tokenizer
    trained = tokenizer.decode([i for i, label in zip(ids, labels, strict=True) if label != -100])
    masked = tokenizer.decode([i for i, label in zip(ids, labels, strict=True) if label == -100])
    assert trained == "ANSWER: apple<|eot_id|>ANSWER: pear<|eot_id|>"
    assert "Say the word: apple." in masked and "Say the word: pear." in masked
    assert "ANSWER" not in masked


LEGACY_YAML = """\
tuning:
  type: sft
base_model:
  name: unsloth/Meta-Llama-3.1-8B-Instruct
sft_dataset:
  name: {dataset}
sft_model:
  name: not_used
preference_dataset:
  name: not_used
max_seq_length:
  length: 192
low_rank_matrice:
  size: 8
influence:
  rate: 32
dropout:
  rate: 0.1
training:
  learning_rate: 1e-2
  batch_size: 4
  grad_acc_steps: 1
  max_training_steps: 20
  warmup_steps: 2
  beta: 0.1
"""


def test_legacy_yaml_config(playpen, workdir, sft_file):
    config = workdir / "legacy.yaml"
    config.write_text(LEGACY_YAML.format(dataset=sft_file))
    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "-c", config, "--logging_steps", "1")
    assert result.code == 0, result
    assert "legacy low_rank_matrice.size -> lora_r" in result.out
    assert "legacy base_model.name (unsloth/Meta-Llama-3.1-8B-Instruct) is not used" in result.out
    manifest = json.loads((workdir / "models" / "tiny-sft_qlora" / "playpen_run.json").read_text())
    assert manifest["lora"]["r"] == 8 and manifest["lora"]["lora_alpha"] == 32
    assert manifest["lora"]["lora_dropout"] == 0.1  # the old script truncated this to 0
    assert manifest["config"]["max_length"] == 192 and manifest["config"]["warmup_steps"] == 2
    assert manifest["metrics"]["global_step"] == 20


def test_legacy_yaml_contradiction(playpen, workdir, sft_file):
    config = workdir / "legacy.yaml"
    config.write_text(LEGACY_YAML.format(dataset=sft_file).replace("type: sft", "type: dpo"))
    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "-c", config)
    assert result.code == 2 and "tuning.type: dpo" in result.err


@pytest.mark.parametrize("make_args, message", [
    (lambda d, r: ["--dataset", d / "sft.json", "--lora_rank", "8"],
     "unknown config field 'lora_rank' on the command line; did you mean 'lora_r'"),
    (lambda d, r: ["--dataset", d / "sft.json", "--lora_r", "eight"], "--lora_r expects a int value"),
    (lambda d, r: ["--dataset", d / "missing.json"], "missing.json"),
    (lambda d, r: ["--dataset", d / "bad.jsonl"], "bad.jsonl:2"),
    (lambda d, r: ["--dataset", r, "--games", "wordle"], "--games wordle dropped all"),
])
def test_user_errors_exit_2_and_write_nothing(playpen, workdir, sft_file, relay_results, make_args, message):
    (workdir / "bad.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": [\n')
    before = snapshot(workdir)
    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--max_steps", "2", *make_args(workdir, relay_results))
    assert result.code == 2, result
    assert message in result.err and "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert snapshot(workdir) == before  # no adapter, no registry change, no output dir


def test_divergence_stops_keeps_good_checkpoints_and_writes_no_adapter(playpen, workdir, sft_file):
    # linear warm-up: the first optimizer step runs at learning rate 0, the next ones at 1e25 / 4 and up
    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", sft_file, "--max_steps", "30",
                     *FAST, "--learning_rate", "1e25", "--save_steps", "1", "--warmup_steps", "4")
    assert result.code == 2, result
    message = re.search(r"became NaN/inf at step (\d+); the last good checkpoint is (\S+); no adapter was written",
                        result.err)
    assert message, result.err
    bad_step, named = int(message[1]), Path(message[2])
    out = workdir / "models" / "tiny-sft_qlora"
    assert not (out / "adapter_model.safetensors").exists() and not (out / "playpen_run.json").exists()
    assert "tiny-sft_qlora" not in (workdir / "model_registry.json").read_text()
    steps = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert steps and all(step < bad_step for step in steps), (steps, bad_step)  # none of the bad step or later
    assert named.name == f"checkpoint-{steps[-1]}"  # the one named is the highest kept
    from safetensors.torch import load_file

    for step in steps:  # every checkpoint kept is finite
        tensors = load_file(str(out / f"checkpoint-{step}" / "adapter_model.safetensors"))
        assert all(t.isfinite().all() for t in tensors.values()), step


def test_seed_fixes_the_initial_adapter(workdir, sft_file):
    """Two runs with the same --seed start from the same LoRA weights; another seed does not."""
    from playpen.config import build_config
    from playpen.learners import LearnRequest
    from playpen.models import find_model
    from playpen_tune.config import SFTQLoRAConfig
    from playpen_tune.learners.sft import SFTQLoRALearner

    def initial_adapter(seed: str, name: str) -> dict:
        config = build_config(SFTQLoRAConfig, {}, {"dataset": [str(sft_file)], "max_steps": "1", "seed": seed})
        request = LearnRequest(model=find_model("tiny").to_dict(), config=config, output_dir=workdir / name, name=name,
                               learner="sft_qlora")
        model = SFTQLoRALearner().prepare(request).trainer.model
        return {k: v.detach().clone() for k, v in model.named_parameters() if "lora_A" in k}

    first, again, other = initial_adapter("7", "a"), initial_adapter("7", "b"), initial_adapter("8", "c")
    assert first.keys() == again.keys() and all((first[k] == again[k]).all() for k in first)
    assert any(not (first[k] == other[k]).all() for k in first)


def test_padding_free_without_packing_is_a_user_error(playpen, workdir, sft_file):
    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", sft_file, "--padding_free")
    assert result.code == 2 and "pass --packing true as well" in result.err


def test_register_command_writes_the_same_entry_as_after_learn(playpen, workdir, sft_file):
    assert playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", sft_file, "--max_steps", "2", *FAST).code == 0
    adapter = workdir / "models" / "tiny-sft_qlora"
    result = playpen("register", "again", "--base", "tiny", "--adapter", adapter)
    assert result.code == 0, result
    entries = {e["model_name"]: e for e in json.loads((workdir / "model_registry.json").read_text())}
    assert entries["again"] == dict(entries["tiny-sft_qlora"], model_name="again")
    assert playpen("register", "again", "--base", "tiny", "--adapter", adapter).code == 0  # idempotent
    assert [e["model_name"] for e in json.loads((workdir / "model_registry.json").read_text())].count("again") == 1


def test_a_checkpoint_registers_with_the_quantization_it_was_trained_with(playpen, workdir, sft_file):
    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", sft_file, "--max_steps", "4", *FAST,
                     "--save_steps", "2", "--bnb_4bit_quant_type", "fp4")
    assert result.code == 0, result
    run = workdir / "models" / "tiny-sft_qlora"
    trained = json.loads((run / "playpen_run.json").read_text())["quantization"]
    checkpoint = json.loads((run / "checkpoint-2" / "playpen_run.json").read_text())
    assert checkpoint["checkpoint"] == {"step": 2, "run_dir": str(run)} and checkpoint["quantization"] == trained
    assert playpen("register", "tiny-step2", "--base", "tiny", "--adapter", run / "checkpoint-2").code == 0
    entries = {e["model_name"]: e for e in json.loads((workdir / "model_registry.json").read_text())}
    expected = {k: v for k, v in trained.items() if k != "prequantized"}
    assert entries["tiny-step2"]["model_config"]["quantization"] == expected
    assert expected["bnb_4bit_quant_type"] == "fp4" and expected["bnb_4bit_compute_dtype"] == "float32"
    assert_backend_plays_the_adapter("tiny-step2")  # with fp4, as trained (nf4 gives other logits)


def test_registering_an_adapter_without_manifest_says_what_it_assumes(playpen, workdir, sft_file):
    assert playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", sft_file, "--max_steps", "2", *FAST).code == 0
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    for file in (workdir / "models" / "tiny-sft_qlora").glob("*"):
        if file.is_file() and file.name != "playpen_run.json":
            (elsewhere / file.name).write_bytes(file.read_bytes())
    result = playpen("register", "foreign", "--base", "tiny", "--adapter", elsewhere)
    assert result.code == 0, result
    assert "has no playpen_run.json" in result.out and "'bnb_4bit_quant_type': 'nf4'" in result.out
    entry = {e["model_name"]: e for e in json.loads((workdir / "model_registry.json").read_text())}["foreign"]
    assumed = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
               "bnb_4bit_compute_dtype": "auto"}  # the learner's defaults; "auto" resolves on the device
    assert entry["model_config"]["quantization"] == assumed
    assert all(f"{key!r}: {value!r}" in result.out for key, value in assumed.items())
    assert_backend_plays_the_adapter("foreign")


def test_overwrite_moves_the_earlier_run_aside(playpen, workdir, sft_file):
    args = ["learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", sft_file, "--max_steps", "2", *FAST,
            "--save_steps", "1"]
    assert playpen(*args).code == 0
    out = workdir / "models" / "tiny-sft_qlora"
    first = (out / "adapter_model.safetensors").read_bytes()
    assert playpen(*args, "--overwrite", "--learning_rate", "5e-3").code == 0
    archived = list(out.glob("previous-*"))
    assert len(archived) == 1
    assert (archived[0] / "adapter_model.safetensors").read_bytes() == first  # nothing lost
    assert sorted(p.name for p in archived[0].glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert json.loads((out / "playpen_run.json").read_text())["config"]["learning_rate"] == 5e-3


def test_resume_refuses_other_settings_but_accepts_more_steps(playpen, workdir, sft_file):
    args = ["learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", sft_file, *FAST, "--save_steps", "2"]
    assert playpen(*args, "--max_steps", "2").code == 0
    other = playpen(*args, "--max_steps", "4", "--resume", "--lora_r", "8")
    assert other.code == 2 and "holds a run with a different lora_r" in other.err
    more = playpen(*args, "--max_steps", "4", "--resume")
    assert more.code == 0, more
    manifest = json.loads((workdir / "models" / "tiny-sft_qlora" / "playpen_run.json").read_text())
    assert manifest["metrics"]["global_step"] == 4 and manifest["resumed_from"].endswith("checkpoint-2")


def test_resume_of_a_run_an_earlier_version_started_names_the_new_settings(playpen, workdir, sft_file):
    """A run whose identity lacks fields added since (an upgrade mid-run) resumes, saying which ones are new."""
    args = ["learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", sft_file, *FAST, "--save_steps", "2"]
    assert playpen(*args, "--max_steps", "2").code == 0
    identity_file = workdir / "models" / "tiny-sft_qlora" / "playpen_run_identity.json"
    identity = json.loads(identity_file.read_text())
    del identity["config"]["group_by_length"], identity["config"]["include_static_games"]
    identity_file.write_text(json.dumps(identity))
    more = playpen(*args, "--max_steps", "4", "--resume")
    assert more.code == 0, more
    assert "had no group_by_length (now True), include_static_games (now False)" in more.out
    assert json.loads(identity_file.read_text())["config"]["group_by_length"] is True  # recorded from now on
    other = playpen(*args, "--max_steps", "6", "--resume", "--lora_r", "8")
    assert other.code == 2 and "holds a run with a different lora_r" in other.err


def test_registry_chat_template_kwargs_reach_training(workdir, sft_file):
    """The entry's chat_template_kwargs render the training rows, as clemcore renders prompts."""
    from playpen.config import build_config
    from playpen.learners import LearnRequest
    from playpen.models import find_model
    from playpen_tune.config import SFTQLoRAConfig
    from playpen_tune.learners.sft import SFTQLoRALearner

    tokenizer_dir = workdir / "templated"
    model = find_model("tiny").to_dict()
    import shutil

    shutil.copytree(model["huggingface_id"], tokenizer_dir)
    template = (tokenizer_dir / "chat_template.jinja").read_text()
    (tokenizer_dir / "chat_template.jinja").write_text("{% if shout %}LOUD {% endif %}" + template)
    model = dict(model, huggingface_id=str(tokenizer_dir),
                 model_config=dict(model["model_config"], chat_template_kwargs={"shout": True}))
    config = build_config(SFTQLoRAConfig, {}, {"dataset": [str(sft_file)], "max_steps": "1", "max_length": "64"})
    run = SFTQLoRALearner().prepare(LearnRequest(model=model, config=config, output_dir=workdir / "o", name="t",
                                                 learner="sft_qlora"))
    first = run.tokenizer.decode(run.trainer.train_dataset[0]["input_ids"])
    assert first.startswith("LOUD ")


@pytest.mark.slow
def test_two_processes_save_and_register_once(workdir, sft_file):
    """torchrun with 2 CPU processes (gloo DDP): the main process alone saves, writes the manifest and
    registers; --overwrite moves the earlier run aside once, not once per process."""
    command = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node", "2",
               "-m", "playpen", "learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", str(sft_file),
               "--max_steps", "6", *FAST]
    env = dict(os.environ, ACCELERATE_USE_CPU="1")  # transformers runs DDP on CPU only when told to
    for extra in ([], ["--overwrite"]):
        run = subprocess.run(command + extra, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        assert run.stdout.count("done: ") == 2 and run.stdout.count("model registry: ") == 1, run.stdout
    out = workdir / "models" / "tiny-sft_qlora"
    manifest = json.loads((out / "playpen_run.json").read_text())
    assert manifest["processes"] == 2 and manifest["metrics"]["global_step"] == 6
    [previous] = out.glob("previous-*")
    assert (previous / "playpen_run.json").is_file() and (previous / "adapter_model.safetensors").is_file()
    assert not list(previous.glob("previous-*"))
    names = [entry["model_name"] for entry in json.loads((workdir / "model_registry.json").read_text())]
    assert names.count("tiny-sft_qlora") == 1
