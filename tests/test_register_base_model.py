"""``playpen register NAME --model PATH_OR_HUB_ID``: a base model's entry derived from its own files
(end-of-turn token, context size, parameters, license), written atomically; what cannot be known is refused."""
from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import snapshot
from tests.test_chat_templates import CHATML_TEMPLATE


def entries(workdir: Path) -> dict[str, dict]:
    return {entry["model_name"]: entry for entry in json.loads((workdir / "model_registry.json").read_text())}


def parameters_of(model_dir: Path) -> int:
    from transformers import AutoModelForCausalLM

    return sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model_dir).parameters())


def test_register_the_tiny_model_directory(workdir, playpen, tiny_model_dir):
    before, parameters = entries(workdir), parameters_of(tiny_model_dir)
    result = playpen("register", "my-base", "--model", tiny_model_dir)
    assert result.code == 0, result
    entry = entries(workdir)["my-base"]
    assert entry == {"model_name": "my-base", "backend": "huggingface_local",
                     "huggingface_id": str(tiny_model_dir.resolve()),
                     "open_weight": True, "parameters": f"{parameters / 1e3:.1f}K",
                     "context_size": "1k",  # max_position_embeddings 1024
                     "model_config": {"premade_chat_template": True, "eos_to_cull": r"(?s)<\|eot_id\|>.*",
                                      "padding_side": "left"}}
    assert {name: e for name, e in entries(workdir).items() if name != "my-base"} == before
    assert "eos_to_cull (?s)<\\|eot_id\\|>.*" in result.out and "no license in a model card" in result.out
    assert not list(workdir.glob("*.tmp")) and not list(workdir.glob(".*.tmp"))

    from playpen.models import find_model  # clemcore reads it as one of its models

    assert find_model("my-base")["backend"] == "huggingface_local"
    again = playpen("register", "my-base", "--model", tiny_model_dir)
    assert again.code == 2 and again.err.startswith("error: a model named 'my-base'") and "--overwrite" in again.err


def test_register_a_saved_chatml_model_with_a_model_card(workdir, playpen, tmp_path):
    from playpen_tune.tiny import build_tiny_chat_model

    model_dir = build_tiny_chat_model(tmp_path / "saved" / "chatml-model", hidden_size=32, num_layers=1,
                                      max_positions=4096,
                                      chat_template=CHATML_TEMPLATE, eos_token="<|im_end|>",
                                      special_tokens=["<|im_start|>", "<|im_end|>"])
    (model_dir / "README.md").write_text("---\nlicense: apache-2.0\nlanguage: en\n---\n# a model\n")
    parameters = parameters_of(model_dir)
    result = playpen("register", "chatml", "--model", model_dir)
    assert result.code == 0, result
    entry = entries(workdir)["chatml"]
    assert entry["model_config"]["eos_to_cull"] == r"(?s)<\|im_end\|>.*"
    assert entry["context_size"] == "4k" and entry["license"] == {"name": "apache-2.0"}
    assert entry["parameters"] == f"{parameters / 1e3:.1f}K"


def test_what_cannot_be_known_is_one_error_line_and_writes_nothing(workdir, playpen, tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    no_template = tmp_path / "no-template"
    no_template.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "special_tokens_map.json"):
        if (tiny_model_dir / name).exists():
            (no_template / name).write_bytes((tiny_model_dir / name).read_bytes())
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(no_template)
    assert AutoTokenizer.from_pretrained(no_template).chat_template is None
    before = snapshot(workdir)
    cases = {("plain", "--model", str(no_template)): "has no chat template",
             ("hub", "--model", "some-org/not-downloaded-model"):
                 "cannot read the tokenizer and config of 'some-org/not-downloaded-model'",
             ("both", "--model", str(tiny_model_dir), "--base", "tiny", "--adapter", "x"): "pass one or the other",
             ("neither",): "pass --model PATH_OR_HUB_ID"}
    for args, message in cases.items():
        result = playpen("register", *args)
        assert result.code == 2 and result.err.startswith("error: ") and message in result.err, (args, result)
        assert len(result.err.strip().splitlines()) == 1, result.err
    assert snapshot(workdir) == before
