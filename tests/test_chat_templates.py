"""Assistant-only loss for any chat template: prefix-rendering masks against TRL's training templates
(read from the installed TRL), and two templates TRL does not know trained, registered and played."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import snapshot

TRL_TEMPLATES = Path(__import__("trl").__file__).parent / "chat_templates"
# vision-language processors' templates expect content blocks, not the text turns playpen trains on
VISION = {"idefics3", "llava_next", "smolvlm"}
# gpt-oss ends the last answer with <|return|> but earlier ones with <|end|>: the end-of-turn of an earlier
# answer is not what that answer rendered alone ends with, so prefix rendering leaves it out (TRL's variant
# marks it); the final answer's <|return|> is trained
HISTORY_END_DIFFERS = {"gptoss"}
# the originals the issue names, and others that are prefix-preserving on plain text: compared, not refused
MUST_COMPARE = {"llama3", "qwen2_5", "qwen3", "gemma", "gemma3", "phi3", "phi3_5", "cohere", "cohere2", "lfm2",
                "qwen3_instruct_2507"}
PAIRS = [pytest.param(p.stem, marks=pytest.mark.xfail(strict=True, reason="earlier answers end with another token"))
         if p.stem in HISTORY_END_DIFFERS else p.stem
         for p in sorted(TRL_TEMPLATES.glob("*.jinja"))
         if not p.stem.endswith("_training") and p.stem not in VISION
         and (TRL_TEMPLATES / f"{p.stem}_training.jinja").is_file()]

CONVERSATIONS = [
    [{"role": "user", "content": "Say the word: apple"}, {"role": "assistant", "content": "ANSWER: apple"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a"},
     {"role": "assistant", "content": "b"}, {"role": "user", "content": "c ü 日本"},
     {"role": "assistant", "content": "d ✓"}, {"role": "user", "content": "again"},
     {"role": "assistant", "content": "ANSWER: e"}],
    [{"role": "user", "content": "x"}, {"role": "assistant", "content": ""}, {"role": "user", "content": ""},
     {"role": "assistant", "content": "ANSWER: yes"}],
]

INST_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
                 "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
                 "{{ message['content'] + eos_token }}{% endif %}{% endfor %}")
CHATML_TEMPLATE = ("{% if messages[0]['role'] != 'system' %}"
                   "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
                   "{% for message in messages %}"
                   "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}"
                   "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
UNKNOWN = {  # name: (template, end-of-turn as rendered after each answer, special tokens)
    "inst": (INST_TEMPLATE, "</s>", ["</s>"]),
    "chatml": (CHATML_TEMPLATE, "<|im_end|>\n", ["<|im_start|>", "<|im_end|>"]),
}
WORDS = ["apple", "grid", "fox", "yes", "red", "dog", "game", "word"]


def tokenizer_with(template: str, eos_token: str | None = None, specials: list[str] | None = None):
    from playpen_tune.tiny import EOT, build_tokenizer

    if specials is None:  # the template's own control tokens, as its model would have them
        specials = sorted(set(re.findall(r"<[|｜][^<>\s'\"]{1,40}?[|｜]>|<(?:start|end)_of_turn>", template)))
    return build_tokenizer(chat_template=template, eos_token=eos_token or EOT, special_tokens=specials)


def generation_prompt_chars(tokenizer, messages) -> list[tuple[int, int]]:
    """Where the generation prompt before each assistant message lies in the whole rendering."""
    spans = []
    for i, message in enumerate(messages):
        if message["role"] == "assistant" and i:
            plain = tokenizer.apply_chat_template(messages[:i], tokenize=False)
            prompted = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
            spans.append((len(plain), len(prompted)))
    return spans


@pytest.mark.parametrize("name", PAIRS)
def test_prefix_rendering_masks_equal_trls_training_template_masks(name):
    """Token for token, the general path on the original template gives the mask of TRL's training variant.

    TRL's training variants of some templates also mark tokens of the generation prompt (ChatML's newline
    after ``assistant``, gpt-oss' ``<|start|>assistant``, Qwen3.5's ``<think>``): tokens the model never
    generates, since clemcore renders them into the prompt; the general path leaves exactly those out.
    Where the original is not prefix-preserving for a conversation (TRL's variant renders it differently,
    or the generation prompt is not a prefix of the conversation) the general path must refuse it.
    """
    from playpen.errors import PlaypenError
    from playpen_tune.chat_masks import tokenize_with_assistant_masks

    original = (TRL_TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")
    training = (TRL_TEMPLATES / f"{name}_training.jinja").read_text(encoding="utf-8")
    tokenizer = tokenizer_with(original)
    compared = 0
    for messages in CONVERSATIONS:
        try:
            expected = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                                     return_assistant_tokens_mask=True, chat_template=training)
        except Exception:  # noqa: BLE001 - e.g. gemma's "System role not supported", VLM content blocks
            continue
        same_text = (tokenizer.apply_chat_template(messages, tokenize=False)
                     == tokenizer.apply_chat_template(messages, tokenize=False, chat_template=training))
        try:
            masks = tokenize_with_assistant_masks(tokenizer, messages)
        except PlaypenError as error:
            full = tokenizer.apply_chat_template(messages, tokenize=False)
            prompts = [tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
                       for i, m in enumerate(messages) if m["role"] == "assistant" and i]
            assert not same_text or not all(full.startswith(p) for p in prompts), (name, messages, error)
            assert "not prefix-preserving" in str(error) and "--assistant_only_loss false" in str(error)
            continue
        if not same_text:  # TRL's variant renders other tokens: nothing to compare token for token
            continue
        assert masks["input_ids"] == list(expected["input_ids"])
        prompt_chars = generation_prompt_chars(tokenizer, messages)
        offsets = tokenizer(tokenizer.apply_chat_template(messages, tokenize=False), add_special_tokens=False,
                            return_offsets_mapping=True)["offset_mapping"]
        for index, (ours, trls) in enumerate(zip(masks["assistant_masks"], expected["assistant_masks"], strict=True)):
            start, end = offsets[index]
            in_prompt = any(a <= start and end <= b for a, b in prompt_chars)
            assert ours == trls or (trls == 1 and ours == 0 and in_prompt), (
                name, messages, index, tokenizer.decode([masks["input_ids"][index]]), ours, trls)
        compared += 1
    if name in MUST_COMPARE:
        assert compared, f"{name}: no conversation compared"


@pytest.mark.parametrize("name", sorted(UNKNOWN))
def test_unknown_template_masks_exactly_the_answers_and_their_end_of_turn(name):
    from playpen_tune.chat_masks import PREFIX_RENDERING, mask_source, tokenize_with_assistant_masks

    template, end_of_turn, specials = UNKNOWN[name]
    tokenizer = tokenizer_with(template, specials[-1] if name == "inst" else "<|im_end|>", specials)
    assert mask_source(tokenizer) == PREFIX_RENDERING
    for messages in CONVERSATIONS:
        masks = tokenize_with_assistant_masks(tokenizer, messages)
        ids = masks["input_ids"]
        runs, current = [], []
        for token, masked in zip(ids, masks["assistant_masks"], strict=True):
            if masked:
                current.append(token)
            elif current:
                runs.append(current)
                current = []
        if current:
            runs.append(current)
        answers = [m["content"] for m in messages if m["role"] == "assistant"]
        assert [tokenizer.decode(run) for run in runs] == [answer + end_of_turn for answer in answers]


NOT_PREFIX_PRESERVING = ("{% for message in messages %}{% if message['role'] == 'assistant' and not loop.last %}"
                         "{{ '<|im_start|>assistant\n...<|im_end|>\n' }}{% else %}"
                         "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
                         "{% endif %}{% endfor %}"
                         "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def write_sft_rows(path: Path, count: int = 32) -> Path:
    rows = [{"messages": [{"role": "user", "content": f"Say the word: {WORDS[i % len(WORDS)]}"},
                          {"role": "assistant", "content": f"ANSWER: {WORDS[i % len(WORDS)]}"},
                          {"role": "user", "content": "Say it again."},
                          {"role": "assistant", "content": f"ANSWER: {WORDS[i % len(WORDS)]}"}]} for i in range(count)]
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def test_template_that_is_not_prefix_preserving_is_one_error_naming_the_example(playpen, workdir, tmp_path):
    from playpen_tune.tiny import registry_entry

    model_dir = tmp_path / "rewriting-template"
    tokenizer_with(NOT_PREFIX_PRESERVING, "<|im_end|>").save_pretrained(model_dir)
    registry = workdir / "model_registry.json"
    registry.write_text(json.dumps(json.loads(registry.read_text()) + [registry_entry("rewriting", model_dir)]))
    data = write_sft_rows(workdir / "sft.json", 4)
    before = snapshot(workdir)
    result = playpen("learn", "-l", "sft_qlora", "-m", "rewriting", "--dataset", data)
    assert result.code == 2, result
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--dataset example 0" in errors[0] and "not prefix-preserving" in errors[0], result
    assert "--assistant_only_loss false" in errors[0]
    assert snapshot(workdir) == before


@pytest.fixture(scope="module", params=sorted(UNKNOWN))
def unknown_template_model(request, tmp_path_factory):
    from playpen_tune.tiny import build_tiny_chat_model

    template, _, specials = UNKNOWN[request.param]
    eos = "</s>" if request.param == "inst" else "<|im_end|>"
    directory = tmp_path_factory.mktemp("templates") / request.param
    corpus = [f"Say the word: {w} ANSWER: {w} Say it again." for w in WORDS]
    build_tiny_chat_model(directory, corpus, chat_template=template, eos_token=eos, special_tokens=specials)
    return request.param, directory, eos


@pytest.mark.slow
def test_unknown_template_trains_registers_and_plays(playpen, workdir, unknown_template_model):
    """SFT with default options, DPO on top, the registry entry's eos_to_cull, and a game-style turn
    played through the playpen_qlora backend, for a template TRL has no markers or training variant for."""
    from clemcore.backends import ModelRegistry

    from playpen_tune.backend import QLoRABackend
    from playpen_tune.tiny import registry_entry

    kind, model_dir, eos = unknown_template_model
    registry = workdir / "model_registry.json"
    registry.write_text(json.dumps(json.loads(registry.read_text()) + [registry_entry(kind, model_dir)]))
    data = write_sft_rows(workdir / "sft.json")
    result = playpen("learn", "-l", "sft_qlora", "-m", kind, "--dataset", data, "--max_steps", "12",
                     "--learning_rate", "1e-2", "--per_device_train_batch_size", "8",
                     "--gradient_accumulation_steps", "1", "--logging_steps", "1")
    assert result.code == 0, result
    manifest = json.loads((workdir / "models" / f"{kind}-sft_qlora" / "playpen_run.json").read_text())
    assert manifest["loss_masking"] == "assistant_only" and manifest["mask_source"] == "prefix rendering"
    losses = [entry["loss"] for entry in manifest["loss_history"]]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1, losses  # the masked answers were learnt from
    entries = {e["model_name"]: e for e in json.loads(registry.read_text())}
    assert entries[f"{kind}-sft_qlora"]["model_config"]["eos_to_cull"] == "(?s)" + re.escape(eos) + ".*"

    spec = ModelRegistry.from_packaged_and_cwd_files().get_first_model_spec_that_unify_with(f"{kind}-sft_qlora")
    model = QLoRABackend().get_model_for(spec)
    model.set_gen_args(temperature=0.0, max_tokens=12)
    prompt, response, text = model.generate_response([{"role": "user", "content": "Say the word: fox"}])
    assert ("[INST] Say the word: fox [/INST]" if kind == "inst" else "<|im_start|>assistant\n") in prompt["inputs"]
    assert isinstance(text, str) and eos not in text, (prompt, response, text)  # culled at the end of turn

    pairs = [{"prompt": f"Say the word: {w}", "chosen": f"ANSWER: {w}", "rejected": w} for w in WORDS] * 2
    (workdir / "dpo.json").write_text(json.dumps(pairs))
    result = playpen("learn", "-l", "dpo_qlora", "-m", f"{kind}-sft_qlora", "--dataset", workdir / "dpo.json",
                     "--max_steps", "2", "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1",
                     "--logging_steps", "1")
    assert result.code == 0, result
    dpo = json.loads((workdir / "models" / f"{kind}-sft_qlora-dpo_qlora" / "playpen_run.json").read_text())
    assert dpo["metrics"]["global_step"] == 2
    entries = {e["model_name"]: e for e in json.loads(registry.read_text())}
    assert entries[f"{kind}-sft_qlora-dpo_qlora"]["model_config"]["eos_to_cull"] == "(?s)" + re.escape(eos) + ".*"
