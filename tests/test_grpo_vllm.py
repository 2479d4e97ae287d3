"""``grpo_qlora --use_vllm``: what TRL pushes to the vLLM server is the policy (4-bit base dequantized,
LoRA added, the base untouched); the server's token log-probabilities line up with the tokens of the
multi-turn traces. The end-to-end run against a real ``vllm serve`` needs CUDA and vLLM."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
import torch


@pytest.fixture
def policy(tiny_model_dir):
    """The tiny model as grpo_qlora trains it: 4-bit NF4 base, a trained-looking LoRA adapter, and TRL's
    frozen ``ref`` adapter (inactive) beside it."""
    from peft import LoraConfig, get_peft_model

    from playpen_tune.quantization import DEFAULT_QUANTIZATION, load_base_model, resolve_compute_dtype

    settings = dict(DEFAULT_QUANTIZATION, bnb_4bit_compute_dtype=resolve_compute_dtype("auto"))
    base, _ = load_base_model(str(tiny_model_dir), settings)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    model.add_adapter("ref", LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:  # LoRA B starts at zero: give both adapters a delta that changes the outputs
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    return model.eval()


class RecordingServer:
    """Stands in for the vLLM server's weight-update endpoints; keeps what TRL streamed to it."""

    def __init__(self):
        self.metadata, self.pushed, self.resets = None, {}, 0

    def update_named_params(self, metadata, named_params):
        self.metadata = metadata
        self.pushed = {name: tensor.clone() for name, tensor in named_params}

    def reset_prefix_cache(self):
        self.resets += 1


def test_trl_weight_sync_pushes_the_dequantized_policy_and_leaves_the_base_alone(policy, tiny_model_dir):
    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM
    from trl.generation.vllm_generation import VLLMGeneration

    from playpen_tune.rl.vllm_server import push_merged_weights

    # TRL's own sync code in server mode, with the recording server instead of HTTP + NCCL
    generation = VLLMGeneration.__new__(VLLMGeneration)
    generation.model, generation.accelerator, generation.mode = policy, Accelerator(cpu=True), "server"
    generation.enable_sleep_mode, generation._weight_metadata = False, None
    generation.vllm_client = server = RecordingServer()
    push_merged_weights(generation, torch.float32)
    packed = {name: param.data.clone() for name, param in policy.named_parameters()
              if param.__class__.__name__ == "Params4bit"}
    assert packed  # the base is 4-bit
    generation.sync_weights()
    generation.sync_weights()  # a later step: the same names again, the announced metadata reused

    served = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()  # what vLLM holds
    expected = {name: param for name, param in served.named_parameters()}
    assert set(server.pushed) == set(expected) and server.resets == 2
    assert server.metadata == [(name, "float32", list(expected[name].shape)) for name in server.pushed]
    # no merge/unmerge round trip re-quantized the base being trained
    assert all(torch.equal(param.data, packed[name]) for name, param in policy.named_parameters() if name in packed)
    # the server's model, given those weights, computes what the 4-bit policy with its active adapter computes
    with torch.no_grad():
        for name, param in served.named_parameters():
            param.copy_(server.pushed[name])
        tokens = torch.tensor([[1, 5, 9, 17, 33, 65, 129, 200]])
        policy_logits, served_logits = policy(input_ids=tokens).logits, served(input_ids=tokens).logits
        with policy.disable_adapter():
            base_logits = policy(input_ids=tokens).logits
    # bitsandbytes' CPU 4-bit matmul runs in bf16 where the CPU has AVX512-BF16 (2.3e-3 in these logits on
    # such a machine), in fp32 elsewhere: the served copy must agree within bf16 rounding, and the adapter's
    # delta (the base alone) must move the logits far more than that
    mismatch = (policy_logits - served_logits).abs().max().item()
    delta = (base_logits - served_logits).abs().max().item()
    assert mismatch < 1e-2 and delta > 50 * mismatch, (mismatch, delta)


class SamplingServer:
    """Answers like TRL's ``VLLMClient.generate``: one sampled completion per token-id prompt with the
    sampled tokens' log-probabilities, here from the tiny model in transformers (no vLLM on CPU)."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer, self.calls = model, tokenizer, 0

    def generate(self, prompts, n, temperature, max_tokens, logprobs):
        assert n == 1 and logprobs == 0
        self.calls += 1
        completion_ids, token_logprobs = [], []
        for prompt in prompts:
            with torch.no_grad():
                output = self.model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=max_tokens,
                                             do_sample=True,
                                             temperature=temperature, top_k=None, top_p=None, output_scores=True,
                                             return_dict_in_generate=True, eos_token_id=self.tokenizer.eos_token_id,
                                             pad_token_id=self.tokenizer.pad_token_id)
            ids = output.sequences[0, len(prompt):]
            scores = self.model.compute_transition_scores(output.sequences, output.scores, normalize_logits=True)[0]
            completion_ids.append(ids.tolist())
            token_logprobs.append([[value] for value in scores.tolist()])
        return {"prompt_ids": prompts, "completion_ids": completion_ids, "logprobs": token_logprobs}


@pytest.fixture
def server_policy(tiny_model_dir):
    """The rollouts' policy model generating on a :class:`SamplingServer` of the tiny model."""
    from clemcore.backends import ModelSpec
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from playpen_tune.rl.rollout import LivePolicy
    from playpen_tune.rl.vllm_server import ServerGenerator

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    spec = ModelSpec.from_dict({"model_name": "policy", "model_config": {"eos_to_cull": r"(?s)<\|eot_id\|>.*"}})
    server = SamplingServer(model, tokenizer)
    return model, server, LivePolicy(spec, tokenizer, ServerGenerator(server), {}, temperature=1.0, max_tokens=4)


def test_turns_generated_on_a_server_carry_its_logprobs_token_for_token(server_policy):
    """Two episodes of two turns each, generated by the server in one batch per turn: each policy token
    has the server's log-probability and each game-master token 0.0 (masked), at the right positions."""
    from playpen_tune.rl.rollout import PolicyModel, Traces

    model, server, live = server_policy
    traces = Traces(live.tokenizer, {}, "policy")
    policy = PolicyModel(live, traces)
    first = [[{"role": "user", "content": f"Word echo game.\nSay the word: {word}"}] for word in ("apple", "stone")]
    answers = [answer for _, _, answer in policy.generate_batch_response(first)]
    second = [turn + [{"role": "assistant", "content": answer}, {"role": "user", "content": "Say the word: river"}]
              for turn, answer in zip(first, answers, strict=True)]
    finals = [answer for _, _, answer in policy.generate_batch_response(second)]

    assert server.calls == 2  # one call per turn for the whole batch
    for turn, answer in zip(second, finals, strict=True):
        trace = traces.of(turn + [{"role": "assistant", "content": answer}])
        assert len(trace.logprobs) == len(trace.env_mask) == len(trace.completion_ids)
        assert [mask for index, mask in enumerate(trace.env_mask) if index == 0 or mask != trace.env_mask[index - 1]] \
            == [1, 0, 1]  # policy turn, game-master turn, policy turn
        assert {trace.logprobs[i] for i, mask in enumerate(trace.env_mask) if mask == 0} == {0.0}
        # the policy's own log-probabilities of its tokens, in the context it saw, are the server's
        sequence = torch.tensor([trace.prompt_ids + trace.completion_ids])
        with torch.no_grad():
            logits = model(input_ids=sequence).logits[0, len(trace.prompt_ids) - 1:-1]
        own = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(trace.completion_ids)[:, None])[:, 0]
        policy_tokens = torch.tensor(trace.env_mask, dtype=torch.bool)
        assert torch.allclose(own[policy_tokens], torch.tensor(trace.logprobs)[policy_tokens], atol=1e-4)


def test_the_rollout_hands_the_servers_logprobs_to_trl(server_policy, tmp_path):
    """TRL's ``rollout_func`` contract: with a server, ``logprobs`` (one per completion token) come back
    beside the tokens of each clemcore episode, for TRL's importance-sampling correction."""
    from types import SimpleNamespace

    from playpen_tune.games import DEMO_SPLIT_FILE
    from playpen_tune.rl.rollout import make_rollout_func
    from playpen_tune.rl.split_instances import split_instances

    train = split_instances(["wordecho"], None, "train", str(DEMO_SPLIT_FILE))
    _, _, live = server_policy
    rollout = make_rollout_func(games=train.games, instances=train.rows, policy_factory=lambda trainer: live,
                                partners={"wordecho": []}, rollouts_dir=tmp_path / "rollouts",
                                reward_of=lambda scores: float(scores["episode scores"]["Success"]))
    trainer = SimpleNamespace(model=SimpleNamespace(training=True), state=SimpleNamespace(global_step=0))
    output = rollout([next(iter(train.rows))] * 2, trainer)
    assert len(output["logprobs"]) == 2 and len(sorted((tmp_path / "rollouts").rglob("scores.json"))) == 2
    for logprobs, completion, mask in zip(output["logprobs"], output["completion_ids"], output["env_mask"],
                                          strict=True):
        assert len(logprobs) == len(completion) == len(mask) and all(value < 0 for value in logprobs)


CUDA_AND_VLLM = torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None
TWO_GPUS = CUDA_AND_VLLM and torch.cuda.device_count() >= 2  # the server and the trainer need a GPU each (NCCL)


@pytest.mark.skipif(CUDA_AND_VLLM, reason="vLLM and CUDA are here, so --use_vllm is accepted")
def test_use_vllm_is_refused_where_it_cannot_run(playpen, workdir):
    from playpen_tune.games import DEMO_SPLIT_FILE, write_game_registry

    write_game_registry(workdir)
    result = playpen("learn", "-l", "grpo_qlora", "-m", "tiny", "-g", "wordecho", "--split_source",
                     str(DEMO_SPLIT_FILE),
                     "--max_steps", "1", "--use_vllm")
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert result.code == 2 and len(errors) == 1, result
    needs = "vLLM: pip install 'playpen-tune[vllm]'" if importlib.util.find_spec("vllm") is None else "a CUDA GPU"
    assert f"--use_vllm needs {needs}" in errors[0]
    assert not (workdir / "models").exists()


@pytest.mark.slow
@pytest.mark.skipif(not TWO_GPUS, reason="needs two CUDA GPUs and vLLM (pip install 'playpen-tune[vllm]')")
def test_grpo_learns_with_rollouts_on_a_vllm_server(tmp_path, monkeypatch):
    """A real ``vllm serve`` of the base, grpo_qlora --use_vllm for a few steps: the run is registered,
    its rollouts are episode records, and the server's token probabilities match the policy's after
    the weight syncs (TRL's mean |logp difference| per token stays small; unsynced weights drift from it)."""
    from playpen_tune.games import DEMO_SPLIT_FILE, write_game_registry
    from playpen_tune.tiny import build_tiny_chat_model, registry_entry

    base = build_tiny_chat_model(tmp_path / "tiny-llama", hidden_size=128, num_heads=2)  # head size 64 for vLLM
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model_registry.json").write_text(json.dumps([registry_entry("tiny", base)]))
    write_game_registry(tmp_path)
    port = 8765
    server = subprocess.Popen(
        ["vllm", "serve", str(base), "--port", str(port), "--dtype", "bfloat16", "--gpu-memory-utilization", "0.2",
         "--weight-transfer-config", '{"backend": "nccl"}', "--logprobs-mode", "processed_logprobs",
         "--max-logprobs", "-1", "--max-model-len", "1024"],
        env={**os.environ, "VLLM_SERVER_DEV_MODE": "1", "CUDA_VISIBLE_DEVICES": "1"},
                              stdout=open(tmp_path / "vllm.log", "w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while True:
            try:
                urllib.request.urlopen(f"http://localhost:{port}/health", timeout=5)
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, (tmp_path / "vllm.log").read_text()[-3000:]
                time.sleep(3)
        learn = subprocess.run(
            [sys.executable, "-m", "playpen", "learn", "-l", "grpo_qlora", "-m", "tiny", "-g", "wordecho",
             "--split_source", str(DEMO_SPLIT_FILE), "--num_generations", "4", "--per_device_train_batch_size", "8",
             "--max_tokens", "8", "--max_steps", "4", "--logging_steps", "1", "--learning_rate", "1e-3",
             "--use_vllm", "--vllm_server_base_url", f"http://localhost:{port}"],
            cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": "0"})
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert learn.returncode == 0, learn.stderr[-3000:]
    out = tmp_path / "models" / "tiny-grpo_qlora"
    manifest = json.loads((out / "playpen_run.json").read_text())
    assert manifest["rollout_generation"].startswith(f"vLLM server http://localhost:{port}")
    assert [entry["step"] for entry in manifest["reward_history"]] == [1, 2, 3, 4]
    assert len(sorted((out / "rollouts").rglob("scores.json"))) == 4 * 8
    differences = [entry["server_logp_difference"] for entry in manifest["reward_history"]]
    assert all(difference < 0.1 for difference in differences), differences
    assert json.loads((tmp_path / "model_registry.json").read_text())[-1]["model_name"] == "tiny-grpo_qlora"
