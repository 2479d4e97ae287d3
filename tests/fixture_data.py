"""Test data made by code: clembench-evaluation style files and a results directory played by clemcore.

Nothing here reads data from outside the repository:

* :func:`sft_rows` and :func:`preference_rows` are small, learnable rows in the clembench-evaluation
  formats (``{"messages": [...]}`` and ``{"prompt", "chosen", "rejected"}`` plain strings);
* :func:`play_relay` plays the two-player test game ``relay`` (``tests/data/games/relay``) with
  clemcore's programmatic players and scores it, so the transcripts are real clemcore episodes;
* :func:`write_tiny_gguf` writes a tiny random Llama chat model as a GGUF file (as llama.cpp lays one out).
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


def write_tiny_gguf(path: Path, architecture: str = "llama", with_tensors: bool = True) -> Path:
    """A tiny random Llama chat model (the tiny tokenizer and chat template of ``playpen_tune.tiny``) as a
    GGUF file with float32 tensors; ``architecture`` and ``with_tensors`` make files transformers refuses."""
    import gguf
    import numpy as np

    from playpen_tune.tiny import CHAT_TEMPLATE, build_tokenizer

    hidden, ffn, heads, kv_heads = 32, 64, 2, 1
    tokenizer = build_tokenizer(vocab_size=300)
    spec = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    tokens = [token for token, _ in sorted(spec["vocab"].items(), key=lambda item: item[1])]
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_context_length(256)
    writer.add_embedding_length(hidden)
    writer.add_block_count(1)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * len(tokens))
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in spec["merges"]])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_chat_template(CHAT_TEMPLATE)
    if with_tensors:
        rng = np.random.default_rng(0)
        head_dim = hidden // heads
        shapes = {"token_embd.weight": (len(tokens), hidden), "output_norm.weight": (hidden,),
                  "output.weight": (len(tokens), hidden), "blk.0.attn_norm.weight": (hidden,),
                  "blk.0.ffn_norm.weight": (hidden,), "blk.0.attn_q.weight": (hidden, hidden),
                  "blk.0.attn_k.weight": (kv_heads * head_dim, hidden),
                  "blk.0.attn_v.weight": (kv_heads * head_dim, hidden),
                  "blk.0.attn_output.weight": (hidden, hidden), "blk.0.ffn_gate.weight": (ffn, hidden),
                  "blk.0.ffn_up.weight": (ffn, hidden), "blk.0.ffn_down.weight": (hidden, ffn)}
        for name, shape in shapes.items():
            writer.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
