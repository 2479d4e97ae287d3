"""The settings the published playpen table was made with, as ``playpen eval``'s and ``playpen play``'s defaults.

The 2026 LM playschool table was produced with clemcore 3.7.2 at temperature 0, ``max_tokens`` 5000 and
``enable_thinking: false`` in ``chat_template_kwargs`` (the results repository's README and every
``run.json`` say so); clemcore's other generation settings were its defaults. A number made otherwise
(upstream playpen's CLI default ``-L 300`` cuts long answers; a template that thinks by default answers
differently) is not comparable with that table, so these are the defaults, and val.json says which
published setting a run matches. ``-T``/``-L`` stay for quick runs, which are then marked as not comparable.
"""
from __future__ import annotations

import re

PUBLISHED_SETTINGS = {
    "lm-playschool-2026": {"clemcore": "3.7.2", "generation": {"temperature": 0.0, "max_tokens": 5000},
                           "chat_template_kwargs": {"enable_thinking": False}},
}
DEFAULT_SETTING = "lm-playschool-2026"
DEFAULT_GENERATION = PUBLISHED_SETTINGS[DEFAULT_SETTING]["generation"]
# transformers' {% generation %} markers (assistant masks) are not plain Jinja; they read no variable
GENERATION_TAG = re.compile(r"{%-?\s*(end)?generation\s*-?%}")
# the backends whose chat template is the tokenizer's (clemcore passes model_config.chat_template_kwargs to it)
TEMPLATE_BACKENDS = {"huggingface_local", "playpen_qlora"}


def template_variables(model_spec) -> set[str] | None:
    """The variables the model's chat template reads: an empty set for a model without one (scripted players,
    APIs), None when its tokenizer cannot be read here (then no published setting can be claimed)."""
    if model_spec.to_dict().get("backend") not in TEMPLATE_BACKENDS:
        return set()
    config = model_spec.model_config
    key = (model_spec["huggingface_id"], bool(config.get("trust_remote_code")), bool(config.get("requires_api_key")))
    if key not in _TEMPLATE_VARIABLES:
        _TEMPLATE_VARIABLES[key] = _read_template_variables(model_spec)
    variables = _TEMPLATE_VARIABLES[key]
    return None if variables is None else set(variables)


_TEMPLATE_VARIABLES: dict[tuple, frozenset | None] = {}  # per model id: its template is read once per process


def _read_template_variables(model_spec) -> frozenset | None:
    """The template's variables, with the tokenizer loaded as clemcore loads it to play (its hub key included)."""
    from clemcore.backends.huggingface_local_api import load_config_and_tokenizer
    from jinja2 import Environment, meta

    try:
        tokenizer, _ = load_config_and_tokenizer(model_spec)
    except (OSError, ValueError, KeyError):  # offline without a cached copy, gated without a key
        return None
    templates = tokenizer.chat_template
    templates = templates.values() if isinstance(templates, dict) else [templates] if templates else []
    return frozenset(name for template in templates
                     for name in meta.find_undeclared_variables(Environment().parse(GENERATION_TAG.sub("", template))))


def with_published_chat_template_kwargs(model_spec, setting: str = DEFAULT_SETTING):
    """``(spec, chat_template_kwargs)``: the spec with the published setting's chat template arguments added for the
    variables its template reads (what the registry entry sets itself wins), and the arguments it now plays with."""
    from clemcore.backends import ModelSpec

    entry = model_spec.to_dict()
    kwargs = dict((entry.get("model_config") or {}).get("chat_template_kwargs") or {})
    variables = template_variables(model_spec)
    added = {key: value for key, value in PUBLISHED_SETTINGS[setting]["chat_template_kwargs"].items()
             if variables and key in variables and key not in kwargs}
    if not added:
        return model_spec, kwargs
    kwargs.update(added)
    return ModelSpec.from_dict({**entry, "model_config": {**entry.get("model_config", {}),
                                                          "chat_template_kwargs": kwargs}}), kwargs


def matching_setting(generation: dict, chat_template_kwargs: dict, model_spec) -> str | None:
    """The published setting a run of ``model_spec`` with these arguments matches, or None."""
    variables = template_variables(model_spec)
    if variables is None:  # what the template reads is unknown
        return None
    for name, setting in PUBLISHED_SETTINGS.items():
        wanted = {key: value for key, value in setting["chat_template_kwargs"].items() if key in variables}
        if (all(generation.get(key) == value for key, value in setting["generation"].items())
                and all(chat_template_kwargs.get(key) == value for key, value in wanted.items())):
            return name
    return None


def published_record(generation: dict, chat_template_kwargs: dict, model_spec) -> dict:
    """val.json's ``generation``, ``chat_template_kwargs`` and ``published_setting`` (None: matches none), and why
    not (``not_comparable_because``: [] or one reason)."""
    setting = matching_setting(generation, chat_template_kwargs, model_spec)
    reasons = []
    if setting is None and template_variables(model_spec) is None:
        reasons.append(f"the chat template of {model_spec['huggingface_id']} could not be read here, so whether it "
                       f"played with the published chat template arguments is unknown")
    elif setting is None:
        wanted = {**PUBLISHED_SETTINGS[DEFAULT_SETTING]["generation"],
                  **PUBLISHED_SETTINGS[DEFAULT_SETTING]["chat_template_kwargs"]}
        played = {**generation, **chat_template_kwargs}
        reasons.append(f"generation settings differ from the published table's ({DEFAULT_SETTING}: "
                       f"{', '.join(f'{key} {value}' for key, value in wanted.items())}; played with "
                       f"{', '.join(f'{key} {value}' for key, value in played.items())})")
    return {"generation": dict(generation), "chat_template_kwargs": dict(chat_template_kwargs),
            "published_setting": setting, "not_comparable_because": reasons}
