"""Assistant-only loss masks for any chat template.

TRL masks assistant turns from ``{% generation %}`` markers, either in the model's own template or
in one of the training templates TRL stores for the originals it knows. For every other template
(Mistral-style ``[INST]``, ChatML with a default system prompt, a fine-tune's edited template) the
mask is computed from the template itself: the conversation is rendered prefix by prefix, and the
characters an assistant message adds (its content and its end-of-turn token, not the next turn's
header, which the following prefix's generation prompt renders) are the ones trained on.
"""
from __future__ import annotations

from playpen.api import PlaypenError

TEMPLATE_MARKERS = "template markers"
TRL_TRAINING_TEMPLATE = "trl training template"
PREFIX_RENDERING = "prefix rendering"


def mask_source(tokenizer) -> str:
    """Which path gives assistant masks for ``tokenizer``'s chat template (one of the constants above)."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    template = tokenizer.chat_template
    if not template:
        raise PlaypenError("the tokenizer has no chat template, so assistant turns cannot be told apart; "
                           "give the model a chat template or pass --assistant_only_loss false")
    if has_generation_markers(template):
        return TEMPLATE_MARKERS
    try:
        patched = get_training_chat_template(tokenizer)
    except (ValueError, TypeError):  # TRL raises for templates it does not store
        patched = None
    return TRL_TRAINING_TEMPLATE if patched is not None else PREFIX_RENDERING


def _render(tokenizer, messages: list[dict], generation_prompt: bool, kwargs: dict) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt,
                                         **kwargs)


def assistant_spans(tokenizer, messages: list[dict], chat_template_kwargs: dict | None = None,
                    example: str = "an example") -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span each assistant message adds to it.

    Assistant message ``i`` starts where ``messages[:i]`` rendered with the generation prompt ends
    (the context the model sees at inference); it ends where ``messages[:i + 1]`` rendered alone
    stops agreeing, token by token, with the whole conversation (a suffix a template adds only to
    the last message, such as a final eos, is then left out of every earlier turn). The template must be
    prefix-preserving for this example: the generation prompt is a prefix of the whole rendering and
    the message's content lies inside its span; otherwise a :class:`PlaypenError` names ``example``
    and the fix.
    """
    kwargs = dict(chat_template_kwargs or {})
    full = _render(tokenizer, messages, False, kwargs)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        if i == 0:  # transformers renders no empty conversation, so the header before it is unknown
            raise PlaypenError(f"{example} starts with an assistant message, so the tokens before it cannot be "
                               f"rendered on their own; start it with a user or system message or pass "
                               f"--assistant_only_loss false")
        before = _render(tokenizer, messages[:i], True, kwargs)  # the context the model sees at inference
        start = len(before)
        after = _render(tokenizer, messages[: i + 1], False, kwargs)
        end = _agreeing_length(tokenizer, after, full)
        content = (message.get("content") or "").strip()
        kept = (end > start and (not spans or start >= spans[-1][1]) and full.startswith(before)
                and content in full[start:end])
        if not kept:
            raise PlaypenError(
                f"{example}: the chat template renders assistant message {i} differently once the conversation "
                f"goes on, or renders the prompt before it differently from the generation prompt (it is not "
                f"prefix-preserving), so the tokens to train on cannot be found; add {{% generation %}} markers to "
                f"the template or pass --assistant_only_loss false")
        spans.append((start, end))
    return full, spans


def _agreeing_length(tokenizer, alone: str, full: str) -> int:
    """How much of ``alone`` (a prefix rendered by itself) the whole rendering repeats, in whole tokens of
    ``alone``: a final ``<|endoftext|>`` must not count its ``<|`` when the next turn starts ``<|user|>``."""
    agree = 0
    for x, y in zip(alone, full, strict=False):
        if x != y:
            break
        agree += 1
    if agree == len(alone):
        return agree
    offsets = tokenizer(alone, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return max((end for _, end in offsets if end <= agree), default=0)


def tokenize_with_assistant_masks(tokenizer, messages: list[dict], chat_template_kwargs: dict | None = None,
                                  example: str = "an example") -> dict:
    """``{"input_ids", "assistant_masks"}`` of a conversation: 1 for every token overlapping an assistant span.

    The ids are those TRL's own tokenization gives (the whole rendering tokenized without added
    special tokens); a token that straddles a span's edge counts as assistant, as in transformers.
    """
    text, spans = assistant_spans(tokenizer, messages, chat_template_kwargs, example)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    masks = [int(any(start < span_end and end > span_start for span_start, span_end in spans))
             for start, end in encoded["offset_mapping"]]
    return {"input_ids": list(encoded["input_ids"]), "assistant_masks": masks}


def tokenize_dataset(dataset, tokenizer, which: str = "--dataset"):
    """Replace each conversation row by ``input_ids`` + ``assistant_masks`` (TRL trains on the masked tokens).

    A row's ``chat_template_kwargs`` apply as TRL would apply them; an error names the row of ``which``.
    """
    def encode(row, index):
        return tokenize_with_assistant_masks(tokenizer, row["messages"], row.get("chat_template_kwargs"),
                                             example=f"{which} example {index}")

    return dataset.map(encode, with_indices=True, remove_columns=dataset.column_names,
                       desc="Masking assistant turns by prefix rendering")


def check_preference_rows(dataset, tokenizer, which: str = "--dataset") -> None:
    """Check that prompt + chosen and prompt + rejected render prefix by prefix, as DPO's completion mask assumes.

    TRL takes the completion to be what ``prompt + answer`` adds to the prompt rendered with the generation
    prompt; with a template that renders them differently it would train on a context the model never sees.
    """
    for index, row in enumerate(dataset):
        for answer in ("chosen", "rejected"):
            assistant_spans(tokenizer, list(row["prompt"]) + list(row[answer]), row.get("chat_template_kwargs"),
                            example=f"{which} pair {index} ({answer})")
