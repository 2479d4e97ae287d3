"""The config dataclasses of the built-in learners, composed of field groups as TRL's scripts compose theirs.

TRL's ``scripts/sft.py`` parses ``(ScriptArguments, SFTConfig, ModelConfig, DatasetMixtureConfig)``:
one dataclass per concern. Here the concerns are the groups :class:`DatasetConfig` (what an offline
learner trains on), :class:`GamesConfig` (what a learner that learns from play plays),
:class:`PolicyConfig` (the model trained) and :class:`TrainingConfig` (optimizer, schedule,
checkpoints). A learner's config inherits the groups it uses and declares its own fields in its
body (``sft_qlora``: dataset + policy + training; ``grpo_qlora``: games + policy + training), so
learner code reads every field as ``config.<field>``, ``-c`` YAML files stay flat, and
``playpen learn -l X --help`` shows X's fields one group per dataclass (``playpen.config.config_groups``).
Field names follow TRL (``SFTConfig``/``DPOConfig``/``GRPOConfig``/``ModelConfig``) so that TRL users
find their knobs. Each group checks its own fields in ``__post_init__`` and calls ``super()``'s, so a
composed config checks every group; checks across groups are the composed config's.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from playpen.api import PlaypenError
from playpen_tune.quantization import DEFAULT_QUANTIZATION


def _help(text: str, **kwargs):
    return field(metadata={"help": text}, **kwargs)


def _check_positive(config, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(config, name) <= 0:
            raise PlaypenError(f"--{name} must be > 0, got {getattr(config, name)}")


class ConfigGroup:
    """Base of the field groups: the end of the ``__post_init__`` chain of a composed config."""

    def __post_init__(self) -> None:
        pass


@dataclass
class DatasetConfig(ConfigGroup):
    """dataset

    What an offline learner trains on: the sources and their filters, the contamination guard
    (episodes of the evaluation split are left out), the held-out set, and how examples are cut
    and batched.
    """

    dataset: list[str] = _help("training data (repeatable): .json/.jsonl file, clemcore results "
                               "directory, or hub dataset id", default_factory=list)
    dataset_split: str = _help("split of hub datasets", default="train")
    games: list[str] = _help("only transcripts of these games (comma-separated)", default_factory=list)
    roles: list[str] = _help("only transcripts of these game roles (comma-separated)", default_factory=list)
    include_static_games: bool = _help("keep transcripts of the static suite (bbh, mmlu_pro, ...: statscore's "
                                       "games); left out by default", default=False)
    split_source: str = _help("split source whose 'validation' instances are left out of results directories: "
                              "hub dataset id or .jsonl/.json/.csv file (empty: colab-potsdam/playpen-data)",
                              default="")
    allow_eval_instances: bool = _help("keep episodes of evaluation-split instances in the training data",
                                       default=False)
    eval_dataset: list[str] = _help("held-out data (repeatable), same kinds and filters as --dataset; its loss is "
                                    "measured before, during (every eval_steps) and after training",
                                    default_factory=list)
    eval_fraction: float = _help("hold out this share of the --dataset examples instead (drawn with --seed; "
                                 "0 = no held-out set)", default=0.0)
    max_length: int = _help("truncate examples to this many tokens", default=2048)
    group_by_length: bool = _help("batch examples of similar length together (transformers' LengthGroupedSampler: "
                                  "a new random order every epoch, sorted by length within groups of up to 50 "
                                  "batches), so batches carry little padding; false = uniformly random batches. "
                                  "Not used with --packing (packed rows carry no padding)", default=True)

    def __post_init__(self) -> None:
        _check_positive(self, ("max_length",))
        if not 0 <= self.eval_fraction < 1:
            raise PlaypenError(f"--eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.eval_fraction and self.eval_dataset:
            raise PlaypenError("--eval_fraction and --eval_dataset both choose the held-out set; pass only one")
        super().__post_init__()


MAX_FORMAT_REWARD = 1.0  # --format_reward: at most as much as winning (success reward 1)


@dataclass
class GamesConfig(ConfigGroup):
    """games

    What a learner that learns from play plays: the games and the split of their instances, the
    held-out split, the partner and the policy's player, the reward read from clemcore's scores,
    and how the policy samples its turns.
    """

    games: list[str] = field(default_factory=list, metadata={
        "help": "games to play (comma-separated or repeated), from clemcore's game registry", "aliases": ["-g"]})
    suite: str | None = _help("clem: every game of benchmark 2.0 in the game registry, instead of -g", default=None)
    split: str = _help("split of --split_source whose instances the policy learns on", default="train")
    eval_split: str | None = _help("held-out split of --split_source: its mean reward (each instance played once) "
                                   "is measured before training and every eval_steps (None = none)", default=None)
    split_source: str | None = _help("instance splits, as for playpen play: a hub dataset id or a .jsonl/.json/.csv "
                                     "file with game, experiment, task_id, split rows (the demo game ships "
                                     "playpen_tune/demo_game/wordecho/splits.jsonl in the installed package); "
                                     "None = colab-potsdam/playpen-data",
                                     default=None)
    allow_eval_instances: bool = _help("train on --split even where it holds instances of the evaluation split "
                                       "(validation) of --split_source; refused by default", default=False)
    partner: str | None = field(default=None, metadata={
        "help": "model playing the other roles of multi-player games (a registry name, or programmatic); "
                "None = the policy plays every role, learning from --player's", "aliases": ["-t"]})
    player: int = _help("the player the policy is in multi-player games, numbered as the models of 'clem run "
                        "-m A B' (1 = the first role, e.g. a Describer); the partner plays the others. In "
                        "self-play (no -t) the policy plays every role and learns from this one", default=1)
    reward: str = _help("episode reward: success (1/0/-1 for success/failure/aborted), main_score (Main Score "
                        "/ 100) or a dotted path into scores.json (e.g. 'episode scores.Correct Words')",
                        default="success")
    format_reward: float = _help("add this weight (in [0, 1]) times the episode's Request Success Ratio", default=0.0)
    num_generations: int = _help("G: episodes per instance in one GRPO group (>= 2)", default=4)
    temperature: float = _help("sampling temperature of the rollouts", default=1.0)
    max_tokens: int = _help("new tokens per policy turn", default=64)

    def __post_init__(self) -> None:
        _check_positive(self, ("max_tokens",))
        if self.suite not in (None, "clem"):
            raise PlaypenError(f"--suite must be clem (the games of benchmark 2.0), got {self.suite!r}")
        if bool(self.games) == bool(self.suite):
            raise PlaypenError("pass either -g GAME[,GAME...] or --suite clem: the games to play "
                               "(see 'playpen list games')")
        if self.player < 1:
            raise PlaypenError(f"--player must be >= 1 (1 = the first role), got {self.player}")
        if self.num_generations < 2:
            raise PlaypenError(f"--num_generations must be >= 2 (GRPO compares the episodes of a group), "
                               f"got {self.num_generations}")
        if self.temperature <= 0:
            raise PlaypenError(f"--temperature must be > 0 (GRPO needs different episodes in a group), "
                               f"got {self.temperature}")
        if not 0 <= self.format_reward <= MAX_FORMAT_REWARD:
            raise PlaypenError(f"--format_reward must be in [0, {MAX_FORMAT_REWARD:g}] (the weight of the share of "
                               f"turns the game could parse, added to the reward), got {self.format_reward}")
        if self.eval_split is not None and self.eval_split == self.split:
            raise PlaypenError(f"--eval_split {self.eval_split} is the split grpo_qlora trains on, so its reward would "
                               f"not be held out; pass another split (e.g. --eval_split validation)")
        if not self.reward or self.reward.startswith(".") or self.reward.endswith("."):
            raise PlaypenError(f"--reward must be success, main_score or a dotted path into scores.json, "
                               f"got {self.reward!r}")
        super().__post_init__()


@dataclass
class PolicyConfig(ConfigGroup):
    """policy

    The model trained: how the base of -m loads (4-bit quantization, attention kernel, what code
    and files may be loaded), its LoRA adapter, and gradient checkpointing.
    """

    load_in_4bit: bool = _help("load the base in 4 bit (bitsandbytes)", default=DEFAULT_QUANTIZATION["load_in_4bit"])
    bnb_4bit_quant_type: str = _help("nf4 or fp4", default=DEFAULT_QUANTIZATION["bnb_4bit_quant_type"])
    bnb_4bit_use_double_quant: bool = _help("quantize the quantization constants too",
                                            default=DEFAULT_QUANTIZATION["bnb_4bit_use_double_quant"])
    bnb_4bit_compute_dtype: str = _help("auto (bf16 where supported, else fp16 on GPU, fp32 on CPU), "
                                        "bfloat16, float16 or float32",
                                        default=DEFAULT_QUANTIZATION["bnb_4bit_compute_dtype"])
    lora_r: int = _help("LoRA rank", default=16)
    lora_alpha: int = _help("LoRA alpha", default=16)
    lora_dropout: float = _help("LoRA dropout", default=0.05)
    lora_target_modules: list[str] = _help("modules to adapt; 'all-linear' = every linear projection",
                                           default_factory=lambda: ["all-linear"])
    use_rslora: bool = _help("rank-stabilised LoRA scaling", default=False)
    gradient_checkpointing: bool = _help("trade compute for memory", default=True)
    attn_implementation: str | None = _help("attention kernel passed to from_pretrained (e.g. sdpa, eager, "
                                            "flash_attention_2); None = transformers' default", default=None)
    trust_remote_code: bool = _help("allow model code from the hub (off by default)", default=False)
    allow_pickle: bool = _help("allow loading .bin (pickle) adapters; safetensors only by default",
                               default=False)

    def __post_init__(self) -> None:
        _check_positive(self, ("lora_r", "lora_alpha"))
        if not 0 <= self.lora_dropout < 1:
            raise PlaypenError(f"--lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.bnb_4bit_quant_type not in ("nf4", "fp4"):
            raise PlaypenError(f"--bnb_4bit_quant_type must be nf4 or fp4, got {self.bnb_4bit_quant_type!r}")
        if self.bnb_4bit_compute_dtype not in ("auto", "bfloat16", "float16", "float32"):
            raise PlaypenError("--bnb_4bit_compute_dtype must be auto, bfloat16, float16 or float32, "
                               f"got {self.bnb_4bit_compute_dtype!r}")
        if self.attn_implementation is not None:
            check_attn_implementation(self.attn_implementation)
        super().__post_init__()


@dataclass
class TrainingConfig(ConfigGroup):
    """training

    The optimizer and its schedule, batches and steps, checkpoints, logging, the seed and the run
    directory (TRL's training arguments).
    """

    learning_rate: float = _help("peak learning rate", default=2e-4)
    lr_scheduler_type: str = _help("transformers scheduler name", default="linear")
    per_device_train_batch_size: int = _help("examples per device and step", default=4)
    gradient_accumulation_steps: int = _help("micro-batches per optimizer step", default=4)
    max_steps: int = _help("optimizer steps; -1 = use num_train_epochs", default=-1)
    num_train_epochs: float = _help("epochs when max_steps is -1", default=1.0)
    warmup_steps: int = _help("linear warm-up steps", default=0)
    optim: str = _help("optimizer (transformers name, e.g. adamw_torch, paged_adamw_8bit)",
                       default="adamw_torch")
    seed: int = _help("random seed", default=42)
    logging_steps: int = _help("log loss every N steps", default=10)
    eval_steps: int = _help("measure on the held-out set every N steps", default=100)
    save_steps: int = _help("checkpoint every N steps", default=500)
    save_total_limit: int | None = _help("keep at most N checkpoints (None = all)", default=None)
    report_to: str = _help("none, tensorboard or wandb (opt-in, never required)", default="none")
    output_dir: str | None = _help("run directory (default models/<name>)", default=None)

    def __post_init__(self) -> None:
        _check_positive(self, ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
                               "logging_steps", "save_steps", "eval_steps"))
        if self.max_steps == 0 or self.max_steps < -1:
            raise PlaypenError(f"--max_steps must be > 0 (or -1 to use --num_train_epochs), got {self.max_steps}")
        if self.max_steps == -1 and self.num_train_epochs <= 0:
            raise PlaypenError(f"--num_train_epochs must be > 0, got {self.num_train_epochs}")
        if self.warmup_steps < 0:
            raise PlaypenError(f"--warmup_steps must be >= 0, got {self.warmup_steps}")
        from transformers.trainer_utils import SchedulerType
        from transformers.training_args import OptimizerNames

        for name, choices in (("optim", OptimizerNames), ("lr_scheduler_type", SchedulerType)):
            if getattr(self, name) not in {choice.value for choice in choices}:
                raise PlaypenError(f"--{name} {getattr(self, name)!r} is not known to transformers; use one of "
                                   f"{', '.join(sorted(choice.value for choice in choices))}")
        if not 0 <= self.seed < 2**32:
            raise PlaypenError(f"--seed must be in [0, 2**32), got {self.seed}")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise PlaypenError(f"--save_total_limit must be >= 1 (checkpoints kept), or None to keep all; "
                               f"got {self.save_total_limit}")
        if self.report_to not in ("none", "tensorboard", "wandb"):
            raise PlaypenError(f"--report_to must be none, tensorboard or wandb, got {self.report_to!r}")
        check_logger_installed(self.report_to)
        super().__post_init__()


# --report_to: the packages transformers' logging callback imports, and what to install
LOGGER_PACKAGES = {"tensorboard": (("tensorboard", "tensorboardX"), "pip install tensorboard"),
                   "wandb": (("wandb",), "pip install wandb")}


def check_logger_installed(report_to: str) -> None:
    """``--report_to`` a logger that is not installed fails in transformers after the model loaded: say it now."""
    import importlib.util

    if report_to not in LOGGER_PACKAGES:
        return
    modules, install = LOGGER_PACKAGES[report_to]
    if not any(importlib.util.find_spec(module) for module in modules):
        raise PlaypenError(f"--report_to {report_to} needs the {modules[0]} package, which is not installed: "
                           f"{install} (or pass --report_to none)")


def check_attn_implementation(name: str) -> None:
    """``--attn_implementation`` must be an attention kernel transformers knows (a hub kernel repo id passes)."""
    from transformers import AttentionInterface

    known = sorted({"eager", *AttentionInterface().valid_keys()})
    kernel = name.removeprefix("paged|")
    if "/" in kernel or kernel in known:
        return
    raise PlaypenError(f"--attn_implementation {name!r} is not an attention implementation transformers knows; "
                       f"use one of {', '.join(known)} (or leave it unset for transformers' default)")


@dataclass
class SFTQLoRAConfig(DatasetConfig, PolicyConfig, TrainingConfig):
    """sft_qlora

    Which transcripts SFT keeps, how examples are packed, and which tokens its loss counts.
    """

    outcomes: list[str] = _help("only transcripts with these outcomes: success, failure, aborted",
                                default_factory=lambda: ["success"])
    packing: bool = _help("pack several examples into one sequence (TRL bfd)", default=False)
    padding_free: bool = _help("flatten batches without padding (TRL padding_free)", default=False)
    assistant_only_loss: bool = _help("loss only on assistant turns of conversations", default=True)
    completion_only_loss: bool = _help("loss only on the completion of prompt/completion data", default=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = set(self.outcomes) - {"success", "failure", "aborted"}
        if unknown:
            raise PlaypenError(f"--outcomes accepts success, failure, aborted; got {', '.join(sorted(unknown))}")


@dataclass
class DPOQLoRAConfig(DatasetConfig, PolicyConfig, TrainingConfig):
    """dpo_qlora

    The preference loss (its temperature against the reference and its type), which episode
    pairs count, and how prompts are cut.
    """

    learning_rate: float = _help("peak learning rate", default=5e-5)  # the training group's, DPO's default
    beta: float = _help("DPO temperature: how far the policy may move from the reference", default=0.1)
    loss_type: str = _help("TRL DPO loss: sigmoid, ipo, hinge, robust, ...", default="sigmoid")
    max_prompt_length: int | None = _help("truncate prompts to this many tokens", default=None)
    precompute_ref_log_probs: bool = _help("compute reference log-probs once before training",
                                           default=False)
    min_score_gap: float = _help("episode pairs need at least this score difference", default=0.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0:
            raise PlaypenError(f"--beta must be > 0, got {self.beta}")
        if self.min_score_gap < 0:
            raise PlaypenError(f"--min_score_gap must be >= 0, got {self.min_score_gap}")


@dataclass
class GRPOQLoRAConfig(GamesConfig, PolicyConfig, TrainingConfig):
    """grpo_qlora

    The KL term to the reference, and rollouts generated on a vLLM server (--use_vllm) instead
    of the live policy. The policy plays games; the rewards come from clemcore's scores.json.
    """

    # the training group's fields, with GRPO's defaults and meaning
    per_device_train_batch_size: int = _help("episodes per micro-batch (a multiple of --num_generations)", default=4)
    gradient_accumulation_steps: int = _help("micro-batches per optimizer step; all its episodes are played as "
                                             "one batch", default=1)
    learning_rate: float = _help("peak learning rate", default=1e-5)
    beta: float = _help("KL coefficient to the reference (the base, or the frozen starting adapter)", default=0.04)
    use_vllm: bool = _help("generate the rollouts on a vLLM server serving the base (unquantized, or "
                           "--vllm_quantization) and the LoRA adapter, reloaded in place after each optimizer step; "
                           "one GPU or none is enough (see README, 'Generation on vLLM')",
                           default=False)
    vllm_server_base_url: str | None = _help("a running vLLM server of --use_vllm (started with --enable-lora and "
                                             "--logprobs-mode processed_logprobs). Default: start one from "
                                             "--vllm_python", default=None)
    vllm_python: str | None = _help("python of vLLM's virtual environment that --use_vllm starts its server with. "
                                    "Default: $PLAYPEN_VLLM_PYTHON", default=None)
    vllm_quantization: str | None = _help("the started server's --quantization (bitsandbytes on a GPU: the 4-bit "
                                          "base as trained). Default: unquantized", default=None)
    vllm_args: str = _help("more arguments of the started server, e.g. '--gpu-memory-utilization 0.3'", default="")
    vllm_server_timeout: float = _help("seconds to wait for the --use_vllm server to be ready", default=600.0)
    vllm_importance_sampling_correction: bool = _help(
        "with --use_vllm, correct the loss for the difference between the server's and the policy's token "
        "probabilities (TRL's truncated importance sampling)", default=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.per_device_train_batch_size % self.num_generations:
            raise PlaypenError(f"--per_device_train_batch_size ({self.per_device_train_batch_size}) must be a "
                               f"multiple of --num_generations ({self.num_generations}): a micro-batch holds whole "
                               f"groups")
        if self.beta < 0:
            raise PlaypenError(f"--beta must be >= 0, got {self.beta}")
        if self.use_vllm:
            from playpen_tune.rl.vllm_server import check_vllm_usable

            check_vllm_usable()
        for option in fields(self):
            if option.name.startswith("vllm_") and not self.use_vllm and getattr(self, option.name) != option.default:
                raise PlaypenError(f"--{option.name} applies only with --use_vllm; add --use_vllm or drop it")
