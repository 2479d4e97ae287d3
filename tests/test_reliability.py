"""Failing safely: a catalogue of user mistakes, training resume after a kill, concurrent
learns, and secrets that never reach files a run writes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import snapshot

RELAY_RESULTS = "<relay results>"  # replaced by the relay_results fixture's directory
LEGACY_CONTRADICTION = "tuning:\n  type: sft\nlearning_rate: 1e-4\ntraining:\n  learning_rate: 2e-4\n"


def prepare_inputs(d: Path) -> None:
    """Files the mistakes below point at."""
    (d / "ok.json").write_text(json.dumps([{"messages": [{"role": "user", "content": "hi"},
                                                         {"role": "assistant", "content": "hello"}]}]))
    (d / "prompt-completion.json").write_text(json.dumps([{"prompt": "hi", "completion": "hello"}]))
    (d / "broken.json").write_text('[{"messages": [}]')
    (d / "broken.jsonl").write_text('{"messages": []}\n{"messages": [\n')
    (d / "nocols.json").write_text(json.dumps([{"text": "just text"}]))
    (d / "empty-results").mkdir()
    (d / "legacy.yaml").write_text(LEGACY_CONTRADICTION)
    (d / "bad.yaml").write_text("learning_rate: [1e-4\n")
    (d / "legacy-flat.yaml").write_text("tuning:\n  type: sft\ntraining: 5\n")
    (d / "legacy-typo.yaml").write_text("tuning:\n  type: sft\ntraining:\n  batchsize: 4\n")
    for name, base, files in (("wrongbase", "other/model", ["adapter_model.safetensors"]),
                              ("pickled", None, ["adapter_model.bin"])):
        adapter = d / name
        adapter.mkdir()
        (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": base}))
        for file in files:
            (adapter / file).write_bytes(b"\0")
    unfinished = d / "models" / "unfinished-run"  # a run that died before saving its adapter
    unfinished.mkdir(parents=True)
    (unfinished / "playpen_run_identity.json").write_text("{}")
    entries = json.loads((d / "model_registry.json").read_text())
    tiny = next(entry for entry in entries if entry["model_name"] == "tiny")
    entries.append(dict(tiny, model_name="tiny-unfinished", backend="playpen_qlora", base_model="tiny",
                        model_config=dict(tiny["model_config"], peft_model=str(unfinished))))
    (d / "model_registry.json").write_text(json.dumps(entries, indent=2))
    run = d / "models" / "existing-run"
    run.mkdir(parents=True)
    (run / "playpen_run.json").write_text(json.dumps({"learner": {"name": "sft_qlora"}}))
    (run / "checkpoint-5").mkdir()


LEARN = ["learn", "-l", "sft_qlora", "-m", "tiny"]
CATALOGUE = [
    ("unknown learner", ["learn", "-l", "sft", "-m", "tiny"],
     "unknown learner 'sft'; installed learners: dpo_qlora, grpo_qlora, sft_qlora"),
    ("unknown model", ["learn", "-l", "sft_qlora", "-m", "llama", "--dataset", "ok.json"], "unknown model 'llama'"),
    ("unknown field", [*LEARN, "--dataset", "ok.json", "--num_epochs", "2"], "did you mean 'num_train_epochs'"),
    ("wrong value type", [*LEARN, "--dataset", "ok.json", "--learning_rate", "fast"],
     "--learning_rate expects a float value"),
    ("zero steps", [*LEARN, "--dataset", "ok.json", "--max_steps", "0"], "--max_steps must be > 0"),
    ("negative batch size", [*LEARN, "--dataset", "ok.json", "--per_device_train_batch_size", "-2"],
     "--per_device_train_batch_size must be > 0"),
    ("dropout out of range", [*LEARN, "--dataset", "ok.json", "--lora_dropout", "1.5"],
     "--lora_dropout must be in [0, 1)"),
    ("no dataset", [*LEARN], "no training data; pass --dataset"),
    ("missing dataset path", [*LEARN, "--dataset", "./nope.json"], "nope.json"),
    ("hub id while offline", [*LEARN, "--dataset", "allenai/tulu-3-sft-personas-instruction-following"],
     "Hugging Face Hub is unreachable"),
    ("malformed JSON", [*LEARN, "--dataset", "broken.json"], "broken.json"),
    ("malformed JSONL line", [*LEARN, "--dataset", "broken.jsonl"], "broken.jsonl:2"),
    ("missing columns", [*LEARN, "--dataset", "nocols.json"], "nocols.json"),
    ("empty after filters", [*LEARN, "--dataset", RELAY_RESULTS, "--outcomes", "aborted"],
     "--outcomes aborted dropped all"),
    ("no interactions.json", [*LEARN, "--dataset", "empty-results"], "interactions.json"),
    ("adapter of another base", ["register", "mine", "--base", "tiny", "--adapter", "wrongbase"],
     "was trained on 'other/model'"),
    ("pickle adapter", ["register", "mine", "--base", "tiny", "--adapter", "pickled"], "--allow_pickle"),
    ("name with separator", [*LEARN, "--dataset", "ok.json", "--name", "../evil"], "is not allowed"),
    ("name with dots", ["register", "..", "--base", "tiny", "--adapter", "wrongbase"], "is not allowed"),
    ("output dir holds a run", [*LEARN, "--dataset", "ok.json", "--name", "existing-run"],
     "already holds a run of sft_qlora; pass --resume"),
    ("resume without checkpoint", [*LEARN, "--dataset", "ok.json", "--name", "fresh", "--resume"],
     "no complete checkpoint-* directory"),
    ("eval without games", ["eval", "tiny"], "no clemgames found"),
    ("eval unknown game", ["eval", "tiny", "-g", "nosuchgame", "--game_registry"], "no game matches 'nosuchgame'"),
    ("eval unknown experiment", ["eval", "tiny", "-g", "wordecho", "-e", "nosuchexp", "--game_registry"],
     "no instances of experiment 'nosuchexp'"),
    ("name of the base", [*LEARN, "--dataset", "ok.json", "--name", "tiny"], "is the model being tuned"),
    ("name of another model", [*LEARN, "--dataset", "ok.json", "--name", "tiny-bnb-4bit"],
     "a model named 'tiny-bnb-4bit' (backend huggingface_local"),
    ("register over a base", ["register", "tiny-bnb-4bit", "--base", "tiny", "--adapter", "wrongbase"],
     "already registered; choose another --name"),
    ("unknown optimizer", [*LEARN, "--dataset", "ok.json", "--optim", "adamw_fast"],
     "--optim 'adamw_fast' is not known"),
    ("non-finite value", [*LEARN, "--dataset", "ok.json", "--learning_rate", "nan"], "--learning_rate expects a float"),
    ("legacy section not a mapping", [*LEARN, "-c", "legacy-flat.yaml"], "config key 'training' must be a mapping"),
    ("legacy key typo", [*LEARN, "-c", "legacy-typo.yaml"],
     "unknown legacy config key 'training.batchsize'; did you mean 'training.batch_size'?"),
    ("eval unknown model", ["eval", "nosuchmodel"], "unknown model 'nosuchmodel'"),
    ("legacy contradiction", [*LEARN, "-c", "legacy.yaml"], "config sets learning_rate twice"),
    ("bad YAML", [*LEARN, "-c", "bad.yaml"], "is not valid YAML"),
    ("missing config file", [*LEARN, "-c", "nope.yaml"], "config file nope.yaml does not exist"),
    ("bad eval batch size", ["eval", "tiny", "-b", "0"], "--batch_size must be >= 1"),
    ("skip gameplay without results", ["eval", "tiny", "--skip_gameplay"], "pass their directory with -r"),
    ("tuned model without adapter", ["learn", "-l", "sft_qlora", "-m", "tiny-unfinished", "--dataset", "ok.json"],
     "holds no adapter (adapter_model.safetensors): check the path, or train that model again"),
    ("held-out fraction out of range", [*LEARN, "--dataset", "ok.json", "--eval_fraction", "1"],
     "--eval_fraction must be in [0, 1)"),
    ("two held-out sets", [*LEARN, "--dataset", "ok.json", "--eval_fraction", "0.2", "--eval_dataset", "ok.json"],
     "pass only one"),
    ("held-out fraction holds out nothing", [*LEARN, "--dataset", "ok.json", "--eval_fraction", "0.01"],
     "holds out 0; choose a fraction"),
    ("held-out rows of another format", [*LEARN, "--dataset", "ok.json", "--eval_dataset", "prompt-completion.json"],
     "give both in one format"),
]


@pytest.mark.parametrize("case, argv, message", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_user_mistake_exits_2_with_one_line_and_changes_nothing(workdir, playpen, request, case, argv, message):
    prepare_inputs(workdir)
    if RELAY_RESULTS in argv:  # cases that need a clemcore results directory
        results = str(request.getfixturevalue("relay_results"))
        # playing it (first use in the session) is not this command's output
        request.getfixturevalue("capsys").readouterr()
        argv = [results if a == RELAY_RESULTS else a for a in argv]
    if "--game_registry" in argv:  # cases that need the demo game to be known
        from playpen_tune.games import write_game_registry

        write_game_registry(workdir)
        argv = [a for a in argv if a != "--game_registry"]
    before = snapshot(workdir)
    result = playpen(*argv)
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert message in lines[0]
    assert snapshot(workdir) == before


def test_corrupt_registry_is_reported_before_training(workdir, playpen):
    prepare_inputs(workdir)
    (workdir / "model_registry.json").write_text('[{"model_name": "tiny",')
    before = snapshot(workdir)
    result = playpen(*LEARN, "--dataset", "ok.json", "--name", "fresh")
    assert result.code == 2 and "model_registry.json is not valid JSON" in result.err
    assert "playpen will not overwrite it" in result.err
    assert snapshot(workdir) == before


def _learn_cmd(*extra: str) -> list[str]:
    return [sys.executable, "-m", "playpen", *LEARN, "--dataset", "data.json", "--max_length", "64",
            "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1", "--logging_steps", "5",
            *extra]


def _write_data(workdir: Path) -> None:
    from tests.fixture_data import sft_rows, write_json

    write_json(workdir / "data.json", sft_rows(32))


@pytest.mark.slow
def test_killed_run_resumes_from_last_checkpoint(workdir):
    _write_data(workdir)
    out = workdir / "models" / "tiny-sft_qlora"
    proc = subprocess.Popen(_learn_cmd("--max_steps", "200", "--save_steps", "20"), cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "checkpoint-40" / "trainer_state.json").exists():
        assert proc.poll() is None and time.time() < deadline, "training ended before a checkpoint"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "playpen_run.json").exists()
    assert not (json.loads((workdir / "model_registry.json").read_text())[-1]["model_name"]).endswith("sft_qlora")
    done = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    saved_at = {step: (out / f"checkpoint-{step}" / "trainer_state.json").stat().st_mtime_ns for step in done[:-1]}
    resumed = subprocess.run(_learn_cmd("--max_steps", "200", "--save_steps", "20", "--resume"), cwd=workdir,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    manifest = json.loads((out / "playpen_run.json").read_text())
    assert manifest["metrics"]["global_step"] == 200
    assert manifest["resumed_from"].endswith(f"checkpoint-{done[-1]}")
    # training continued from there: earlier checkpoints were neither rewritten nor deleted
    assert {step: (out / f"checkpoint-{step}" / "trainer_state.json").stat().st_mtime_ns
            for step in done[:-1]} == saved_at
    steps = [entry["step"] for entry in manifest["loss_history"]]
    assert steps == sorted(set(steps))


@pytest.mark.slow
def test_two_concurrent_learns_both_land_in_registry(workdir):
    _write_data(workdir)
    procs = [subprocess.Popen(_learn_cmd("--max_steps", "3", "--name", name), cwd=workdir,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for name in ("run-a", "run-b")]
    for proc in procs:
        assert proc.wait() == 0, proc.stderr.read()[-3000:]
    names = [e["model_name"] for e in json.loads((workdir / "model_registry.json").read_text())]
    assert names[:2] == ["tiny", "tiny-bnb-4bit"] and sorted(names[2:]) == ["run-a", "run-b"]


FAKE_KEY = "sk-FAKE-0123456789abcdef-SECRET"
FAKE_HF_TOKEN = "hf_FAKEtoken0123456789SECRET"


@pytest.mark.slow
def test_secrets_never_reach_written_files(workdir):
    _write_data(workdir)
    (workdir / "key.json").write_text(json.dumps({"openai": {"api_key": FAKE_KEY},
                                                  "huggingface": {"api_key": FAKE_HF_TOKEN}}))
    entries = json.loads((workdir / "model_registry.json").read_text())
    entries[0]["model_config"]["requires_api_key"] = True  # learner, backend and clemcore read key.json
    (workdir / "model_registry.json").write_text(json.dumps(entries))
    from playpen_tune.games import write_game_registry

    write_game_registry(workdir)
    env = dict(os.environ, HF_TOKEN=FAKE_HF_TOKEN, OPENAI_API_KEY=FAKE_KEY)
    learn = subprocess.run(_learn_cmd("--max_steps", "2"), cwd=workdir, env=env, capture_output=True, text=True)
    assert learn.returncode == 0, learn.stderr[-3000:]
    ev = subprocess.run([sys.executable, "-m", "playpen", "eval", "tiny-sft_qlora", "-g", "wordecho", "-i",
                         "instances_heldout", "--all_instances", "-L", "4", "-r", "ev"], cwd=workdir, env=env,
                        capture_output=True, text=True)
    assert ev.returncode == 0, ev.stderr[-3000:]
    written = [p for p in workdir.rglob("*") if p.is_file() and p.name != "key.json"]
    assert any(p.name == "playpen_run.json" for p in written) and any(p.name == "clembench.log" for p in written)
    for path in written:
        data = path.read_bytes()
        assert FAKE_KEY.encode() not in data and FAKE_HF_TOKEN.encode() not in data, path
    tuned = json.loads((workdir / "model_registry.json").read_text())[-1]
    assert tuned["model_config"]["requires_api_key"] is True  # the flag is kept, the key is not
    for stream in (learn.stdout, learn.stderr, ev.stdout, ev.stderr):
        assert FAKE_KEY not in stream and FAKE_HF_TOKEN not in stream
