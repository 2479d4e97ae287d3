"""Build tiny chat models offline: the quickstart's base model (and the test fixtures').

Nothing is downloaded. A byte-level BPE tokenizer is trained with ``tokenizers`` on a small
corpus, wrapped in ``PreTrainedTokenizerFast`` with a Llama-3-style chat template (distinct
``<|eot_id|>`` end-of-turn token, ``{% generation %}`` markers for assistant-only loss), and a
randomly initialised ``LlamaForCausalLM`` is built from a config.
"""
from __future__ import annotations

from pathlib import Path

BOS, EOT, PAD = "<|begin_of_text|>", "<|eot_id|>", "<|pad|>"
HEADER_START, HEADER_END = "<|start_header_id|>", "<|end_header_id|>"
SPECIAL_TOKENS = [BOS, EOT, PAD, HEADER_START, HEADER_END]

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|eot_id|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|eot_id|>' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

DEFAULT_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "You are playing a game. Answer in the requested format and nothing else.",
    "Describe the target grid. Expression: the grid with a cross in the middle.",
    "Say the word and follow the rules of the game exactly.",
    "ANSWER: yes. ANSWER: no. GUESS: apple. CLUE: a red fruit.",
    "system user assistant",
]


def build_tokenizer(corpus: list[str] | None = None, vocab_size: int = 512, *, chat_template: str = CHAT_TEMPLATE,
                    eos_token: str = EOT, special_tokens: list[str] | None = None):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with the chat template above, or ``chat_template`` with
    its own ``eos_token`` and further ``special_tokens`` (e.g. ``</s>``, ``<|im_start|>``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(DEFAULT_CORPUS) + list(corpus or [])
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = SPECIAL_TOKENS + [token for token in special_tokens or [] if token not in SPECIAL_TOKENS]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts * 4, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=eos_token,
                                      pad_token=PAD, model_max_length=1024)
    wrapped.chat_template = chat_template
    return wrapped


def build_tiny_chat_model(output_dir: str | Path, corpus: list[str] | None = None, *, vocab_size: int = 512,
                          hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                          max_positions: int = 1024, seed: int = 0, **template) -> Path:
    """Save a random tiny ``LlamaForCausalLM`` and its tokenizer to ``output_dir``; return it.

    ``corpus`` adds texts the tokenizer should encode compactly (e.g. a game's prompts); ``template``
    (``chat_template``, ``eos_token``, ``special_tokens``) gives it another chat format (see :func:`build_tokenizer`).
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    output_dir = Path(output_dir)
    tokenizer = build_tokenizer(corpus, vocab_size, **template)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=max_positions, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


def registry_entry(model_name: str, model_dir: str | Path, *, eos_token: str = EOT) -> dict:
    """A clemcore model-registry entry for a local model directory (huggingface_local backend) whose
    chat template ends each turn with ``eos_token`` (the tiny models': ``<|eot_id|>``)."""
    import re

    return {
        "model_name": model_name,
        "backend": "huggingface_local",
        "huggingface_id": str(Path(model_dir).resolve()),
        "release_date": "2026-11-29",
        "open_weight": True,
        "parameters": "tiny",
        "languages": ["en"],
        "context_size": "1k",
        "license": {"name": "MIT", "url": "https://opensource.org/licenses/MIT"},
        "model_config": {"premade_chat_template": True, "eos_to_cull": f"(?s){re.escape(eos_token)}.*",
                         "padding_side": "left"},
    }
