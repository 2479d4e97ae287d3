"""``playpen export``: a tuned model (SFT, then DPO on top, on a 4-bit base) merged into a standard model
directory; logits, clemcore episodes and ``--lora_scale`` checked against the adapter on its base, and the
logits of the real SmolLM2-135M-Instruct (tied embeddings) with an adapter."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import snapshot

pytestmark = pytest.mark.slow  # the trained chain (about a minute to build) or the real model

TUNED = "tiny-sft_qlora-dpo_qlora"
FAST = ["--max_length", "96", "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1",
        "--logging_steps", "1", "--save_steps", "100", "--max_steps", "3", "--learning_rate", "2e-2"]
TEXT = "You are playing a game. Say the word: apple"


@pytest.fixture(scope="module")
def chain_dir(tmp_path_factory, tiny_model_dir, evaluation_files) -> Iterator[Path]:
    """A working directory with 'tiny' and the chain sft_qlora -> dpo_qlora trained on it (3 steps each, a
    large learning rate so that the adapter moves the logits), merged once in float32 into ``merged/``."""
    from playpen.cli import main
    from playpen_tune.tiny import registry_entry

    directory = tmp_path_factory.mktemp("export")
    (directory / "model_registry.json").write_text(json.dumps([registry_entry("tiny", tiny_model_dir)]))
    cwd = os.getcwd()
    try:
        os.chdir(directory)
        main(["learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", str(evaluation_files["sft"]), *FAST])
        main(["learn", "-l", "dpo_qlora", "-m", "tiny-sft_qlora", "--dataset", str(evaluation_files["dpo"]), *FAST])
        main(["export", TUNED, "--output_dir", "merged", "--dtype", "float32", "--max_shard_size", "100KB"])
    finally:
        os.chdir(cwd)
    yield directory


@pytest.fixture
def chain_copy(chain_dir, tmp_path, monkeypatch) -> Path:
    """The chain's registry in a fresh cwd (the models stay where they are, read only)."""
    import shutil

    shutil.copy(chain_dir / "model_registry.json", tmp_path / "model_registry.json")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _entries(directory: Path) -> dict:
    return {entry["model_name"]: entry for entry in json.loads((directory / "model_registry.json").read_text())}


def _tokens(directory: Path, model: str = TUNED):
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(_entries(directory)[model]["model_config"]["peft_model"])
    return torch.tensor([tokenizer(TEXT)["input_ids"]])


def _adapter_logits(directory: Path, disabled: bool = False, dequantized: bool = True, model_name: str = TUNED):
    """Logits of the tuned entry ``model_name`` as the playpen_qlora backend loads it (4-bit base + adapter, fp32
    compute); ``dequantized``: each 4-bit layer replaced by an fp32 ``Linear`` of its dequantized weight, the adapter
    still computed on top (bitsandbytes' CPU kernel computes in the dtype the weights were quantized from)."""
    import contextlib

    import torch
    from clemcore.backends import ModelSpec
    from peft.tuners.lora import LoraLayer
    from peft.utils.integrations import dequantize_bnb_weight

    from playpen_tune.backend import load_tuned_model

    model = load_tuned_model(ModelSpec.from_dict(_entries(directory)[model_name]))
    layers = [module for module in model.modules() if isinstance(module, LoraLayer)]
    assert layers and all(type(layer.get_base_layer()).__name__ == "Linear4bit" for layer in layers)
    for layer in layers if dequantized else []:
        quantized = layer.get_base_layer()
        linear = torch.nn.Linear(quantized.in_features, quantized.out_features, bias=quantized.bias is not None)
        linear.weight.data = dequantize_bnb_weight(quantized.weight).float()
        if quantized.bias is not None:
            linear.bias.data = quantized.bias.data.float()
        layer.base_layer = linear
    with torch.no_grad(), model.disable_adapter() if disabled else contextlib.nullcontext():
        return model(_tokens(directory, model_name)).logits.float()


def _merged_logits(directory: Path, model_dir: Path, model_name: str = TUNED):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto").eval()
    with torch.no_grad():
        return model(_tokens(directory, model_name)).logits.float(), model.dtype


def test_export_writes_a_standard_model_directory_registered_as_huggingface_local(chain_dir):
    merged = chain_dir / "merged"
    index = json.loads((merged / "model.safetensors.index.json").read_text())
    shards = sorted(merged.glob("model-*.safetensors"))
    assert len(shards) > 1 and set(index["weight_map"].values()) == {p.name for p in shards}
    assert not any("lora" in name for name in index["weight_map"])
    config = json.loads((merged / "config.json").read_text())
    assert config["dtype"] == "float32" and "quantization_config" not in config
    tokenizer = json.loads((merged / "tokenizer_config.json").read_text())
    assert tokenizer["eos_token"] == "<|eot_id|>" and (merged / "chat_template.jinja").is_file()
    generation = json.loads((merged / "generation_config.json").read_text())
    from transformers import AutoTokenizer

    assert generation["eos_token_id"] == AutoTokenizer.from_pretrained(merged).convert_tokens_to_ids("<|eot_id|>")
    entries = _entries(chain_dir)
    entry, tuned = entries[f"{TUNED}-merged"], entries[TUNED]
    assert entry["backend"] == "huggingface_local" and entry["huggingface_id"] == str(merged)
    assert entry["base_model"] == "tiny" and "peft_model" not in entry["model_config"]
    assert entry["model_config"]["eos_to_cull"] == tuned["model_config"]["eos_to_cull"]
    manifest = json.loads((merged / "playpen_export.json").read_text())
    assert [step["learner"]["name"] for step in manifest["chain"]] == ["sft_qlora", "dpo_qlora"]
    assert manifest["adapter"] == tuned["model_config"]["peft_model"]
    assert manifest["merge"]["lora_scale"] == 1.0 and manifest["merge"]["dtype"] == "float32"
    card = (merged / "README.md").read_text()
    sft = json.loads((chain_dir / "models" / "tiny-sft_qlora" / "playpen_run.json").read_text())
    dpo = json.loads((chain_dir / "models" / TUNED / "playpen_run.json").read_text())
    assert card.index("**sft_qlora**") < card.index("**dpo_qlora**")
    assert sft["data"]["fingerprint"] in card and dpo["data"]["fingerprint"] in card
    assert "beta 0.1" in card and "learning_rate 0.02" in card


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-5), ("bfloat16", 0.03)])
def test_merged_logits_equal_the_adapter_on_its_dequantized_base(chain_copy, chain_dir, playpen, dtype, tolerance):
    import torch

    adapter, base = _adapter_logits(chain_copy), _adapter_logits(chain_copy, disabled=True)
    assert (adapter - base).abs().max() > 0.3  # the adapter changes the logits: the comparison below can fail
    if dtype == "float32":
        merged, loaded = _merged_logits(chain_copy, chain_dir / "merged")
    else:
        assert playpen("export", TUNED, "--output_dir", "bf16", "--name", "bf16").code == 0
        merged, loaded = _merged_logits(chain_copy, chain_copy / "bf16")
    assert loaded == getattr(torch, dtype)
    assert (merged - adapter).abs().max() <= tolerance
    # the episodes of the 4-bit entry: the same up to bitsandbytes' kernel precision
    assert (merged - _adapter_logits(chain_copy, dequantized=False)).abs().max() <= max(tolerance, 0.01)


def test_the_real_model_with_tied_embeddings_merges_to_the_adapters_logits(smollm2_dir, tmp_path, monkeypatch, playpen):
    """SmolLM2-135M-Instruct (tied word embeddings, a 49k vocabulary) with a LoRA adapter on every linear
    projection whose ``lora_B`` is random (not trained: seconds instead of minutes), registered and exported
    through the CLI in float32: the merged model computes the adapter's logits on its dequantized base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.chdir(tmp_path)
    assert playpen("register", "smollm2", "--model", smollm2_dir).code == 0
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32),
                           LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    for name, param in model.named_parameters():
        if ".lora_B." in name:
            torch.nn.init.normal_(param, std=0.02)
    model.save_pretrained(tmp_path / "adapter")
    AutoTokenizer.from_pretrained(smollm2_dir).save_pretrained(tmp_path / "adapter")
    del model
    assert playpen("register", "smollm2-lora", "--base", "smollm2", "--adapter", "adapter").code == 0
    result = playpen("export", "smollm2-lora", "--output_dir", "merged", "--dtype", "float32")
    assert result.code == 0, result

    adapter = _adapter_logits(tmp_path, model_name="smollm2-lora")
    base = _adapter_logits(tmp_path, disabled=True, model_name="smollm2-lora")
    # float32 relative to the largest logit: 30 layers computed in float32 already differ by about 5e-5 from the
    # same reference in float64 (logits up to about 27), more than the tiny model's absolute 1e-5
    tolerance = 1e-5 * adapter.abs().max()
    print(f"delta moves the logits by {(adapter - base).abs().max():.3g}, tolerance {tolerance:.3g}")
    assert adapter.shape[-1] == 49152 and (adapter - base).abs().max() > 100 * tolerance  # the check below can fail
    merged, loaded = _merged_logits(tmp_path, tmp_path / "merged", model_name="smollm2-lora")
    assert loaded == torch.float32
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["tie_word_embeddings"]
    print(f"merged vs adapter: {(merged - adapter).abs().max():.3g}")
    assert (merged - adapter).abs().max() <= tolerance


def test_lora_scale_scales_the_adapter_delta(chain_copy, chain_dir, playpen):
    from safetensors.torch import load_file

    for scale in ("0", "0.5"):
        result = playpen("export", TUNED, "--output_dir", f"s{scale}", "--name", f"s{scale}", "--dtype", "float32",
                         "--lora_scale", scale)
        assert result.code == 0, result
    base = _adapter_logits(chain_copy, disabled=True)
    merged, _ = _merged_logits(chain_copy, chain_copy / "s0")
    assert (merged - base).abs().max() <= 1e-5  # scale 0: the dequantized base
    full, half, none = ({name: tensor
                         for shard in directory.glob("*.safetensors") for name, tensor in load_file(shard).items()}
                        for directory in (chain_dir / "merged", chain_copy / "s0.5", chain_copy / "s0"))
    changed = [name for name in full if not (full[name] == none[name]).all()]
    assert changed and all("proj" in name for name in changed)  # only the LoRA target layers differ
    for name in full:
        assert (half[name] - (full[name] + none[name]) / 2).abs().max() <= 1e-5, name


def test_a_game_gives_the_same_greedy_episodes_through_the_adapter_and_the_merged_entry(chain_copy, playpen):
    from playpen_tune.games import write_game_registry

    write_game_registry(chain_copy)
    merged = f"{TUNED}-merged"
    result = playpen("eval", merged, "--baseline", TUNED, "-g", "wordecho", "-i", "instances_heldout",
                     "--all_instances", "-L", "8", "-r", "ev")
    assert result.code == 0, result

    def episodes(model):
        found = {}
        for path in sorted((chain_copy / "ev" / "clem" / model / "wordecho").rglob("interactions.json")):
            turns = json.loads(path.read_text())["turns"]
            found[path.parent.name] = [[(event["from"], event["to"], str(event["action"]["content"]))
                                        for event in turn] for turn in turns]
        return found

    assert len(episodes(TUNED)) == 12 and episodes(merged) == episodes(TUNED)
    answers = {content for turns in episodes(TUNED).values() for turn in turns for (sender, _, content) in turn
               if sender == "Player 1"}
    assert answers  # the model answered: the episodes hold its text

    # the model card shows the tuned model's numbers against its base's, from the eval's val.json files
    assert playpen("eval", "tiny", "-g", "wordecho", "-i", "instances_heldout", "--all_instances", "-L", "8",
                   "-r", "ev").code == 0
    assert playpen("export", TUNED, "--output_dir", "carded", "--name", "carded", "-r", "ev").code == 0
    tuned, base = (json.loads((chain_copy / "ev" / f"{model}.val.json").read_text()) for model in (TUNED, "tiny"))
    card = (chain_copy / "carded" / "README.md").read_text()
    assert "| game | tiny (base) | tuned | delta |" in card
    assert (f"| clemscore | {base['clemscore']:.2f} | {tuned['clemscore']:.2f} | "
            f"{tuned['clemscore'] - base['clemscore']:.2f} |") in card
    export_record = json.loads((chain_copy / "carded" / "playpen_export.json").read_text())
    assert str(chain_copy / "ev" / f"{TUNED}.val.json") in export_record["evaluation"]


def test_push_without_network_is_one_error_line_and_the_token_is_never_written(chain_copy):
    """Offline: one error before anything is written. With the hub unreachable: the export completes, the push
    is one error line. The token in the environment appears in no output and no file."""
    token = "hf_playpenTestToken1234567890"
    env = {**os.environ, "HF_TOKEN": token, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    before = snapshot(chain_copy)
    offline = subprocess.run([sys.executable, "-m", "playpen", "export", TUNED, "--output_dir", "pushed",
                              "--name", "pushed", "--push_to_hub", "me/tiny"], cwd=chain_copy,
                             env={**env, "HF_HUB_OFFLINE": "1"},
                             capture_output=True, text=True)
    assert offline.returncode == 2 and offline.stderr.count("error:") == 1, offline.stderr
    assert "HF_HUB_OFFLINE" in offline.stderr and snapshot(chain_copy) == before
    unreachable = subprocess.run([sys.executable, "-m", "playpen", "export", TUNED, "--output_dir", "pushed",
                                  "--name", "pushed", "--push_to_hub", "me/tiny", "--private"], cwd=chain_copy,
                                 env={**env, "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0",
                                      "HF_ENDPOINT": "http://127.0.0.1:9"},
                                 capture_output=True, text=True, timeout=300)
    assert unreachable.returncode == 2, unreachable.stderr
    errors = [line for line in unreachable.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "pushing" in errors[0] and "me/tiny" in errors[0]
    assert (chain_copy / "pushed" / "config.json").is_file() and "pushed" in _entries(chain_copy)
    assert token not in offline.stdout + offline.stderr + unreachable.stdout + unreachable.stderr
    for path in chain_copy.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("args, message", [
    (["nosuchmodel", "--output_dir", "out"], "unknown model 'nosuchmodel'"),
    (["tiny", "--output_dir", "out"], "is not a model tuned by playpen"),
    ([TUNED, "--output_dir", "out", "--dtype", "int8"], "--dtype 'int8' is not one of"),
    ([TUNED, "--output_dir", "out", "--lora_scale", "1.5"], "--lora_scale must be between 0"),
    ([TUNED, "--output_dir", "out", "--lora_scale", "nan"], "--lora_scale must be between 0"),
    ([TUNED, "--output_dir", "full", "--name", "fresh"], "is not empty"),
    ([TUNED, "--output_dir", "out", "--name", TUNED], "the tuned model's own entry"),
    ([TUNED, "--output_dir", "out", "--name", "tiny"], "already registered"),
    ([TUNED, "--output_dir", "out", "--name", "tiny-sft_qlora"], "already registered"),
    ([TUNED, "--output_dir", "out", "--name", "../x"], "is not allowed"),
    ([TUNED, "--output_dir", "out", "--name", "fresh", "-r", "noeval"],
     "noeval/tiny-sft_qlora-dpo_qlora.val.json does not exist"),
])
def test_bad_export_input_is_one_error_line_and_changes_nothing(chain_copy, playpen, args, message):
    (chain_copy / "full").mkdir()
    (chain_copy / "full" / "keep.txt").write_text("mine")
    before = snapshot(chain_copy)
    result = playpen("export", *args)
    assert result.code == 2 and result.err.count("error:") == 1 and message in result.err, result
    assert snapshot(chain_copy) == before and not (chain_copy / "out").exists()
