"""``playpen export``: a tuned model (a 4-bit base plus a chain of LoRA adapters) as one standard model.

Submissions to the LM playschool are full models that any tool loads (transformers, vLLM, clemcore's
``huggingface_local``), never adapters. The export loads the base with the quantization the adapter
was trained on, dequantizes it and adds the adapter's delta in fp32 (:mod:`playpen_tune.merging`), so
the merged model computes what the adapter on its 4-bit base computed, then casts to ``--dtype``. The
adapter of a chain (SFT, then DPO or GRPO continuing it) holds the whole chain: each later learner
trained the same adapter further, and the manifests (``parent_adapter``) name the steps for the model
card.

The directory is written into a temporary sibling and renamed into place when complete: a failed
export leaves no half-written model. An earlier export in ``--output_dir`` moves aside with
``--overwrite`` (nothing is deleted). The hub push reads the token the way ``huggingface_hub`` does
(``HF_TOKEN`` or a cached login) and never prints or writes it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from playpen.api import (
    PlaypenError,
    atomic_write_text,
    library_chatter_to,
    redact_command_line,
    refuse_file,
    upsert_entry,
    validate_model_name,
    without_secrets,
)
from playpen_tune import manifest as manifest_io
from playpen_tune.registration import BACKEND_NAME, COPIED_KEYS, REPLACED_CONFIG_KEYS, check_name_is_free

DTYPES = ("bfloat16", "float16", "float32")
EXPORT_MANIFEST = "playpen_export.json"
MODEL_CARD = "README.md"
EXPORT_LOG = "export.log"  # library messages of the export (loading progress, warnings); not pushed
# a merged model loads on its own: it needs no adapter, no quantization and no hub key of the base
DROPPED_CONFIG_KEYS = REPLACED_CONFIG_KEYS | {"requires_api_key"}
# the settings of each learner the model card names (those a learner's config has)
CARD_SETTINGS = ("learning_rate", "max_steps", "num_train_epochs", "per_device_train_batch_size",
                 "gradient_accumulation_steps", "max_length", "beta", "loss_type", "num_generations", "reward",
                 "temperature", "outcomes", "seed")


@dataclass
class ExportRequest:
    """What ``playpen export`` was asked to do (see :func:`export_from_cli` for the options)."""

    model: str
    output_dir: Path
    dtype: str = "bfloat16"
    lora_scale: float = 1.0
    name: str | None = None
    overwrite: bool = False
    push_to_hub: str | None = None
    private: bool = False
    results_dir: Path | None = None
    max_shard_size: str = "5GB"
    command_line: list | None = None


def export_from_cli(args) -> None:
    """``playpen export MODEL --output_dir DIR ...``: merge, write, register, optionally push."""
    request = ExportRequest(model=args.model, output_dir=Path(args.output_dir), dtype=args.dtype,
                            lora_scale=args.lora_scale, name=args.name, overwrite=args.overwrite,
                            push_to_hub=args.push_to_hub, private=args.private,
                            results_dir=Path(args.results_dir) if args.results_dir else None,
                            max_shard_size=args.max_shard_size, command_line=redact_command_line(args.argv))
    export_model(request)


def export_model(request: ExportRequest) -> dict:
    """Check everything, merge into a temporary sibling of the output dir, move it into place, register
    the merged model (``huggingface_local``) and push it if asked. Returns the registry entry."""
    tuned, adapter, name = check_request(request)
    chain = adapter_chain(adapter)
    evaluation = evaluation_numbers(request.results_dir, tuned)
    out = request.output_dir.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.export-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)  # our own leftover of a killed export with this pid
    staging.mkdir()
    with library_chatter_to(out / EXPORT_LOG):  # written once the directory is in place
        try:
            print(f"playpen export: merging {tuned['model_name']} ({len(chain)} learner(s) on "
                  f"{tuned['huggingface_id']}) with lora_scale {request.lora_scale} in fp32, saving as {request.dtype}")
            weights = write_merged_model(staging, tuned, adapter, request)
            entry = merged_entry(name, tuned, out)
            atomic_write_text(staging / MODEL_CARD, model_card(tuned, name, chain, request, weights, evaluation))
            atomic_write_text(staging / EXPORT_MANIFEST, json.dumps(
                export_manifest(tuned, adapter, chain, request, weights, entry, evaluation), indent=2) + "\n")
            _move_into_place(staging, out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    action = upsert_entry(entry)
    print(f"wrote {out} ({weights['shards']} safetensors shard(s), {request.dtype}); model registry: {action} "
          f"'{name}' (backend huggingface_local) in ./model_registry.json")
    if request.push_to_hub:
        push_to_hub(out, request.push_to_hub, request.private)
    return entry


def export_manifest(tuned: dict, adapter: Path, chain: list[dict], request: ExportRequest, weights: dict,
                    entry: dict, evaluation: dict | None) -> dict:
    """``playpen_export.json``: what was merged (the adapter and the manifests of its chain, by hash), how, and
    the registry entry written."""
    return {
        "format": 1, "model": tuned["model_name"], "name": entry["model_name"], "base": tuned["huggingface_id"],
        "adapter": str(adapter), "adapter_manifest_sha256": _sha256(adapter / manifest_io.MANIFEST_NAME),
        "chain": [{"learner": (step["manifest"] or {}).get("learner"), "adapter": step["adapter"],
                   "manifest_sha256": step["manifest_sha256"]} for step in chain],
        "merge": {"lora_scale": request.lora_scale, "computed_in": "float32", "dtype": request.dtype, **weights},
        "registry_entry": without_secrets(entry), "evaluation": evaluation and evaluation["source"],
        "push_to_hub": request.push_to_hub, "versions": manifest_io.library_versions(),
        "command_line": request.command_line, "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def check_request(request: ExportRequest) -> tuple[dict, Path, str]:
    """Refuse bad input before anything loads: ``(tuned registry entry, adapter dir, name of the merged model)``."""
    from playpen.api import find_model
    from playpen_tune.adapters import check_adapter_base, check_adapter_files

    if request.dtype not in DTYPES:
        raise PlaypenError(f"--dtype {request.dtype!r} is not one of {', '.join(DTYPES)}")
    if not (math.isfinite(request.lora_scale) and 0 <= request.lora_scale <= 1):
        raise PlaypenError(f"--lora_scale must be between 0 (the base) and 1 (the adapter as trained), "
                           f"got {request.lora_scale}")
    if request.push_to_hub:
        check_can_push(request.push_to_hub)
    tuned = find_model(request.model).to_dict()
    config = tuned.get("model_config") or {}
    if tuned.get("backend") != BACKEND_NAME or "peft_model" not in config:
        raise PlaypenError(f"'{request.model}' (backend {tuned.get('backend')}) is not a model tuned by playpen; "
                           f"export merges the adapter of a {BACKEND_NAME} entry (playpen learn, playpen register)")
    adapter = Path(config["peft_model"])
    if not adapter.is_dir():
        raise PlaypenError(f"model '{request.model}': adapter directory {adapter} does not exist")
    check_adapter_files(adapter, bool(config.get("allow_pickle")))
    check_adapter_base(adapter, tuned["huggingface_id"])
    name = validate_model_name(request.name or f"{request.model}-merged")
    if name == request.model:
        raise PlaypenError(f"the name '{name}' is the tuned model's own entry; choose another --name")
    check_name_is_free(name, tuned, overwrite=request.overwrite, replaceable=())  # a tuned model's entry too
    out = refuse_file(request.output_dir, "--output_dir")
    if out.exists() and any(out.iterdir()) and not request.overwrite:
        raise PlaypenError(f"--output_dir {out} is not empty; choose another --output_dir, or pass --overwrite "
                           f"(the earlier files move to {out.name}.previous-<time>/)")
    return tuned, adapter.resolve(), name


def adapter_chain(adapter: Path) -> list[dict]:
    """The learners that trained ``adapter``, first one first: ``{"adapter", "manifest", "manifest_sha256"}``
    each, following the manifests' ``parent_adapter``. An adapter without manifest ends the chain."""
    chain, seen, current = [], set(), Path(adapter)
    while current is not None and current.resolve() not in seen:
        seen.add(current.resolve())
        manifest = manifest_io.read_manifest(current)
        chain.append({"adapter": str(current), "manifest": manifest,
                      "manifest_sha256": _sha256(current / manifest_io.MANIFEST_NAME)})
        parent = (manifest or {}).get("parent_adapter")
        current = Path(parent) if parent else None
    return chain[::-1]


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def load_adapter_on_dequantizable_base(tuned: dict, adapter: Path):
    """The base loaded as the adapter was trained (its 4-bit settings, fp32 compute) with the adapter on top."""
    from peft import PeftModel

    from playpen_tune.credentials import hub_token
    from playpen_tune.quantization import DEFAULT_QUANTIZATION, load_base_model

    config = tuned["model_config"]
    settings = dict(manifest_io.trained_quantization(adapter) or config.get("quantization") or DEFAULT_QUANTIZATION)
    settings["bnb_4bit_compute_dtype"] = "float32"  # the merge is computed in fp32
    allow_pickle = bool(config.get("allow_pickle"))
    base, effective = load_base_model(tuned["huggingface_id"], settings,
                                      trust_remote_code=bool(config.get("trust_remote_code")),
                                      allow_pickle=allow_pickle, token=hub_token(tuned))
    model = PeftModel.from_pretrained(base, str(adapter), use_safetensors=not allow_pickle)
    return model.eval(), effective


def write_merged_model(directory: Path, tuned: dict, adapter: Path, request: ExportRequest) -> dict:
    """Write weights (sharded safetensors), config, tokenizer with its chat template and generation config.

    Returns facts for the manifest: the base's quantization, tensors, parameters and shards written.
    """
    import torch
    from huggingface_hub import save_torch_state_dict
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    from playpen_tune.credentials import hub_token
    from playpen_tune.merging import merged_weights

    model, quantization = load_adapter_on_dequantizable_base(tuned, adapter)
    dtype = getattr(torch, request.dtype)
    state = {name: tensor.detach().to("cpu").contiguous()
             for name, tensor in merged_weights(model, dtype, request.lora_scale)}
    del model
    save_torch_state_dict(state, directory, max_shard_size=request.max_shard_size, metadata={"format": "pt"})
    trust = bool(tuned["model_config"].get("trust_remote_code"))
    token = hub_token(tuned)
    config = AutoConfig.from_pretrained(tuned["huggingface_id"], trust_remote_code=trust, token=token)
    if hasattr(config, "quantization_config"):  # a pre-quantized base: the merged weights are not quantized
        del config.quantization_config
    config.dtype = request.dtype
    config.save_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained(str(adapter), trust_remote_code=trust)  # saved with the adapter
    tokenizer.save_pretrained(directory)
    try:
        generation = GenerationConfig.from_pretrained(tuned["huggingface_id"], token=token)
    except OSError:  # the base has no generation_config.json
        generation = GenerationConfig.from_model_config(config)
    generation.eos_token_id = end_of_turn_ids(generation.eos_token_id, tokenizer.eos_token_id)
    if generation.pad_token_id is None:
        pad = tokenizer.pad_token_id
        generation.pad_token_id = pad if pad is not None else tokenizer.eos_token_id
    generation.save_pretrained(directory)
    return {"base_quantization": quantization, "tensors": len(state),
            "parameters": sum(tensor.numel() for tensor in state.values()),
            "shards": len(list(directory.glob("*.safetensors")))}


def end_of_turn_ids(eos, end_of_turn: int | None):
    """The generation config's eos ids plus the tokenizer's end-of-turn token, so generation stops at each turn."""
    ids = [eos] if isinstance(eos, int) else list(eos or [])
    if end_of_turn is not None and end_of_turn not in ids:
        ids.append(end_of_turn)
    return ids[0] if len(ids) == 1 else ids


def merged_entry(name: str, tuned: dict, directory: Path) -> dict:
    """The ``huggingface_local`` registry entry of the merged model: the tuned entry's metadata and chat
    settings (templates, eos to cull, chat template kwargs), loading from ``directory``."""
    config = {key: value for key, value in tuned["model_config"].items() if key not in DROPPED_CONFIG_KEYS}
    entry = {"model_name": name, "backend": "huggingface_local", "huggingface_id": str(directory)}
    entry.update({key: tuned[key] for key in COPIED_KEYS if key in tuned})
    entry["base_model"] = tuned.get("base_model", tuned["model_name"])
    entry["model_config"] = config
    return entry


def _move_into_place(staging: Path, out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        aside = out.with_name(f"{out.name}.previous-{time.strftime('%Y%m%d-%H%M%S')}")
        out.rename(aside)
        print(f"note: the earlier contents of {out} moved to {aside}")
    elif out.exists():
        out.rmdir()
    staging.rename(out)


# ----------------------------------------------------------------------------- evaluation numbers

def evaluation_numbers(results_dir: Path | None, tuned: dict) -> dict | None:
    """The tuned model's val.json and its base's from the same eval, for the model card, or None.

    ``results_dir``: the ``-r`` of ``playpen eval``; without it the newest ``playpen-eval/*/`` holding
    ``<model>.val.json`` (eval's default place). A named directory without that file is an error.
    """
    model = tuned["model_name"]
    if results_dir is not None:
        path = refuse_file(results_dir, "-r/--results_dir") / f"{model}.val.json"
        if not path.is_file():
            raise PlaypenError(f"{path} does not exist; pass the -r of 'playpen eval {model}', or drop -r")
    else:
        found = sorted(Path("playpen-eval").glob(f"*/{model}.val.json"), key=lambda p: p.stat().st_mtime)
        if not found:
            return None
        path = found[-1]
    base_path = path.with_name(f"{tuned.get('base_model', '')}.val.json")
    return {"source": str(path.resolve()), "tuned": _read_json(path),
            "base": _read_json(base_path) if base_path.is_file() else None, "base_model": tuned.get("base_model")}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise PlaypenError(f"{path} is not valid JSON ({error}); run that eval again or pass another -r") from None


# ----------------------------------------------------------------------------- model card

def model_card(tuned: dict, name: str, chain: list[dict], request: ExportRequest, weights: dict,
               evaluation: dict | None) -> str:
    """README.md: hub metadata, the base, each learner of the chain with its settings and data, the merge, and
    the evaluation against the base where there is one."""
    base = tuned["huggingface_id"]
    lines = ["---", "library_name: transformers", "pipeline_tag: text-generation",
             *([f"base_model: {base}"] if not Path(base).exists() else []),
             "tags:", "- playpen", "- clembench", "- lora-merged", "---", "",
             f"# {name}", "",
             f"`{tuned['model_name']}` merged into its base `{base}` by `playpen export`: a standard transformers "
             f"model (no adapter, no quantization needed).", "",
             "## How it was trained", "",
             f"Base: `{base}`, loaded in 4-bit ({_quantization_text(weights['base_quantization'])}) while "
             "training.", ""]
    for number, step in enumerate(chain, 1):
        lines += _learner_lines(number, step)
    lines += ["## Merge", "",
              f"The adapter's delta (scaled by `lora_scale` {request.lora_scale}) was added to the dequantized base "
              f"in float32, then cast to {request.dtype}: {weights['parameters']:,} parameters in "
              f"{weights['shards']} safetensors shard(s).", ""]
    lines += _evaluation_lines(evaluation)
    return "\n".join(lines).rstrip() + "\n"


def _quantization_text(settings: dict) -> str:
    if not settings.get("load_in_4bit"):
        return "not quantized"
    return (f"{settings.get('bnb_4bit_quant_type')}, double quant {settings.get('bnb_4bit_use_double_quant')}"
            + (", pre-quantized checkpoint" if settings.get("prequantized") else ""))


def _learner_lines(number: int, step: dict) -> list[str]:
    manifest = step["manifest"]
    if manifest is None:
        return [f"{number}. adapter `{step['adapter']}` (no playpen_run.json: how it was trained is not recorded)", ""]
    learner = manifest.get("learner", {})
    config = manifest.get("config", {})
    lora = manifest.get("lora", {})
    targets = lora.get("target_modules")
    settings = [f"{key} {config[key]}" for key in CARD_SETTINGS if config.get(key) is not None]
    lines = [f"{number}. **{learner.get('name')}** (playpen-tune {learner.get('version')}): LoRA r {lora.get('r')}, "
             f"alpha {lora.get('lora_alpha')}, dropout {lora.get('lora_dropout')}, "
             f"{targets if isinstance(targets, str) else f'{len(targets or [])} target modules'}; "
             f"{', '.join(settings)}; {manifest.get('metrics', {}).get('global_step')} steps"]
    data = manifest.get("data", {})
    for source in data.get("sources", []):
        lines.append(f"   - data: `{source.get('source')}` ({source.get('kind')}, {source.get('examples')} examples)")
    if data.get("fingerprint"):
        lines.append(f"   - data fingerprint: `{data['fingerprint']}` ({data.get('total')} examples in all)")
    contamination = data.get("contamination") or {}
    if contamination.get("summary"):
        lines.append(f"   - evaluation instances: {contamination['summary']}")
    return lines + [""]


def _evaluation_lines(evaluation: dict | None) -> list[str]:
    if evaluation is None:
        return ["## Evaluation", "", "No `playpen eval` results were found for this model (pass `-r` with the "
                "results directory of `playpen eval MODEL --baseline BASE`).", ""]
    tuned, base = evaluation["tuned"], evaluation["base"]
    base_name = evaluation["base_model"] if base else None
    lines = ["## Evaluation (clemcore, before the merge)", "",
             f"From `{evaluation['source']}`: split {tuned.get('split')!r} of {tuned.get('split_source')}, "
             f"leaderboard-comparable: {tuned.get('leaderboard_comparable')}.", ""]
    header = "| game | " + (f"{base_name} (base) | " if base else "") + "tuned |" + (" delta |" if base else "")
    lines += [header, "|---|" + ("---:|" * (3 if base else 1))]
    scores = [key for key in ("clemscore", "statscore") if tuned.get(key) is not None]
    rows = [(game, numbers.get("score")) for game, numbers in sorted(tuned.get("games", {}).items())]
    rows += [(key, tuned[key]) for key in scores]
    for game, value in rows:
        if base:
            before = base.get(game) if game in scores else base.get("games", {}).get(game, {}).get("score")
            delta = "-" if before is None or value is None else f"{value - before:.2f}"
            lines.append(f"| {game} | {_number(before)} | {_number(value)} | {delta} |")
        else:
            lines.append(f"| {game} | {_number(value)} |")
    for game in sorted(tuned.get("failed_games", {})):
        lines.append(f"| {game} | " + ("- | " if base else "") + "FAILED |" + (" - |" if base else ""))
    return lines + [""]


def _number(value) -> str:
    return "-" if value is None else f"{value:.2f}"


# ----------------------------------------------------------------------------- hub

def check_can_push(repo_id: str) -> None:
    """Before any work: the hub is not switched off and a token exists (its value is never shown)."""
    from huggingface_hub import get_token

    from playpen.api import TRUE_WORDS

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE_WORDS:
        raise PlaypenError(f"--push_to_hub {repo_id}: the Hugging Face Hub is switched off (HF_HUB_OFFLINE); "
                           f"unset it on a machine with network, or export without --push_to_hub")
    if not get_token():
        raise PlaypenError(f"--push_to_hub {repo_id} needs a Hugging Face token with write access: set HF_TOKEN "
                           f"or run 'hf auth login'")


def push_to_hub(directory: Path, repo_id: str, private: bool) -> None:
    """Create the repository (if needed) and upload the exported directory; a failure is one error line."""
    from huggingface_hub import HfApi, get_token

    token = get_token()
    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=str(directory),
                                   commit_message=f"playpen export of {directory.name}", ignore_patterns=[EXPORT_LOG])
    except Exception as error:  # network, permissions, a bad repo id: the export itself is complete
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if token:
            message = message.replace(token, "<redacted>")
        raise PlaypenError(f"pushing {directory} to the hub as {repo_id} failed ({type(error).__name__}: {message}); "
                           f"the export and its registry entry are complete: push it later with "
                           f"'hf upload {repo_id} {directory}'") from None
    print(f"pushed {directory} to https://huggingface.co/{repo_id} ({'private' if private else 'public'}; "
          f"commit {getattr(commit, 'oid', '')})")
