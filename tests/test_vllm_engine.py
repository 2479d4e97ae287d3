"""``playpen eval|play --engine vllm`` against real vLLM servers on the CPU (vLLM's own environment, see
``.ci/build-vllm-env``): the same episodes as transformers, adapters loaded at run time, a server that
playpen starts is stopped, and each server fault is one ``error:`` line."""
from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from playpen_tune.games import DEMO_SPLIT_FILE
from tests.conftest import VLLM_TEST_ARGS, CliResult, random_lora_adapter

# the demo game's 12 validation instances, each a different word to echo
GAME = ["-g", "wordecho", "--split_source", str(DEMO_SPLIT_FILE), "-L", "8"]


@pytest.fixture
def vllm_workdir(tmp_path, monkeypatch, vllm_base) -> Path:
    """A cwd whose registry has ``vbase`` (the tiny vLLM-servable model) and ``vbase-lora`` (it with a LoRA
    adapter, loaded by clemcore's HF backend with --engine hf), and the demo game."""
    from playpen_tune.games import write_game_registry
    from playpen_tune.tiny import registry_entry

    monkeypatch.chdir(tmp_path)
    adapter = random_lora_adapter(vllm_base, tmp_path / "adapter")
    tuned = registry_entry("vbase-lora", vllm_base)
    tuned["model_config"]["peft_model"] = str(adapter)
    (tmp_path / "model_registry.json").write_text(json.dumps([registry_entry("vbase", vllm_base), tuned]))
    write_game_registry(tmp_path)
    return tmp_path


def episodes(results: Path, model: str) -> dict[str, tuple[list[str], dict]]:
    """``{instance: (the model's answers in order, the episode's scores)}`` of one model's wordecho episodes."""
    played = {}
    for interactions in sorted((results / "clem" / model / "wordecho").glob("*/instance_*/interactions.json")):
        turns = json.loads(interactions.read_text())["turns"]
        answers = [event["action"]["content"] for turn in turns for event in turn
                   if event["from"].startswith("Player") and event["to"] == "GM"]
        scores = json.loads(interactions.with_name("scores.json").read_text())["episode scores"]
        played[interactions.parent.name] = (answers, scores)
    return played


def port_of(log: Path) -> int:
    command = log.read_text().splitlines()[0].split()
    return int(command[command.index("--port") + 1])


def test_eval_on_vllm_plays_the_episodes_transformers_plays(vllm_workdir, playpen, vllm_python):
    """Greedy, the tuned model and its base play the same answers and outcomes on a server that playpen starts
    (the adapter loaded at run time) as in transformers; val.json says how; the server is stopped after."""
    on_hf = playpen("eval", "vbase-lora", *GAME, "--baseline", "vbase", "-r", "hf")
    assert on_hf.code == 0, on_hf
    on_vllm = playpen("eval", "vbase-lora", *GAME, "--baseline", "vbase", "-r", "vl", "--engine", "vllm",
                      "--vllm_python", vllm_python, "--vllm_args", " ".join(VLLM_TEST_ARGS))
    assert on_vllm.code == 0, on_vllm
    assert "vLLM server http://127.0.0.1:" in on_vllm.out and "ready after" in on_vllm.out
    for model in ("vbase-lora", "vbase"):
        hf, vl = episodes(vllm_workdir / "hf", model), episodes(vllm_workdir / "vl", model)
        assert len(vl) == 12 and vl == hf, model
    tuned, base = episodes(vllm_workdir / "vl", "vbase-lora"), episodes(vllm_workdir / "vl", "vbase")
    assert tuned != base  # the adapter was served: it changes the answers
    settings = json.loads((vllm_workdir / "vl" / "vbase-lora.val.json").read_text())["model_settings"]
    assert settings["engine"] == "vllm" and settings["served_base"] == settings["weights"]
    assert settings["served_quantization"].startswith("none") and settings["served_adapter"].endswith("adapter")
    assert json.loads((vllm_workdir / "hf" / "vbase-lora.val.json").read_text())["model_settings"]["engine"] == "hf"
    from playpen.serving import check_port_free

    check_port_free(port_of(vllm_workdir / "vl" / "vllm-server.log"))  # the started server no longer listens


def test_play_on_a_running_vllm_server_loads_the_adapter_and_resumes(vllm_workdir, playpen, vllm_server):
    """``playpen play --engine vllm --vllm_url``: the adapter is loaded at run time, the episodes are clemcore's;
    a second run into the same directory plays nothing again (resume as on hf) and leaves the server running;
    resuming there with ``--engine hf`` is refused."""
    args = ["play", "vbase-lora", *GAME, "--split", "validation", "-r", "out", "--engine", "vllm",
            "--vllm_url", vllm_server.url]
    first = playpen(*args)
    assert first.code == 0, first
    assert vllm_server.served_adapters()["vbase-lora"] == str(vllm_workdir / "adapter")
    assert len(episodes(vllm_workdir / "out", "vbase-lora")) == 12
    again = playpen(*args)
    assert again.code == 0 and "already played" in again.out, again
    assert vllm_server.alive()
    on_hf = playpen(*args[:args.index("--engine")])  # episodes of another engine are not mixed in
    assert on_hf.code == 2 and "played with a different engine" in on_hf.err, on_hf


def one_error(result) -> str:
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert result.code == 2 and len(errors) == 1, result
    return errors[0]


def test_vllm_server_faults_are_one_error_line(vllm_workdir, playpen, vllm_server, tiny_model_dir, tmp_path):
    """Unreachable, dying, wrong base, an adapter above the server's LoRA rank or with LoRA biases, a port in use,
    options without the engine: each one line that says what to change, and no episode is written."""
    from playpen_tune.tiny import registry_entry

    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    unused = free.getsockname()[1]
    free.close()
    big = registry_entry("vbase-r32", Path(vllm_server.base))
    big["model_config"]["peft_model"] = str(random_lora_adapter(Path(vllm_server.base), tmp_path / "r32", rank=32))
    registry = json.loads((vllm_workdir / "model_registry.json").read_text())
    biased = registry_entry("vbase-bias", Path(vllm_server.base))
    biased["model_config"]["peft_model"] = str(random_lora_adapter(Path(vllm_server.base), tmp_path / "bias",
                                                                   bias="lora_only"))
    registry += [big, biased, registry_entry("other", tiny_model_dir)]
    (vllm_workdir / "model_registry.json").write_text(json.dumps(registry))
    eval_ = ["eval", *GAME, "--engine", "vllm"]

    assert "does not answer" in one_error(playpen(*eval_, "vbase", "-r", "a", "--vllm_url", f"http://127.0.0.1:{unused}"))
    dying = one_error(playpen(*eval_, "vbase", "-r", "b", "--vllm_python", "/bin/false"))
    assert "exited with code 1 before it was ready (no output); see b/vllm-server.log" in dying
    wrong = one_error(playpen(*eval_, "other", "-r", "c", "--vllm_url", vllm_server.url))
    assert f"serves {vllm_server.base}, not {tiny_model_dir.resolve()}" in wrong
    rank = one_error(playpen(*eval_, "vbase-r32", "-r", "d", "--vllm_url", vllm_server.url))
    assert "cannot load the adapter" in rank and "--max-lora-rank" in rank
    bias = one_error(playpen(*eval_, "vbase-bias", "-r", "d2", "--vllm_url", vllm_server.url))
    assert "cannot load the adapter" in bias and "train with bias none" in bias
    port = vllm_server.url.rsplit(":", 1)[1]
    in_use = one_error(playpen(*eval_, "vbase", "-r", "e", "--vllm_python", "/bin/false", "--vllm_port", port))
    assert f"--vllm_port {port} is in use" in in_use
    without_engine = playpen("eval", "vbase", *GAME, "--vllm_url", vllm_server.url)
    assert "applies only with --engine vllm" in one_error(without_engine)
    assert not list(vllm_workdir.glob("*/*/wordecho/*/instance_*/interactions.json"))
    assert vllm_server.alive()


def server_started_by(parent: int) -> int:
    """The pid of the vLLM server that process ``parent`` started (Linux ``/proc``): its own process group."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:  # a process that ended while we looked
            continue
        if ppid == parent and b"vllm.entrypoints.openai.api_server" in command:
            return int(stat.parent.name)
    raise AssertionError(f"process {parent} runs no vLLM server")


@pytest.mark.slow
def test_a_vllm_server_dying_mid_eval_is_one_error_line_and_the_rerun_plays_only_the_rest(vllm_workdir, playpen,
                                                                                           vllm_python, vllm_server):
    """The server that ``playpen eval --engine vllm`` started is killed (SIGKILL, its whole process group) after the
    first episode is recorded: eval ends with code 2 and one ``error:`` line that says how to resume, the episodes
    played before are scored and kept; the same eval on a live server (the session's, via ``--vllm_url``) plays
    only the episodes that are missing and leaves the others as they were."""
    eval_ = ["eval", "vbase", *GAME, "-r", "out", "-b", "1", "--engine", "vllm"]  # -b 1: one episode at a time
    out, err = vllm_workdir / "eval.out", vllm_workdir / "eval.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        run = subprocess.Popen([sys.executable, "-m", "playpen", *eval_, "--vllm_python", vllm_python,
                                "--vllm_args", " ".join(VLLM_TEST_ARGS)], stdout=stdout, stderr=stderr)
    played = vllm_workdir / "out" / "clem" / "vbase" / "wordecho"
    try:
        deadline = time.monotonic() + 600
        while not list(played.glob("*/instance_*/interactions.json")) and run.poll() is None:
            assert time.monotonic() < deadline, "no episode was recorded in 10 minutes"
            time.sleep(0.01)
        os.killpg(server_started_by(run.pid), signal.SIGKILL)
        code = run.wait(timeout=300)  # not a hang on the dead server
    finally:
        if run.poll() is None:  # a failed check must not leave eval (and the server it started) running
            run.terminate()
            run.wait(timeout=120)
    died = CliResult(code, out.read_text(), err.read_text())
    assert "Traceback" not in died.err, died.err
    line = one_error(died)
    assert "the vLLM server at http://127.0.0.1:" in line and "stopped answering mid-run" in line, line
    assert "run the same command again with -r to resume" in line, line
    kept = {path: path.read_bytes() for path in played.glob("*/instance_*/*.json")}
    scored = {path.parent.name for path in kept if path.name == "scores.json"}
    assert 1 <= len(scored) < 12, f"{len(scored)} episodes scored before the server died"
    failed = json.loads((vllm_workdir / "out" / "vbase.val.json").read_text())["failed_games"]
    assert f"{12 - len(scored)} of 12 episodes were not played and scored" in failed["wordecho"], failed

    resumed = playpen(*eval_, "--vllm_url", vllm_server.url)
    assert resumed.code == 0, resumed
    assert f"playing {12 - len(scored)} episode(s)" in resumed.out, resumed.out
    assert len(episodes(vllm_workdir / "out", "vbase")) == 12
    assert all(path.read_bytes() == data for path, data in kept.items() if path.parent.name in scored)


class DropsAdapterLoads(http.server.BaseHTTPRequestHandler):
    """A server that answers as vLLM does until it is asked to load an adapter, then drops the connection
    without an answer (a vLLM process that died between its health check and the adapter)."""

    base = ""

    def do_GET(self):
        body = b"" if self.path == "/health" else json.dumps({"data": [{"id": self.base, "root": self.base}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.close_connection = True  # no status line: the client sees the connection end

    def log_message(self, *args):
        pass


@pytest.fixture
def dropping_server(vllm_base):
    handler = type("Handler", (DropsAdapterLoads,), {"base": str(vllm_base)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_server_that_stops_answering_before_the_adapter_is_loaded_is_one_error_line(vllm_workdir, playpen,
                                                                                        dropping_server):
    """Every request to the server, not only completions, turns a connection that ends without an answer
    into the 'stopped answering' line: eval says how to resume its episodes, GRPO how to resume its run, and
    neither writes an episode or a registry entry."""
    registry = (vllm_workdir / "model_registry.json").read_bytes()
    evaluated = playpen("eval", "vbase-lora", *GAME, "-r", "out", "--engine", "vllm", "--vllm_url", dropping_server)
    assert "Traceback" not in evaluated.err, evaluated.err
    line = one_error(evaluated)
    assert f"the vLLM server at {dropping_server} stopped answering mid-run" in line, line
    assert "run the same command again with -r to resume" in line, line
    assert not list(vllm_workdir.glob("out/*/*/wordecho/*/instance_*/interactions.json"))

    learned = playpen("learn", "-l", "grpo_qlora", "-m", "vbase", "-g", "wordecho", "--split_source", DEMO_SPLIT_FILE,
                      "--num_generations", "2", "--per_device_train_batch_size", "2", "--max_tokens", "6",
                      "--max_steps", "1", "--use_vllm", "--vllm_server_base_url", dropping_server)
    assert "Traceback" not in learned.err, learned.err
    line = one_error(learned)
    assert f"the vLLM server at {dropping_server} stopped answering mid-run" in line, line
    assert "continue with --resume" in line and "-r to resume" not in line, line
    assert (vllm_workdir / "model_registry.json").read_bytes() == registry
