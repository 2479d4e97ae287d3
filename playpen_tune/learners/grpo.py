"""``grpo_qlora``: learning in interaction. GRPO (TRL GRPOTrainer) of a LoRA adapter on a 4-bit base,
the live policy playing clemcore games, clemcore's scores as the reward.

Each training prompt names one instance of a game's train split; TRL repeats it ``num_generations``
times (a group) and hands the batch to the rollout (:mod:`playpen_tune.rl.rollout`), which plays
the episodes with clemcore's game masters and reads each reward from the episode's scores.json
(:mod:`playpen_tune.rl.reward`). The loss counts only the tokens the policy generated. The
reference for the KL term (``--beta``) is the base (adapter disabled) for a new adapter, or a
frozen copy of the starting adapter (TRL's ``ref`` adapter) when ``-m`` names a tuned model;
the ``ref`` copy is dropped before saving, as in ``dpo_qlora``. With ``--use_vllm`` the rollouts
generate on a vLLM server that reloads the policy's adapter after each step (:mod:`playpen_tune.rl.vllm_server`).
"""
from __future__ import annotations

import hashlib
import json

from playpen.errors import PlaypenError
from playpen.learners import LearnRequest
from playpen_tune.config import GRPOQLoRAConfig
from playpen_tune.learners.base import QLoRALearner, TrainerSetup
from playpen_tune.learners.training_data import TrainingData, chat_template_kwargs

ROLLOUTS_DIR = "rollouts"
SERVER_LOGP_DIFFERENCE = "sampling/sampling_logp_difference/mean"  # logged by TRL with use_vllm


class GRPOQLoRALearner(QLoRALearner):
    """GRPO on a 4-bit base with LoRA (TRL GRPOTrainer): the policy plays clemcore games, scores.json is the reward."""

    config_class = GRPOQLoRAConfig
    trainer_adds_adapter = True
    estimates_checkpoint_room = False

    def data(self, request: LearnRequest, tokenizer) -> TrainingData:
        """The instances of the games' split (and held-out split) to play, and the partners to play them with."""
        from playpen_tune.rl import reward as rewards
        from playpen_tune.rl.rollout import check_chat_template, number_of_players
        from playpen_tune.rl.split_instances import split_instances

        config: GRPOQLoRAConfig = request.config
        train = split_instances(config.games, config.suite, config.split, config.split_source)
        games, train_rows = train.games, train.rows
        contamination = check_contamination(config, train)
        eval_rows = (split_instances(config.games, config.suite, config.eval_split, config.split_source).rows
                     if config.eval_split else {})
        for game, spec in games.items():
            players = number_of_players(spec)
            if config.player > players:
                raise PlaypenError(f"--player {config.player}: {game} has {players} player(s); "
                                   f"pass a --player up to that, or games with that many players")
        for game in games:
            if not rewards.check_reward(games[game], next(row for row in train_rows.values()
                                                          if row["game_name"] == game),
                                        config.reward, config.format_reward):
                print(f"note: {game} has no programmatic player; --reward {config.reward} is checked at the first rollout")
        self.games, self.partners = games, load_partners(config, games)  # the rollout plays with these
        check_chat_template(tokenizer, request.model["model_name"], chat_template_kwargs(request.model))
        fingerprint = hashlib.sha256(json.dumps(sorted(train_rows)).encode()).hexdigest()[:16]
        record = {"format": "clemcore episodes played by the policy", "games": sorted(games), "split": config.split,
                  "split_source": train.source, "instances": len(train_rows), "fingerprint": fingerprint,
                  "held_out": {"split": config.eval_split, "instances": len(eval_rows)} if eval_rows else None,
                  "contamination": contamination}
        return TrainingData(train=train_rows, held_out=eval_rows or None, fingerprint=fingerprint, record=record)

    def trainer(self, request, data, tokenizer, policy, callbacks) -> TrainerSetup:
        from datasets import Dataset
        from peft import LoraConfig
        from trl import GRPOConfig, GRPOTrainer

        from playpen_tune.learners.arguments import trainer_arguments
        from playpen_tune.rl import reward as rewards
        from playpen_tune.rl.rollout import clemcore_reward, make_rollout_func, policy_model

        config: GRPOQLoRAConfig = request.config
        train_rows, eval_rows = data.train, data.held_out or {}
        template_kwargs = chat_template_kwargs(request.model)
        arguments = trainer_arguments(config, request.output_dir, policy.quantization, held_out=bool(eval_rows))
        arguments.pop("max_length")  # GRPO bounds each turn with --max_tokens instead
        # held-out reward: each held-out instance played once per evaluation, a step's worth of episodes at a time
        arguments["per_device_eval_batch_size"] = config.per_device_train_batch_size * config.gradient_accumulation_steps
        args = GRPOConfig(**arguments, beta=config.beta, num_generations=config.num_generations,
                          num_generations_eval=1, temperature=config.temperature,
                          max_completion_length=config.max_tokens, chat_template_kwargs=template_kwargs or None,
                          log_completions=False)
        policy_cache: dict = {}

        def policy_for(trainer):
            if "policy" not in policy_cache:
                spec = policy_spec(request, tokenizer, template_kwargs)
                generator = trainer.vllm_generation.generator if config.use_vllm else None  # --use_vllm
                policy_cache["policy"] = policy_model(spec, trainer.accelerator.unwrap_model(trainer.model),
                                                      tokenizer, template_kwargs, vllm_client=generator)
                policy_cache["policy"].set_gen_args(temperature=config.temperature, max_tokens=config.max_tokens)
            return policy_cache["policy"]

        rollout = make_rollout_func(
            games=self.games, instances={**train_rows, **eval_rows}, policy_factory=policy_for, partners=self.partners,
            rollouts_dir=request.output_dir / ROLLOUTS_DIR,
            reward_of=lambda scores: rewards.episode_reward(scores, config.reward, config.format_reward),
            player=config.player)
        trainer = GRPOTrainer(
            model=policy.model, args=args, reward_funcs=[clemcore_reward], processing_class=tokenizer,
            train_dataset=Dataset.from_dict({"prompt": list(train_rows)}),
            eval_dataset=Dataset.from_dict({"prompt": list(eval_rows)}) if eval_rows else None,
            peft_config=LoraConfig(**policy.lora) if policy.parent is None else None, callbacks=callbacks,
            rollout_func=rollout)
        server = None
        if config.use_vllm:  # rollouts on a vLLM server, the adapter reloaded after each step
            from playpen_tune.rl.vllm_server import attach_server, start_server

            server = start_server(config, request.model["huggingface_id"], policy.lora["r"], request.output_dir)
            attach_server(trainer, server, request.output_dir, tokenizer.eos_token_id,
                          config.vllm_importance_sampling_correction)
        return TrainerSetup(trainer=trainer, extra={
            "reference": ("base model with adapter disabled" if policy.parent is None else
                          f"frozen copy of the parent adapter {policy.parent} (TRL 'ref' adapter)"),
            "reward": {"name": config.reward, "format_reward": config.format_reward,
                       "definition": rewards.describe(config.reward, config.format_reward),
                       "source": "clemcore scores.json of each episode"},
            "partner": config.partner,
            "player": config.player,
            "rollout_generation": (f"vLLM server {server.url} serving {server.base} "
                                   f"({config.vllm_quantization or 'unquantized'}), the LoRA adapter reloaded in place "
                                   f"before each step's rollouts" if server else
                                   "transformers generate with the live policy"),
            "loss_masking": "policy-generated tokens only (TRL env_mask); game master and partner "
                            "messages are context",
            "rollouts_dir": str(request.output_dir / ROLLOUTS_DIR)})

    def before_save(self, run) -> None:
        drop_reference_and_record_rewards(run)


def check_contamination(config: GRPOQLoRAConfig, train) -> dict:
    """Refuse training instances that are in the evaluation split (what ``playpen eval`` measures) unless
    ``--allow_eval_instances``; return the manifest record of the check."""
    from playpen.splits import EVAL_SPLIT, NoSuchSplit, load_split
    from playpen_tune.rl.rollout import episode_key

    if config.allow_eval_instances:
        return {"checked": False, "reason": "--allow_eval_instances"}
    try:
        evaluation = load_split(config.split_source, EVAL_SPLIT)
    except NoSuchSplit:
        print(f"note: {train.source} has no split '{EVAL_SPLIT}': the training instances were not checked against "
              f"an evaluation split")
        return {"checked": False, "reason": f"{train.source} has no split '{EVAL_SPLIT}'"}
    keys = {episode_key({"game_name": game, "experiment": {"name": experiment}, "game_instance": {"game_id": task_id}})
            for game, experiment, task_id in evaluation.instances}
    overlap = sorted(keys & set(train.rows))
    if overlap:
        raise PlaypenError(f"{len(overlap)} of the {len(train.rows)} instances of --split {config.split} are in the "
                           f"evaluation split ({evaluation.describe()}, what playpen eval measures), e.g. {overlap[0]}; "
                           f"pass another --split, or --allow_eval_instances true to train on them anyway")
    return {"checked": True, "split_source": evaluation.source, "split": EVAL_SPLIT, "excluded": 0}


def load_partners(config: GRPOQLoRAConfig, games: dict) -> dict:
    """``{game: [partner model] * (players - 1)}``, the partner in every role but the policy's (empty
    lists without ``--partner``): loaded once, before the policy."""
    if config.partner is None:
        return {name: [] for name in games}
    from clemcore import backends

    from playpen.models import find_model
    from playpen_tune.rl.rollout import number_of_players

    try:
        spec = find_model(config.partner, scripted=True)
        (partner,) = backends.load_models([spec], {"temperature": 0.0, "max_tokens": config.max_tokens})
    except Exception as error:  # an unknown name, and the many kinds clemcore raises for a model it cannot load
        raise PlaypenError(f"--partner {config.partner} cannot be loaded: {type(error).__name__}: {error}; "
                           f"pass a model from 'playpen list models' or programmatic") from None
    return {name: [partner] * (number_of_players(game_spec) - 1) for name, game_spec in games.items()}


def policy_spec(request: LearnRequest, tokenizer, template_kwargs: dict):
    """The clemcore ModelSpec the policy plays under (its name is the run's ``--name``)."""
    import re

    from clemcore.backends import ModelSpec

    from playpen.secrets import without_secrets

    entry = without_secrets(dict(request.model))
    model_config = dict(entry.get("model_config") or {})
    model_config.setdefault("eos_to_cull", f"(?s){re.escape(tokenizer.eos_token)}.*")
    model_config["chat_template_kwargs"] = template_kwargs
    return ModelSpec.from_dict({**entry, "model_name": request.name, "model_config": model_config})


def drop_reference_and_record_rewards(run) -> None:
    """Save the GRPO adapter only; put the reward per step (train) and on the held-out split (eval) in the
    manifest, for every step of the run (those before a ``--resume`` too)."""
    from playpen_tune.learners.dpo import drop_reference_adapter
    from playpen_tune.rl.rollout import read_rollout_log

    drop_reference_adapter(run.trainer.model)
    log = read_rollout_log(run.record.request.output_dir / ROLLOUTS_DIR)
    run.record.extra["rollout_log"] = log
    train = [entry for entry in log if entry["mode"] == "train"]
    held_out = [entry for entry in log if entry["mode"] == "eval"]

    def mean(values):
        return sum(values) / len(values)

    run.record.extra["reward_history"] = [{"step": e["step"], "mean_reward": mean(e["rewards"]),
                                           "varied_groups": e["varied_groups"]} for e in train]
    # --use_vllm: how far the server's token log-probabilities were from the policy's (TRL's metric)
    server = {e["step"]: e[SERVER_LOGP_DIFFERENCE] for e in run.trainer.state.log_history if SERVER_LOGP_DIFFERENCE in e}
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
