"""A vLLM server for one command: started from a configured interpreter (or attached to with ``--vllm_url``),
waited for, checked, fed LoRA adapters at run time, and always stopped.

vLLM pins its own torch and transformers, so it never runs in playpen's Python: playpen starts
``<vLLM's python> -m vllm.entrypoints.openai.api_server`` (the interpreter of a virtual environment
that has vLLM; ``.ci/build-vllm-env`` builds the CPU one) and talks HTTP to it. Everything a user can
get wrong here (an unreachable or dying server, a port in use, a served model that is not the entry's
base, an adapter the server cannot load) is one :class:`PlaypenError` line that says what to change.
The server's output goes to a log file beside the results; a started server is stopped when the
``with`` block ends, whatever ended it.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from playpen.errors import PlaypenError

PYTHON_VARIABLE = "PLAYPEN_VLLM_PYTHON"  # the interpreter of vLLM's virtual environment (--vllm_python)
SERVER_LOG = "vllm-server.log"
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the --max-lora-rank values vLLM accepts


class ServerError(PlaypenError):
    """The vLLM server cannot be started, reached or used as asked: the command stops (not only a game)."""


@dataclass
class ServerSettings:
    """How to reach or start the server: ``url`` of a running one, else ``python`` (vLLM's interpreter)
    started on ``port`` (0: a free one) with ``quantization`` (e.g. bitsandbytes on a GPU) and ``extra_args``;
    ``after_failure`` ends the error line of a server that stops answering (what is kept, how to go on)."""

    url: str | None = None
    python: str | None = None
    port: int = 0
    quantization: str | None = None
    extra_args: list[str] = field(default_factory=list)
    ready_timeout: float = 600.0
    after_failure: str = "episodes already scored are kept: run the same command again with -r to resume"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def check_port_free(port: int) -> None:
    """Refuse a port another server listens on (one that only lingers in TIME_WAIT is free to vLLM, as here)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise ServerError(f"--vllm_port {port} is in use on this machine; pass another --vllm_port (or none: "
                              f"playpen picks a free one), or --vllm_url of the server already listening "
                              f"there") from None


def max_lora_rank(ranks: list[int]) -> int:
    """The smallest ``--max-lora-rank`` vLLM accepts that holds every adapter's rank."""
    top = max(ranks, default=8)
    for rank in LORA_RANKS:
        if rank >= top:
            return rank
    raise ServerError(f"an adapter has LoRA rank {top}; vLLM serves ranks up to {LORA_RANKS[-1]}: "
                      f"use --engine hf for it")


class VLLMServer:
    """One vLLM OpenAI-compatible server serving ``base``; use as a context manager."""

    def __init__(self, settings: ServerSettings, base: str, lora_ranks: list[int], log_dir: Path):
        self.settings, self.base = settings, base
        self.lora_ranks, self.log_path = lora_ranks, Path(log_dir) / SERVER_LOG
        self.url = settings.url.rstrip("/") if settings.url else None
        self.process: subprocess.Popen | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def __enter__(self) -> VLLMServer:
        try:
            if self.url is None:
                self._start()
            self._wait_until_ready()
            self._check_served_base()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _start(self) -> None:
        python = self.settings.python or os.environ.get(PYTHON_VARIABLE)
        if not python:
            raise ServerError(f"--engine vllm needs a vLLM server: pass --vllm_url of a running one, or --vllm_python "
                              f"(or ${PYTHON_VARIABLE}) naming the python of a virtual environment with vLLM "
                              f"(README: 'Generation on vLLM'; .ci/build-vllm-env builds one for CPUs)")
        if not Path(python).is_file():
            raise ServerError(f"--vllm_python {python} does not exist; build vLLM's environment "
                              f"(.ci/build-vllm-env prints its python) or pass --vllm_url")
        port = self.settings.port or free_port()
        if self.settings.port:
            check_port_free(port)
        self.url = f"http://127.0.0.1:{port}"
        command = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.base, "--host", "127.0.0.1",
                   "--port", str(port), "--enable-lora", "--max-lora-rank", str(max_lora_rank(self.lora_ranks)),
                   "--max-loras", str(max(1, len(self.lora_ranks)))]
        if self.settings.quantization:
            command += ["--quantization", self.settings.quantization]
        command += self.settings.extra_args
        env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB of KV cache on a CPU (ignored on a GPU)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, start_new_session=True)  # its own group: stop() ends its workers

    def stop(self) -> None:
        """Stop a server this object started (its whole process group); a ``--vllm_url`` server is left running."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def alive(self) -> bool:
        """Whether the server answers its health check."""
        try:
            self._request("GET", "/health", timeout=10)
            return True
        except (urllib.error.HTTPError, ServerError):
            return False

    def _wait_until_ready(self) -> None:
        started = time.monotonic()
        last_line = 0.0
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(f"the vLLM server exited with code {self.process.returncode} before it was ready "
                                  f"({self._last_log_line()}); see {self.log_path}")
            if self.alive():
                print(f"vLLM server {self.url} ready after {time.monotonic() - started:.0f} s", flush=True)
                return
            waited = time.monotonic() - started
            if self.process is None:
                raise ServerError(f"the vLLM server at --vllm_url {self.url} does not answer; start it (README: "
                                  f"'Generation on vLLM') or pass another --vllm_url")
            if waited > self.settings.ready_timeout:
                raise ServerError(f"the vLLM server was not ready after {waited:.0f} s; see {self.log_path}")
            if waited - last_line >= 15 or last_line == 0.0:
                print(f"waiting for the vLLM server serving {self.base} ({waited:.0f} s; log: {self.log_path})",
                      flush=True)
                last_line = waited or 0.001
            time.sleep(1)

    def _last_log_line(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""
        lines = [line for line in text.splitlines() if line.strip() and not line.startswith("$ ")]  # not our command
        errors = [line for line in lines if "Error" in line or "error" in line]
        return (errors or lines or ["no output"])[-1].strip()[-300:]

    # -- what it serves ------------------------------------------------------------------------------------------
    def _served(self) -> dict:
        models = [model for model in self._request("GET", "/v1/models")["data"] if not model.get("parent")]
        return models[0] if models else {"id": "", "root": "nothing"}

    def served_name(self) -> str:
        """The name to generate with the base (its ``id`` in ``/v1/models``)."""
        return self._served()["id"]

    def _check_served_base(self) -> None:
        model = self._served()
        served = model.get("root") or model["id"]
        if not same_model(served, self.base):
            raise ServerError(f"the vLLM server at {self.url} serves {served}, not {self.base} (the base of the models "
                              f"to play); start it with that model or pass --vllm_url of a server that serves it")

    def served_adapters(self) -> dict[str, str]:
        """``{name: directory}`` of the LoRA adapters the server serves (``/v1/models`` entries with a parent)."""
        return {model["id"]: model.get("root") for model in self._request("GET", "/v1/models")["data"]
                if model.get("parent")}

    def load_adapter(self, name: str, directory: str) -> None:
        """Serve the LoRA adapter in ``directory`` as ``name``; a name the server has is reloaded in place
        (new weights: the adapter synced after a training step, or a model played again on a running server)."""
        local = Path(directory)
        body = {"lora_name": name, "lora_path": str(local.resolve() if local.exists() else directory)}  # its own cwd
        if name in self.served_adapters():
            body["load_inplace"] = True
        try:
            self._request("POST", "/v1/load_lora_adapter", body, timeout=300)
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            raise ServerError(f"the vLLM server at {self.url} cannot load the adapter {directory} "
                              f"({one_line(detail)}); {adapter_fix(detail)}") from None

    # -- generation ----------------------------------------------------------------------------------------------
    def complete(self, model: str, prompts: list[list[int]], *, temperature: float, max_tokens: int,
                 top_p: float | None = None, stop_token_ids: list[int] | None = None,
                 logprobs: bool = False) -> list[tuple[list[int], list[float] | None]]:
        """One completion per token-id prompt from ``model`` (the base's or an adapter's served name):
        ``(generated token ids, their log-probabilities or None)``, greedy at temperature 0."""
        body = {"model": model, "prompt": prompts, "max_tokens": max_tokens, "temperature": temperature,
                "return_token_ids": True, "skip_special_tokens": False}
        if top_p is not None and temperature > 0:
            body["top_p"] = top_p
        if stop_token_ids:
            body["stop_token_ids"] = list(stop_token_ids)
        if logprobs:
            body["logprobs"] = 0
        try:
            choices = sorted(self._request("POST", "/v1/completions", body, timeout=3600)["choices"],
                             key=lambda choice: choice["index"])
        except urllib.error.HTTPError as error:  # it answered, with an error of its own
            raise ServerError(f"the vLLM server at {self.url} refused a completion of {model} "
                              f"({one_line(error.read().decode(errors='replace'))}); see {self.log_path}") from None
        return [(choice["token_ids"], choice["logprobs"]["token_logprobs"] if logprobs else None) for choice in choices]

    def stopped_answering(self, error: Exception) -> str:
        """The error line of a server that no longer answers, ending in the settings' ``after_failure``."""
        log = self.log_path if self.log_path.is_file() else "the server's own log"
        return (f"the vLLM server at {self.url} stopped answering mid-run ({one_line(str(error))}; see {log}); "
                f"{self.settings.after_failure}")

    def _request(self, method: str, path: str, body: dict | None = None, timeout: float = 30):
        """The server's JSON (or text) answer. ``urllib.error.HTTPError``: it answered with an error status;
        :class:`ServerError` (:meth:`stopped_answering`): it did not answer at all."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError:
            raise
        except (OSError, http.client.HTTPException) as error:  # refused, reset, timed out: died or hangs
            raise ServerError(self.stopped_answering(error)) from None
        return json.loads(text) if text.strip().startswith(("{", "[")) else text


def same_model(served: str, base: str) -> bool:
    """A served model id/path names ``base`` (a hub id, or the same local directory)."""
    if served == base:
        return True
    return Path(served).exists() and Path(base).exists() and Path(served).resolve() == Path(base).resolve()


def adapter_fix(detail: str) -> str:
    """What to change when vLLM refused an adapter, from its message."""
    if "max_lora_rank" in detail:
        return "the adapter's LoRA rank is above the server's --max-lora-rank: start the server with a larger one"
    if "target modules" in detail:
        return ("the adapter targets modules vLLM does not serve LoRA on for this model: train with "
                "--target_modules all-linear, or use --engine hf")
    if "bias is not supported" in detail:
        return "the adapter trains LoRA biases, which vLLM does not serve: train with bias none, or use --engine hf"
    return "check the adapter was trained on this base, or use --engine hf"


def one_line(text: str) -> str:
    return " ".join(text.split())[:400]
