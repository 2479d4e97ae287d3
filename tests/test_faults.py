"""Faults of the machine: a full disk, a read-only directory, two evals into one place, Ctrl-C/SIGTERM.

Full and read-only filesystems are real tmpfs mounts (the tests need root to mount them); the
concurrent and interrupted runs are real ``playpen`` processes.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import snapshot

LEARN = ["learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", "data.json", "--max_length", "64",
         "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1", "--logging_steps", "5"]
EVAL = ["eval", "tiny", "-g", "wordecho", "-i", "instances_heldout", "--all_instances", "-L", "8", "-b", "1"]
ROWS = [{"messages": [{"role": "user", "content": f"Say the word number {i}."},
                      {"role": "assistant", "content": f"word {i}"}]} for i in range(16)]


@pytest.fixture
def mount_tmpfs(tmp_path):
    """``mount_tmpfs(name, size, read_only=False)``: a real tmpfs of ``size`` bytes at ``tmp_path/name``."""
    mounted = []

    def mount(name: str, size: int, read_only: bool = False) -> Path:
        point = tmp_path / name
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=False)


def fill(directory: Path) -> None:
    """Write into ``directory`` until its filesystem is full."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as error:
        assert error.errno == 28
    finally:
        os.close(fd)
    assert os.statvfs(directory).f_bavail == 0


def one_error_line(result) -> str:
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert result.code == 2, result
    assert "Traceback" not in result.err and sum(line.startswith("error:") for line in lines) == 1, result
    return next(line for line in lines if line.startswith("error:"))


@pytest.fixture
def data(workdir) -> Path:
    from playpen_tune.games import write_game_registry

    (workdir / "data.json").write_text(json.dumps(ROWS))
    write_game_registry(workdir)
    return workdir


def test_register_on_a_full_disk_is_one_line_and_keeps_the_registry(data, playpen, mount_tmpfs, monkeypatch):
    assert playpen(*LEARN, "--max_steps", "1", "--name", "tuned").code == 0
    adapter = (data / "models" / "tuned").resolve()
    disk = mount_tmpfs("disk", 256 * 1024)
    (disk / "model_registry.json").write_bytes((data / "model_registry.json").read_bytes())
    fill(disk)
    before = snapshot(disk)
    monkeypatch.chdir(disk)
    line = one_error_line(playpen("register", "again", "--base", "tiny", "--adapter", adapter))
    assert f"cannot write {disk / 'model_registry.json'}" in line, line  # the file itself or its .bak
    assert "no space left" in line and "free some space" in line
    after = {name: data for name, data in snapshot(disk).items() if name != "model_registry.json.lock"}
    assert after == before  # the registry, byte for byte, and no temporary file left


def test_learn_on_a_disk_that_fills_up_leaves_no_adapter(data, playpen, mount_tmpfs, monkeypatch):
    from transformers import Trainer

    disk = mount_tmpfs("disk", 16 * 2**20)
    out = disk / "run"
    train = Trainer.train

    def train_then_fill(self, *args, **kwargs):  # another program fills the disk while we train ...
        result = train(self, *args, **kwargs)
        fill(disk)  # ... leaving room for the adapter (tmpfs counts 4 KiB pages), not for the tokenizer after it
        adapter_pages = -(-(out / "checkpoint-2" / "adapter_model.safetensors").stat().st_size // 4096)
        filler = disk / "filler"
        os.truncate(filler, filler.stat().st_size - (adapter_pages + 3) * 4096)
        return result

    monkeypatch.setattr(Trainer, "train", train_then_fill)
    registry = (data / "model_registry.json").read_bytes()
    line = one_error_line(playpen(*LEARN, "--max_steps", "2", "--save_steps", "1", "--output_dir", out))
    assert str(out) in line and "free some space" in line and "--output_dir" in line, line
    assert not (out / "adapter_model.safetensors").exists() and not (out / "playpen_run.json").exists()
    assert (out / "checkpoint-2" / "trainer_state.json").is_file()  # the checkpoints stay
    assert (data / "model_registry.json").read_bytes() == registry
    (disk / "filler").unlink()
    result = playpen("register", "x", "--base", "tiny", "--adapter", out)
    assert result.code == 2 and "holds no adapter" in result.err  # the run is recognisably incomplete


def test_learn_refuses_before_training_when_checkpoints_clearly_do_not_fit(data, playpen, mount_tmpfs):
    disk = mount_tmpfs("disk", 128 * 1024)
    result = playpen(*LEARN, "--max_steps", "20", "--save_steps", "1", "--output_dir", disk / "run")
    line = one_error_line(result)
    assert "need about" in line and "--save_total_limit" in line and "checkpoint(s)" in line, line
    assert "{'loss'" not in result.out  # no step was trained (the Trainer logs {'loss': ...} per step)
    assert list(disk.iterdir()) == []


def test_eval_into_a_full_disk_is_one_line_and_claims_no_result(data, playpen, mount_tmpfs):
    disk = mount_tmpfs("disk", 256 * 1024)
    fill(disk)
    line = one_error_line(playpen(*EVAL, "-r", disk))
    assert f"cannot write {disk}" in line and "no space left" in line and "choose another -r" in line, line
    assert not list(disk.rglob("*.val.json")) and not list(disk.rglob("scores.json"))


def test_read_only_output_and_results_dirs_are_one_line(data, playpen, mount_tmpfs):
    read_only = mount_tmpfs("ro", 2**20, read_only=True)
    registry = (data / "model_registry.json").read_bytes()
    line = one_error_line(playpen(*LEARN, "--max_steps", "1", "--output_dir", read_only / "run"))
    assert "Read-only file system" in line and str(read_only / "run") in line and "--output_dir" in line, line
    line = one_error_line(playpen(*EVAL, "-r", read_only))
    assert "Read-only file system" in line and str(read_only) in line and "-r" in line, line
    assert (data / "model_registry.json").read_bytes() == registry
    assert not (data / "models").exists()


def _env() -> dict:
    root = str(Path(__file__).resolve().parents[1])
    return dict(os.environ, PYTHONUNBUFFERED="1",
                PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))


def _start(workdir: Path, argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "playpen", *argv], cwd=workdir, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_line(proc: subprocess.Popen, text: str) -> None:
    for line in proc.stdout:
        if text in line:
            return
    raise AssertionError(f"'{text}' never printed; stderr: {proc.stderr.read()[-3000:]}")


def _episodes(results: Path) -> int:
    return len(list((results / "clem" / "tiny" / "wordecho").glob("*/instance_*/scores.json")))


def test_a_second_eval_into_the_same_results_is_refused_naming_the_first(data):
    results = data / "results"
    first = _start(data, [*EVAL, "-r", "results"])
    _wait_for_line(first, "loading tiny once")  # it holds the lock now; keep it there
    first.send_signal(signal.SIGSTOP)
    try:
        second = subprocess.run([sys.executable, "-m", "playpen", *EVAL, "-r", "results"], cwd=data, env=_env(),
                                capture_output=True, text=True, timeout=300)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2, second.stderr[-3000:]
    assert f"in use by playpen process {first.pid}" in second.stderr and "pass another -r" in second.stderr
    assert "playing" not in second.stdout and _episodes(results) == 0
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    assert _episodes(results) == 12
    again = subprocess.run([sys.executable, "-m", "playpen", *EVAL, "-r", "results"], cwd=data, env=_env(),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already played; scoring only" in again.stdout, again.stderr[-3000:]


def _interrupted_line(err: str) -> str:
    """The one 'interrupted (SIG...); resume with: ...' line (a progress bar may precede it without a newline)."""
    (line,) = re.findall(r"interrupted \(SIG\w+\); resume with: [^\r\n]*", err)
    return line


def _resume(proc_err: str, workdir: Path) -> subprocess.CompletedProcess:
    """Run the command the 'interrupted; resume with: ...' line names."""
    command = shlex.split(_interrupted_line(proc_err).split("resume with: ", 1)[1])
    assert command[0] == "playpen"
    return subprocess.run([sys.executable, "-m", "playpen", *command[1:]], cwd=workdir, env=_env(),
                          capture_output=True, text=True, timeout=600)


def test_sigterm_during_eval_says_how_to_resume_and_the_resume_finishes(data):
    proc = _start(data, EVAL)  # no -r: the resume command must name the timestamped directory
    _wait_for_line(proc, "loaded tiny in ")  # the model is loaded: the episodes are being played
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert "interrupted (SIGTERM); resume with: playpen eval tiny" in err and " -r playpen-eval/" in err, err
    assert not list(data.glob("playpen-eval/*/tiny.val.json"))  # nothing claims to be a result
    resumed = _resume(err, data)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (val,) = data.glob("playpen-eval/*/tiny.val.json")
    assert json.loads(val.read_text())["games"]["wordecho"]["episodes"] == 12
    assert _episodes(val.parent) == 12


@pytest.mark.slow
def test_ctrl_c_during_learn_keeps_checkpoints_and_the_resume_finishes(data):
    out = data / "models" / "tiny-sft_qlora"
    proc = _start(data, [*LEARN, "--max_steps", "60", "--save_steps", "10"])
    deadline = time.time() + 300
    while not (out / "checkpoint-10" / "trainer_state.json").exists():
        assert proc.poll() is None and time.time() < deadline, "training ended before a checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    line = _interrupted_line(err)
    assert line.startswith("interrupted (SIGINT); resume with: playpen learn -l sft_qlora")
    assert line.endswith(" --resume")
    assert (out / "checkpoint-10" / "trainer_state.json").is_file()
    assert not (out / "adapter_model.safetensors").exists() and not (out / "playpen_run.json").exists()
    resumed = _resume(err, data)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    manifest = json.loads((out / "playpen_run.json").read_text())
    assert manifest["metrics"]["global_step"] == 60 and "checkpoint-" in manifest["resumed_from"]


def test_a_scores_file_cut_short_does_not_count_as_scored(tmp_path):
    from playpen.playing import scored_episodes

    for game_id, text in ((0, '{"episode scores": {}}'), (1, '{"episode sco')):
        episode = tmp_path / "tiny" / "wordecho" / "heldout" / f"instance_{game_id:05d}"
        episode.mkdir(parents=True)
        (episode / "scores.json").write_text(text)
    assert scored_episodes(tmp_path, "tiny", "wordecho") == {("heldout", 0)}


def test_an_interrupt_before_the_first_checkpoint_says_it_starts_again(tmp_path):
    """A learn interrupted before any checkpoint has nothing to resume: the line says 'start again', not 'resume'."""
    from playpen import faults
    from playpen.cli import interrupted_line
    from playpen.learning import resume_changes

    argv = ["playpen", "learn", "-l", "sft_qlora", "-m", "tiny", "--dataset", "d.json"]
    run = tmp_path / "models" / "tiny-sft_qlora"
    lines = {}
    for state in ("nothing written", "started, no checkpoint", "checkpoint saved"):
        if state == "started, no checkpoint":
            run.mkdir(parents=True)
            (run / "train.log").write_text("")
        if state == "checkpoint saved":
            (run / "checkpoint-10").mkdir()
        lines[state] = interrupted_line(faults.Interrupted(signal.SIGINT, resume_changes(run)), argv)
    start_again = "interrupted (SIGINT); nothing to resume from yet (no checkpoint was saved), start again with: "
    assert lines["nothing written"] == start_again + shlex.join(argv)
    assert lines["started, no checkpoint"] == start_again + shlex.join(argv + ["--overwrite"])
    assert lines["checkpoint saved"] == "interrupted (SIGINT); resume with: " + shlex.join(argv + ["--resume"])


def test_a_results_lock_names_its_holder_and_leaves_no_file(tmp_path):
    """The lock of a results directory refuses a second holder, naming the first one's pid; it is gone afterwards."""
    from playpen.errors import PlaypenError
    from playpen.faults import exclusive

    lock = tmp_path / "results" / ".tiny.lock"
    with exclusive(lock, "results/tiny", "pass another -r"):
        assert lock.read_text() == f"{os.getpid()}\n"
        with pytest.raises(PlaypenError, match=f"in use by playpen process {os.getpid()} "):
            with exclusive(lock, "results/tiny", "pass another -r"):
                pass
        assert lock.exists()
    assert not lock.exists() and sorted(p.name for p in lock.parent.iterdir()) == []
