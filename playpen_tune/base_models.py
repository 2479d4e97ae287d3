"""Registry entries for base models a user brings: ``playpen register NAME --model PATH_OR_HUB_ID``.

Everything clemcore's ``huggingface_local`` backend needs is read from the model's own files (tokenizer,
config, model card), nothing is guessed: the end-of-turn token that ``eos_to_cull`` cuts at is the special
token the chat template writes after an assistant answer; a model without a chat template, or whose
template ends an answer with no special token, is refused with what to do. No weights are loaded: the
parameter count comes from building the model on the ``meta`` device from its config.
"""
from __future__ import annotations

import re
from pathlib import Path

from playpen.api import PlaypenError

MARK = "PLAYPEN_ANSWER_MARK"  # an answer text no template rewrites, to find what follows an answer


def _load(model: str):
    from transformers import AutoConfig, AutoTokenizer

    source = str(Path(model).resolve()) if Path(model).is_dir() else model
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as error:
        where = "the directory" if Path(model).is_dir() else "the hub (offline: HF_HUB_OFFLINE) or the local hub cache"
        raise PlaypenError(f"cannot read the tokenizer and config of '{model}' from {where}: "
                           f"{str(error).splitlines()[0]}; pass a model directory (with config.json and the tokenizer) "
                           f"or a hub id you can download") from None
    return source, tokenizer, config


def end_of_turn(tokenizer, model: str) -> str:
    """The special token the chat template writes right after an assistant answer."""
    if not tokenizer.chat_template:
        raise PlaypenError(f"'{model}' has no chat template (tokenizer_config.json 'chat_template'); clemcore plays "
                           f"chat models: register an instruct/chat version, or add the template to its tokenizer")
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "hello"},
                                              {"role": "assistant", "content": MARK}], tokenize=False)
    after = rendered[rendered.index(MARK) + len(MARK):] if MARK in rendered else ""
    specials = sorted(set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab()), key=len, reverse=True)
    for token in specials:
        if after.lstrip(" ").startswith(token):
            return token
    raise PlaypenError(f"cannot tell the end-of-turn token of '{model}': its chat template writes {after[:40]!r} "
                       f"after an answer, which starts with no special token; write the entry by hand with "
                       f"model_config.eos_to_cull")


def context_size(config) -> str | None:
    """clemcore's spelling of the context window (``128k``) from the config, or None if it names none."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        size = getattr(config, key, None)
        if isinstance(size, int) and size > 0:
            return f"{size // 1024}k" if size % 1024 == 0 else str(size)
    return None


def parameter_count(config) -> str:
    """The model's parameter count (``8.0B``, ``1.3M``), built on the meta device: no weights are read."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    count = sum(parameter.numel() for parameter in model.parameters())
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return str(count)


def model_card_license(source: str) -> str | None:
    """The ``license:`` of the model card's YAML header (README.md in the directory or the hub cache), if any."""
    readme = Path(source) / "README.md"
    if not readme.is_file():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, "README.md") if not Path(source).is_dir() else None
        readme = Path(cached) if isinstance(cached, str) else None
    if readme is None:
        return None
    header = re.match(r"---\s*\n(.*?)\n---", readme.read_text(encoding="utf-8"), re.S)
    found = re.search(r"^license:\s*(\S.*)$", header.group(1), re.M) if header else None
    return found.group(1).strip().strip("'\"") if found else None


def base_model_entry(name: str, model: str) -> dict:
    """The ``huggingface_local`` registry entry of a local model directory or hub id."""
    source, tokenizer, config = _load(model)
    eot = end_of_turn(tokenizer, model)
    entry = {"model_name": name, "backend": "huggingface_local", "huggingface_id": source, "open_weight": True,
             "parameters": parameter_count(config)}
    size = context_size(config)
    if size:
        entry["context_size"] = size
    license_name = model_card_license(source)
    if license_name:
        entry["license"] = {"name": license_name}
    entry["model_config"] = {"premade_chat_template": True, "eos_to_cull": "(?s)" + re.escape(eot) + ".*",
                             "padding_side": "left"}
    return entry


def register_base_model(name: str, model: str, overwrite: bool = False) -> tuple[str, dict]:
    """Validate the name, derive the entry and upsert it into ./model_registry.json (atomically)."""
    from clemcore.backends import ModelRegistry

    from playpen.api import upsert_entry, validate_model_name

    validate_model_name(name)
    for spec in ModelRegistry.from_packaged_and_cwd_files():
        if spec["model_name"] == name and not overwrite:
            raise PlaypenError(f"a model named '{name}' ({spec['backend']}, {spec['lookup_source']}) is already "
                               f"registered; choose another name, or pass --overwrite to replace it")
    entry = base_model_entry(name, model)
    return upsert_entry(entry), entry
