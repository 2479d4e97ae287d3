"""The clembench-evaluation ``tuning.py`` YAML format, mapped onto the new config fields.

That script read nested keys (``low_rank_matrice.size``, ``training.batch_size``, ...) and had
to be edited so unused lines stayed commented. ``-c old.yaml`` keeps working: each legacy key
is translated, and a notice names every mapping applied.
"""
from __future__ import annotations

from playpen.api import PlaypenError

# (section, key) -> new field
LEGACY_FIELDS = {
    ("max_seq_length", "length"): "max_length",
    ("low_rank_matrice", "size"): "lora_r",
    ("influence", "rate"): "lora_alpha",
    ("dropout", "rate"): "lora_dropout",
    ("training", "learning_rate"): "learning_rate",
    ("training", "batch_size"): "per_device_train_batch_size",
    ("training", "grad_acc_steps"): "gradient_accumulation_steps",
    ("training", "max_training_steps"): "max_steps",
    ("training", "warmup_steps"): "warmup_steps",
    ("training", "beta"): "beta",
}
LEGACY_SECTIONS = {"tuning", "base_model", "sft_dataset", "sft_model", "preference_dataset",
                   *(section for section, _ in LEGACY_FIELDS)}
LEGACY_KEYS = {*LEGACY_FIELDS, ("tuning", "type"), ("base_model", "name"), ("sft_dataset", "name"),
               ("sft_model", "name"), ("preference_dataset", "name")}
UNUSED = {None, "", "not_used", "none"}


def is_legacy(raw: dict) -> bool:
    """Whether a YAML mapping uses the old nested format (``tuning.type`` and friends)."""
    return any(isinstance(raw.get(section), dict) for section in LEGACY_SECTIONS)


def translate_legacy(raw: dict, tuning_type: str, dataset_section: str) -> tuple[dict, list[str]]:
    """Translate a legacy mapping for a learner of ``tuning_type`` ("sft" or "dpo").

    New-style keys may be mixed in; a key given both ways with different values is an error.
    """
    notices: list[str] = []
    for section in LEGACY_SECTIONS & raw.keys():
        if not isinstance(raw[section], dict):
            raise PlaypenError(f"config key '{section}' must be a mapping in the legacy format (e.g. "
                               f"'{section}:' followed by indented keys), got {raw[section]!r}")
    _refuse_unknown_keys(raw)
    out = {key: value for key, value in raw.items() if key not in LEGACY_SECTIONS}

    def put(field: str, value, origin: str) -> None:
        if field in out and out[field] != value:
            raise PlaypenError(f"config sets {field} twice with different values ({out[field]!r} and "
                               f"{origin}={value!r}); keep one of them")
        out[field] = value
        notices.append(f"legacy {origin} -> {field}")

    declared = (raw.get("tuning") or {}).get("type")
    if declared is not None and str(declared).lower() != tuning_type:
        raise PlaypenError(f"config says tuning.type: {declared} but this learner does {tuning_type}; "
                           f"use -l {declared}_qlora or change tuning.type")
    for (section, key), field in LEGACY_FIELDS.items():
        value = (raw.get(section) or {}).get(key)
        if value is None or (field == "beta" and tuning_type != "dpo"):
            continue
        put(field, value, f"{section}.{key}")
    dataset = (raw.get(dataset_section) or {}).get("name")
    if str(dataset).lower() not in UNUSED:
        put("dataset", [dataset], f"{dataset_section}.name")
    for section in ("base_model", "sft_model"):
        name = (raw.get(section) or {}).get("name")
        if str(name).lower() not in UNUSED:
            notices.append(f"legacy {section}.name ({name}) is not used: the model comes from -m")
    if "lora_dropout" in out and isinstance(out["lora_dropout"], float):
        notices.append("dropout.rate is used as a float (the old script truncated it to an int)")
    return out, notices


def _refuse_unknown_keys(raw: dict) -> None:
    """A key inside a legacy section that the old script did not read is a typo, not something to drop."""
    import difflib

    known = {f"{section}.{key}" for section, key in LEGACY_KEYS}
    for section in sorted(LEGACY_SECTIONS & raw.keys()):
        for key in raw[section]:
            name = f"{section}.{key}"
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(sorted(known))}"
                raise PlaypenError(f"unknown legacy config key '{name}'; {hint}")
