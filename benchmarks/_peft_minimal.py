"""The floor of ``learner_overhead.py``: plain peft forward + backward + AdamW step, no trainer at all.

    python benchmarks/_peft_minimal.py SETTINGS.json

The same 4-bit base, LoRA, data file, batch size, max_length, learning rate and steps as the two
trainer variants; conversations are rendered with the chat template and tokenized once, batches
are drawn at random (seeded) and right-padded, and the loss covers every real token (no masks:
the cost is the same). The timing file has the layout of ``_hooks/sitecustomize.py`` (``train_s``
covers the steps only; ``num_tokens`` counts the non-padding tokens trained).
"""
import json
import os
import random
import sys
import time

import torch
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

s = json.load(open(sys.argv[1]))
tokenizer = AutoTokenizer.from_pretrained(s["model"])
quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=torch.float32)
model = AutoModelForCausalLM.from_pretrained(s["model"], quantization_config=quantization, dtype=torch.float32)
model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=s["gradient_checkpointing"],
                                        gradient_checkpointing_kwargs={"use_reentrant": False})
model = get_peft_model(model, LoraConfig(r=s["lora_r"], lora_alpha=s["lora_alpha"], lora_dropout=s["lora_dropout"],
                                         target_modules="all-linear", task_type="CAUSAL_LM"))
rows = json.load(open(s["data"]))
encoded = [tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"][:s["max_length"]]
           for r in rows]
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=s["learning_rate"])
rng = random.Random(s["seed"])
pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
model.train()
began_wall, began, tokens, losses = time.time(), time.perf_counter(), 0, []
for step in range(s["max_steps"] * s["gradient_accumulation_steps"]):
    batch = rng.sample(encoded, s["per_device_train_batch_size"])
    width = max(len(ids) for ids in batch)
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in batch])
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch])
    loss = model(input_ids=input_ids, attention_mask=mask, labels=input_ids.masked_fill(mask == 0, -100)).loss
    (loss / s["gradient_accumulation_steps"]).backward()
    tokens += int(mask.sum())
    if (step + 1) % s["gradient_accumulation_steps"] == 0:
        optimizer.step()
        optimizer.zero_grad()
        losses.append(round(loss.item(), 4))
call = {"train_began_unix": began_wall, "train_ended_unix": time.time(), "train_s": time.perf_counter() - began,
        "train_runtime": None, "global_step": s["max_steps"], "losses": losses[:: max(1, s["logging_steps"])],
        "num_tokens": tokens, "trainer_class": None}
with open(os.environ["PLAYPEN_BENCH_TIMING"], "w") as handle:
    json.dump({"calls": [call]}, handle)
model.save_pretrained(s["output_dir"])
