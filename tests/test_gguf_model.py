"""``playpen gguf-model``: a GGUF chat model becomes a cached Hugging Face model directory (converted once,
rebuilt when the cache entry is damaged), and files transformers cannot use as a model get one error line."""
from __future__ import annotations

import json

import pytest

from tests.fixture_data import write_tiny_gguf


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "cache" / "playpen-tune" / "gguf-models"


def test_gguf_model_is_converted_once_registered_and_rebuilt_when_damaged(playpen, tmp_path, cache):
    gguf_file = write_tiny_gguf(tmp_path / "tiny.gguf")
    first = playpen("gguf-model", gguf_file, "--register", "tiny-gguf")
    assert first.code == 0, first
    assert "converting" in first.out and "model registry: added 'tiny-gguf'" in first.out
    (entry,) = [p for p in cache.iterdir()]  # no temporary build directory left behind
    assert f"model directory: {entry}" in first.out
    for name in ("model.safetensors", "tokenizer.json", "config.json", "generation_config.json"):
        assert (entry / name).is_file()
    assert "quantization_config" not in json.loads((entry / "config.json").read_text())  # plain weights
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(entry)
    assert tokenizer.eos_token == "<|eot_id|>" and "start_header_id" in tokenizer.chat_template
    assert json.loads((entry / "generation_config.json").read_text())["eos_token_id"] == tokenizer.eos_token_id
    (registered,) = json.loads((tmp_path / "model_registry.json").read_text())
    assert registered["huggingface_id"] == str(entry)
    assert registered["model_config"]["eos_to_cull"] == r"(?s)<\|eot_id\|>.*"

    again = playpen("gguf-model", gguf_file)
    assert again.code == 0 and "converting" not in again.out and f"model directory: {entry}" in again.out

    weights = entry / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # cut short, as by a full disk or a killed copy
    rebuilt = playpen("gguf-model", gguf_file)
    assert rebuilt.code == 0, rebuilt
    assert "rebuilding it" in rebuilt.out and "converting" in rebuilt.out
    assert [p for p in cache.iterdir()] == [entry]
    from safetensors.torch import load_file

    assert load_file(weights)  # whole again


@pytest.mark.parametrize("kind, message", [
    ("text", "is not a GGUF file"),
    ("architecture", "transformers cannot read the GGUF architecture 'notallama'"),
    ("no tensors", "holds no model"),
    ("missing", "not found"),
])
def test_a_file_that_is_not_a_usable_gguf_model_is_one_error_line(playpen, tmp_path, cache, kind, message):
    path = tmp_path / "model.gguf"
    if kind == "text":
        path.write_text("not a model\n" * 10)
    elif kind == "architecture":
        write_tiny_gguf(path, architecture="notallama")
    elif kind == "no tensors":
        write_tiny_gguf(path, with_tensors=False)
    result = playpen("gguf-model", path)
    assert result.code == 2, result
    assert result.err.count("error:") == 1 and message in result.err and str(path) in result.err, result.err
    assert not cache.exists() or not any(cache.iterdir())
