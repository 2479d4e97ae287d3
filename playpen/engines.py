"""Which engine generates for ``playpen eval`` / ``playpen play``: transformers in this process (``--engine hf``,
clemcore's backends) or a vLLM server (``--engine vllm``, :mod:`playpen.serving`).

The engine is a property of the command, and a vLLM server lives as long as the command: the CLI
opens :func:`engine_for_command` around its gameplay, and :func:`load_models` (where the gameplay loads
the models of a run) asks the engine opened there. With vLLM the server starts at the first load (so
``--skip_gameplay`` starts none), serves the models' common base and loads each tuned model's LoRA
adapter at run time under the model's name.

A model on vLLM is clemcore's own ``HuggingfaceLocalModel`` with the server in place of the weights
(:class:`ServedWeights`): clemcore renders the chat template with the registry entry's
``chat_template_kwargs``, tokenizes, checks the context, decodes and culls ``eos_to_cull`` exactly
as for ``--engine hf``; only the token generation happens on the server, from token ids (the server's
chat template is never used), stopping at the eos tokens of the model's generation config as
transformers does. The same prompt tokens therefore reach both engines.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import shlex
from pathlib import Path

from playpen.errors import PlaypenError
from playpen.serving import ServerError, ServerSettings, VLLMServer

ENGINES = ("hf", "vllm")
_active: contextvars.ContextVar[VLLMEngine | None] = contextvars.ContextVar("playpen_engine", default=None)


def add_engine_arguments(parser) -> None:
    """``--engine`` and the vLLM server's options (``eval`` and ``play``)."""
    parser.add_argument("--engine", choices=ENGINES, default="hf",
                        help="hf: transformers in this process; vllm: a vLLM server (started here from --vllm_python, "
                             "or --vllm_url), tuned adapters loaded at run time. Default: hf")
    parser.add_argument("--vllm_url", default=None, help="with --engine vllm: a running server (it must serve the "
                                                         "models' base with --enable-lora)")
    parser.add_argument("--vllm_python", default=None,
                        help="with --engine vllm: python of vLLM's virtual environment to start the server with. "
                             "Default: $PLAYPEN_VLLM_PYTHON")
    parser.add_argument("--vllm_port", type=int, default=0, help="with --engine vllm: port of the started server. "
                                                                 "Default: a free one")
    parser.add_argument("--vllm_quantization", default=None,
                        help="with --engine vllm: the started server's --quantization (bitsandbytes on a GPU serves "
                             "the 4-bit base as trained). Default: unquantized")
    parser.add_argument("--vllm_args", default="", help="with --engine vllm: more arguments of the started server, "
                                                        "e.g. '--gpu-memory-utilization 0.5 --max-model-len 4096'")


def settings_from_cli(args) -> ServerSettings | None:
    """The server settings of ``--engine vllm`` (None for hf); vLLM options without it are refused."""
    engine = getattr(args, "engine", "hf")
    given = [name for name in ("vllm_url", "vllm_python", "vllm_port", "vllm_quantization", "vllm_args")
             if getattr(args, name, None)]
    if engine != "vllm":
        if given:
            raise PlaypenError(f"--{given[0]} applies only with --engine vllm; add --engine vllm or drop it")
        return None
    if args.vllm_url and (args.vllm_python or args.vllm_port or args.vllm_quantization or args.vllm_args):
        raise PlaypenError("--vllm_url names a running server; --vllm_python, --vllm_port, --vllm_quantization and "
                           "--vllm_args configure one that playpen starts: pass one or the other")
    return ServerSettings(url=args.vllm_url, python=args.vllm_python, port=args.vllm_port,
                          quantization=args.vllm_quantization, extra_args=shlex.split(args.vllm_args or ""))


@contextlib.contextmanager
def engine_for_command(args, results_dir: Path):
    """Open the engine ``args`` asks for around a command's gameplay; a server started in it is stopped at the end,
    and one that died during the gameplay is one error line (the episodes it played stay, ``-r`` resumes)."""
    settings = settings_from_cli(args)
    if settings is None:
        yield
        return
    engine = VLLMEngine(settings, Path(results_dir))
    token = _active.set(engine)
    try:
        yield
        engine.check_alive()
    finally:
        _active.reset(token)
        engine.close()


def load_models(model_specs: list, gen_args: dict) -> list:
    """The clemcore Models of one run, on the engine of the command (clemcore's ``load_models`` for hf)."""
    from clemcore import backends

    engine = _active.get()
    if engine is None:
        return backends.load_models(model_specs, gen_args)
    return engine.load_models(model_specs, gen_args)


def engine_settings(model_spec) -> dict:
    """val.json's record of the engine a model played on: ``{"engine": "hf"}``, or vLLM's served base,
    its quantization and the adapter loaded at run time."""
    engine = _active.get()
    if engine is None or engine.server is None or not model_spec.to_dict().get("huggingface_id"):
        return {"engine": "hf"}
    return {"engine": "vllm", "served_base": engine.server.base,
            "served_quantization": engine.settings.quantization or "none (the checkpoint's dtype)",
            "served_adapter": model_spec.model_config.get("peft_model")}


def resume_settings() -> dict:
    """What resuming into a results directory must match about the engine: nothing for hf, the engine and the
    served quantization for vLLM (its unquantized base is not the 4-bit base hf plays a tuned model on)."""
    engine = _active.get()
    return {} if engine is None else {"engine": {"name": "vllm", "quantization": engine.settings.quantization}}


def adapter_rank(directory: str) -> int:
    """The LoRA rank ``r`` in an adapter's ``adapter_config.json``."""
    path = Path(directory) / "adapter_config.json"
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["r"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ServerError(f"adapter config {path} is missing or has no LoRA rank 'r' ({error}); the adapter "
                          f"cannot be served: register a directory saved by a playpen learner") from None


class VLLMEngine:
    """The vLLM server of one command and the models served on it."""

    def __init__(self, settings: ServerSettings, results_dir: Path):
        self.settings, self.results_dir = settings, results_dir
        self.server: VLLMServer | None = None

    def load_models(self, model_specs: list, gen_args: dict) -> list:
        from clemcore import backends
        from clemcore.backends import ModelRegistry

        registry = ModelRegistry.from_packaged_and_cwd_files()
        specs = [registry.get_first_model_spec_that_unify_with(spec) for spec in model_specs]
        served = [spec for spec in specs if spec.to_dict().get("huggingface_id")]
        bases = sorted({spec.huggingface_id for spec in served})
        if len(bases) > 1:
            raise ServerError(f"--engine vllm serves one base per command, these models have {', '.join(bases)}; "
                              f"play them in separate commands or use --engine hf")
        adapters = {spec.model_name: spec.model_config["peft_model"] for spec in served
                    if spec.model_config.get("peft_model")}
        if served:
            self._serve(bases[0], [adapter_rank(path) for path in adapters.values()])
        for name, path in adapters.items():
            self.server.load_adapter(name, path)
        from playpen.served_model import ServedModel

        models = []
        for spec in specs:
            if spec.to_dict().get("huggingface_id"):
                model = ServedModel(spec, self.server, spec.model_name if spec.model_name in adapters else None)
                model.set_gen_args(**gen_args)
            else:  # scripted players (mock, programmatic) need no server
                model = backends.load_models([spec], gen_args)[0]
            models.append(model)
        return models

    def _serve(self, base: str, ranks: list[int]) -> None:
        if self.server is not None:
            if base != self.server.base:
                raise ServerError(f"--engine vllm serves one base per command: {self.server.base} is served, "
                                  f"{base} is asked for; play them in separate commands or use --engine hf")
            return
        server = VLLMServer(self.settings, base, ranks, self.results_dir)
        self.server = server.__enter__()

    def check_alive(self) -> None:
        if self.server is not None and not self.server.alive():
            raise ServerError(self.server.stopped_answering(ConnectionError("no answer to its health check")))

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
