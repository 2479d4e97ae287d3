"""The baseline of ``learner_overhead.py``: QLoRA SFT written by hand with TRL, nothing else.

    python benchmarks/_trl_minimal.py SETTINGS.json

SETTINGS.json holds the model directory, the data file, the output directory and the same
LoRA / 4-bit / SFTConfig values that ``learner_overhead.py`` passes to ``playpen learn -l
sft_qlora``. The script mirrors what the learner configures (so the comparison is like for like)
but none of its checks, data report, manifest or registry update.
"""
import json
import sys

import torch
from datasets import load_dataset
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from trl import SFTConfig, SFTTrainer

s = json.load(open(sys.argv[1]))
on_gpu = torch.cuda.is_available()
dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if on_gpu else torch.float32

tokenizer = AutoTokenizer.from_pretrained(s["model"])
quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=dtype)
model = AutoModelForCausalLM.from_pretrained(s["model"], quantization_config=quantization, dtype=dtype,
                                             device_map={"": 0} if on_gpu else None)
model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=s["gradient_checkpointing"],
                                        gradient_checkpointing_kwargs={"use_reentrant": False})
model = get_peft_model(model, LoraConfig(r=s["lora_r"], lora_alpha=s["lora_alpha"], lora_dropout=s["lora_dropout"],
                                         target_modules="all-linear", task_type="CAUSAL_LM"))
dataset = load_dataset("json", data_files=s["data"], split="train")

args = SFTConfig(
    output_dir=s["output_dir"], learning_rate=s["learning_rate"], lr_scheduler_type="linear",
    per_device_train_batch_size=s["per_device_train_batch_size"],
    gradient_accumulation_steps=s["gradient_accumulation_steps"], max_steps=s["max_steps"],
    max_length=s["max_length"], optim="adamw_torch", seed=s["seed"], logging_steps=s["logging_steps"],
    logging_first_step=True, save_strategy="steps", save_steps=s["save_steps"], report_to=[],
    gradient_checkpointing=s["gradient_checkpointing"], gradient_checkpointing_kwargs={"use_reentrant": False},
    bf16=on_gpu and dtype == torch.bfloat16, fp16=on_gpu and dtype == torch.float16,
    packing=s["packing"], assistant_only_loss=s.get("assistant_only_loss", True),
)
trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
trainer.train()
trainer.model.save_pretrained(s["output_dir"])
tokenizer.save_pretrained(s["output_dir"])
