"""The policy a QLoRA learner trains: the tokenizer, the 4-bit base prepared for k-bit training and
its LoRA adapter (a new one, or the parent's when ``-m`` names a tuned model), and the reference a
TRL trainer that adds the adapter itself (DPO, GRPO) compares it with.

Two starting points, decided by ``-m``:

* a base model: TRL wraps the base in a fresh LoRA adapter (:meth:`Policy.new_adapter`); the
  reference is the base itself, i.e. the same model with the adapter disabled.
* a tuned model (registry backend ``playpen_qlora``, e.g. an ``sft_qlora`` result): its adapter is
  loaded trainable and training continues it. The reference must be that starting policy, not the
  bare base: TRL 1.x copies the loaded adapter into a second, frozen adapter named ``ref`` and
  activates it for the reference forward passes, so at step 0 policy == reference. The ``ref`` copy
  is dropped before saving (:func:`drop_reference_adapter`): the saved adapter alone on the base is
  the trained policy (it already holds what the parent learnt, since training continued its weights).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from playpen.api import LearnRequest, PlaypenError
from playpen_tune import manifest as manifest_io
from playpen_tune.adapters import check_adapter_files
from playpen_tune.credentials import hub_token
from playpen_tune.quantization import load_base_model, quantization_settings
from playpen_tune.registration import BACKEND_NAME

REF_ADAPTER = "ref"  # the name TRL's DPO/GRPO trainers give (and look up for) the frozen reference adapter


@dataclass
class Policy:
    """The loaded model to train and what the manifest says about it.

    Attributes:
        model: the peft model (or the prepared base, when the trainer adds the adapter itself).
        quantization: the effective bitsandbytes settings the base was loaded with.
        lora: the LoRA settings (the parent adapter's when continuing one).
        parent: the adapter continued (``-m`` names a tuned model), or None for a new adapter.
    """

    model: object
    quantization: dict
    lora: dict
    parent: Path | None

    def new_adapter(self):
        """The ``peft_config`` to hand a TRL trainer that adds the adapter itself: a ``LoraConfig`` for a new
        adapter, None when continuing the parent's (TRL then copies it into the frozen ``ref`` adapter)."""
        from peft import LoraConfig

        return LoraConfig(**self.lora) if self.parent is None else None

    @property
    def reference(self) -> str:
        """What the trainer's reference is, for the manifest."""
        if self.parent is None:
            return "base model with adapter disabled"
        return f"frozen copy of the parent adapter {self.parent} (TRL '{REF_ADAPTER}' adapter)"


def parent_adapter(model: dict) -> Path | None:
    """The adapter of a tuned registry entry (``-m`` names an earlier playpen result)."""
    if model.get("backend") != BACKEND_NAME:
        return None
    return Path(model["model_config"]["peft_model"])


def trusts_remote_code(model: dict, config) -> bool:
    """Remote code runs only if the config or the registry entry asks for it."""
    return bool(config.trust_remote_code or (model.get("model_config") or {}).get("trust_remote_code"))


def load_tokenizer(model: dict, config):
    """The tokenizer of ``-m`` (a tuned model's is saved with its adapter); pad token = eos if unset."""
    from transformers import AutoTokenizer

    parent = parent_adapter(model)
    if parent is not None:  # the tokenizer was saved with the adapter: an incomplete adapter dir is caught here
        check_adapter_files(parent, config.allow_pickle)
    source = parent or model["huggingface_id"]
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source), trust_remote_code=trusts_remote_code(model, config),
                                                  token=hub_token(model))
    except OSError as error:
        raise PlaypenError(f"cannot load the tokenizer of '{model['model_name']}' from {source}: "
                           f"{str(error).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def lora_settings(config) -> dict:
    """``LoraConfig`` keyword arguments of the ``--lora_*`` fields."""
    targets = config.lora_target_modules
    return {"r": config.lora_r, "lora_alpha": config.lora_alpha, "lora_dropout": config.lora_dropout,
            "target_modules": "all-linear" if targets == ["all-linear"] else list(targets),
            "use_rslora": config.use_rslora, "task_type": "CAUSAL_LM"}


def load_policy(request: LearnRequest, config, wrap_new_adapter: bool = True) -> Policy:
    """4-bit base prepared for k-bit training, with a new LoRA adapter or the parent's (trainable).

    The parent adapter's files were checked when its tokenizer loaded (:func:`load_tokenizer`).
    With ``wrap_new_adapter=False`` and no parent adapter, the prepared base is returned unwrapped:
    the caller hands ``LoraConfig(**policy.lora)`` to the trainer, which adds the adapter itself.
    """
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    set_seed(config.seed)  # the new adapter's initialisation must depend on --seed too

    wanted = quantization_settings(config)
    parent = parent_adapter(request.model)
    if parent is not None:
        wanted = manifest_io.trained_quantization(parent) or wanted
        print(f"note: continuing the adapter of '{request.model['model_name']}' ({parent}): its LoRA and "
              f"quantization settings are used, --lora_* and --bnb_4bit_* are ignored")
    base, quantization = load_base_model(request.model["huggingface_id"], wanted,
                                         trust_remote_code=trusts_remote_code(request.model, config),
                                         allow_pickle=config.allow_pickle,
                                         attn_implementation=config.attn_implementation, token=hub_token(request.model))
    if quantization["load_in_4bit"]:
        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=config.gradient_checkpointing,
                                               gradient_checkpointing_kwargs={"use_reentrant": False})
    elif config.gradient_checkpointing:  # full precision: no fp32 upcast of every weight
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    if parent is not None:
        model = PeftModel.from_pretrained(base, str(parent), is_trainable=True)
        lora = {k: v for k, v in model.peft_config["default"].to_dict().items()
                if k in ("r", "lora_alpha", "lora_dropout", "target_modules", "use_rslora")}
        if isinstance(lora["target_modules"], set):
            lora["target_modules"] = sorted(lora["target_modules"])
    else:
        lora = lora_settings(config)
        try:
            model = get_peft_model(base, LoraConfig(**lora)) if wrap_new_adapter else base
        except ValueError as error:  # e.g. --lora_target_modules that match nothing
            raise PlaypenError(f"LoRA cannot be applied: {str(error).splitlines()[0]}; "
                               f"check --lora_target_modules") from None
    return Policy(model=model, quantization=quantization, lora=lora, parent=parent)


def check_reference_adapter(model) -> None:
    """Fail loudly if TRL did not set up the frozen reference copy of the parent adapter."""
    import torch

    if REF_ADAPTER not in getattr(model, "peft_config", {}):
        raise RuntimeError("TRL did not add a 'ref' adapter for the parent adapter; the reference would be the bare "
                           "base model. This TRL/peft version is not supported for tuned models")
    params = dict(model.named_parameters())
    for name, param in params.items():
        if f".{REF_ADAPTER}." in name:
            policy = params[name.replace(f".{REF_ADAPTER}.", ".default.")]
            if param.requires_grad or not torch.equal(param.detach().to(policy.dtype), policy.detach()):
                raise RuntimeError(f"reference adapter weight {name} is trainable or differs from the policy's")


def drop_reference_adapter(model) -> None:
    """Delete TRL's frozen ``ref`` copy of a parent adapter, if there is one, so that only the policy is saved."""
    if REF_ADAPTER in getattr(model, "peft_config", {}):
        model.delete_adapter(REF_ADAPTER)
