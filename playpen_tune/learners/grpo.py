"""``grpo_qlora``: learning in interaction. GRPO (TRL GRPOTrainer) of a LoRA adapter on a 4-bit base,
the live policy playing clemcore games, clemcore's scores as the reward.

Its input is a :class:`~playpen_tune.learners.game_environment.GameEnvironment` (games, instances,
partners, player, reward), not a dataset: ``data()`` loads it and ``trainer()`` receives it. Each
training prompt names one instance of a game's train split; TRL repeats it ``num_generations``
times (a group) and hands the batch to the rollout (:mod:`playpen_tune.rl.rollout`), which plays
the episodes with clemcore's game masters and reads each reward from the episode's scores.json
(:mod:`playpen_tune.rl.reward`). The loss counts only the tokens the policy generated. The
reference for the KL term (``--beta``) is the policy's (:mod:`playpen_tune.learners.policy`): the
base with the adapter disabled, or a frozen copy of the starting adapter when ``-m`` names a tuned
model. With ``--use_vllm`` the rollouts generate on a vLLM server that reloads the policy's adapter after each
step (:mod:`playpen_tune.rl.vllm_server`).
"""
from __future__ import annotations

from playpen.api import LearnRequest
from playpen_tune.config import GRPOQLoRAConfig
from playpen_tune.learners.base import QLoRALearner, TrainerSetup
from playpen_tune.learners.game_environment import GameEnvironment, load_game_environment
from playpen_tune.learners.training_data import chat_template_kwargs

ROLLOUTS_DIR = "rollouts"
SERVER_LOGP_DIFFERENCE = "sampling/sampling_logp_difference/mean"  # logged by TRL with use_vllm


class GRPOQLoRALearner(QLoRALearner):
    """GRPO on a 4-bit base with LoRA (TRL GRPOTrainer): the policy plays clemcore games, scores.json is the reward."""

    config_class = GRPOQLoRAConfig
    trainer_adds_adapter = True
    estimates_checkpoint_room = False

    def data(self, request: LearnRequest, tokenizer) -> GameEnvironment:
        """The games and instances to play (train split, held-out split), the partners to play them with, the reward."""
        from playpen_tune.rl.rollout import check_chat_template

        environment = load_game_environment(request.config)
        check_chat_template(tokenizer, request.model["model_name"], chat_template_kwargs(request.model))
        return environment

    def trainer(self, request, environment: GameEnvironment, tokenizer, policy, callbacks) -> TrainerSetup:
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer

        from playpen_tune.learners.arguments import trainer_arguments
        from playpen_tune.rl.rollout import LivePolicy, TransformersGenerator, clemcore_reward, make_rollout_func

        config: GRPOQLoRAConfig = request.config
        template_kwargs = chat_template_kwargs(request.model)
        # held-out reward: each held-out instance played once per evaluation, a step's worth of episodes at a time
        step_episodes = config.per_device_train_batch_size * config.gradient_accumulation_steps
        args = GRPOConfig(
            **trainer_arguments(config, request.output_dir, policy.quantization, held_out=bool(environment.held_out),
                                eval_batch_size=step_episodes),
            beta=config.beta, num_generations=config.num_generations, num_generations_eval=1,
            temperature=config.temperature, max_completion_length=config.max_tokens,
            chat_template_kwargs=template_kwargs or None, log_completions=False)
        policy_cache: dict = {}

        def policy_for(trainer):
            """The live policy, built at the first rollout (the trainer wraps the model first)."""
            if "policy" not in policy_cache:
                generator = (trainer.vllm_generation.generator if config.use_vllm  # --use_vllm: AdapterSync's
                             else TransformersGenerator(trainer.accelerator.unwrap_model(trainer.model), tokenizer))
                policy_cache["policy"] = LivePolicy(policy_spec(request, tokenizer, template_kwargs), tokenizer,
                                                    generator, template_kwargs, config.temperature, config.max_tokens)
            return policy_cache["policy"]

        rollout = make_rollout_func(
            games=environment.games, instances=environment.instances, policy_factory=policy_for,
            partners=environment.partners, rollouts_dir=request.output_dir / ROLLOUTS_DIR,
            reward_of=environment.reward_of, player=environment.player)
        trainer = GRPOTrainer(
            model=policy.model, args=args, reward_funcs=[clemcore_reward], processing_class=tokenizer,
            train_dataset=Dataset.from_dict({"prompt": list(environment.train)}),
            eval_dataset=Dataset.from_dict({"prompt": list(environment.held_out)}) if environment.held_out else None,
            peft_config=policy.new_adapter(), callbacks=callbacks, rollout_func=rollout)
        server = None
        if config.use_vllm:  # rollouts on a vLLM server, the adapter reloaded after each step
            from playpen_tune.rl.vllm_server import attach_server, start_server

            server = start_server(config, request.model["huggingface_id"], policy.lora["r"], request.output_dir)
            attach_server(trainer, server, request.output_dir, tokenizer.eos_token_id,
                          config.vllm_importance_sampling_correction)
        return TrainerSetup(trainer=trainer, extra={
            "reference": policy.reference,
            "rollout_generation": (f"vLLM server {server.url} serving {server.base} "
                                   f"({config.vllm_quantization or 'unquantized'}), the LoRA adapter reloaded in place "
                                   f"before each step's rollouts" if server else
                                   "transformers generate with the live policy"),
            "loss_masking": "policy-generated tokens only (TRL env_mask); game master and partner "
                            "messages are context",
            "rollouts_dir": str(request.output_dir / ROLLOUTS_DIR)})

    def before_save(self, run) -> None:
        record_rewards(run)


def policy_spec(request: LearnRequest, tokenizer, template_kwargs: dict):
    """The clemcore ModelSpec the policy plays under (its name is the run's ``--name``)."""
    import re

    from clemcore.backends import ModelSpec

    from playpen.api import without_secrets

    entry = without_secrets(dict(request.model))
    model_config = dict(entry.get("model_config") or {})
    model_config.setdefault("eos_to_cull", f"(?s){re.escape(tokenizer.eos_token)}.*")
    model_config["chat_template_kwargs"] = template_kwargs
    return ModelSpec.from_dict({**entry, "model_name": request.name, "model_config": model_config})


def record_rewards(run) -> None:
    """Put the reward per step (train) and on the held-out split (eval) in the manifest, for every step of
    the run (those before a ``--resume`` too)."""
    from playpen_tune.rl.rollout import read_rollout_log

    log = read_rollout_log(run.record.request.output_dir / ROLLOUTS_DIR)
    run.record.extra["rollout_log"] = log
    train = [entry for entry in log if entry["mode"] == "train"]
    held_out = [entry for entry in log if entry["mode"] == "eval"]

    def mean(values):
        return sum(values) / len(values)

    run.record.extra["reward_history"] = [{"step": e["step"], "mean_reward": mean(e["rewards"]),
                                           "varied_groups": e["varied_groups"]} for e in train]
    # --use_vllm: how far the server's token log-probabilities were from the policy's (TRL's metric)
    server = {e["step"]: e[SERVER_LOGP_DIFFERENCE] for e in run.trainer.state.log_history
              if SERVER_LOGP_DIFFERENCE in e}
    for entry in run.record.extra["reward_history"]:
        if entry["step"] in server:
            entry["server_logp_difference"] = server[entry["step"]]
    run.record.extra["eval_reward_history"] = [{"step": e["step"], "mean_reward": mean(e["rewards"])}
                                               for e in held_out]
    if train:
        run.record.metrics.update(first_reward=mean(train[0]["rewards"]), final_reward=mean(train[-1]["rewards"]))
    if held_out:
        run.record.metrics.update(first_eval_reward=mean(held_out[0]["rewards"]),
                                  final_eval_reward=mean(held_out[-1]["rewards"]))
    run.record.curves["mean episode reward (clemcore scores)"] = {
        "train rollouts": [(e["step"], e["mean_reward"]) for e in run.record.extra["reward_history"]],
        "held-out split": [(e["step"], e["mean_reward"]) for e in run.record.extra["eval_reward_history"]]}
