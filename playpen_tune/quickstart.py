"""``playpen quickstart``: the whole loop offline, in a few minutes on two CPU cores.

1. build a tiny chat model offline and register it as ``tiny-base``;
2. ``playpen play`` the demo game ``wordecho`` (package data of playpen_tune) with clemcore's programmatic expert on
   the train split of the game's split file (``playpen_tune/demo_game/wordecho/splits.jsonl``);
3. ``playpen learn -l sft_qlora`` on those transcripts (4-bit NF4 base + LoRA), checked against the
   validation split;
4. optionally ``playpen play`` the base model on the train split too and ``playpen learn -l dpo_qlora``
   on pairs of its own episodes vs the expert's (on-policy preferences);
5. ``playpen eval`` the tuned model(s) on the validation split against the base.

Every step goes through the same CLI commands a user would type. It fails (non-zero exit) when
the tuned model does not beat the base.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from playpen.api import PlaypenError
from playpen_tune.games import DEMO_SPLIT_FILE

BASE = "tiny-base"
GAME_ARGS = ["-g", "wordecho", "--split_source", str(DEMO_SPLIT_FILE)]
# The recipe for the tiny model: a high learning rate and a larger LoRA rank.
SFT_ARGS = ["--learning_rate", "3e-3", "--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "1",
            "--lora_r", "32", "--lora_alpha", "64", "--lora_dropout", "0", "--max_length", "128",
            "--logging_steps", "20", "--save_steps", "100", "--warmup_steps", "10"]
SFT_STEPS = 300


def _step(number: int, text: str) -> None:
    print(f"\n=== [{number}/5] {text}", flush=True)


def _playpen(*args: str) -> None:
    from playpen.api import cli_main

    try:
        cli_main(list(args))
    except SystemExit as exit_:
        if exit_.code in (130, 143):  # interrupted: cli_main() said how to resume that step
            raise
        if exit_.code:
            raise PlaypenError(f"quickstart step 'playpen {' '.join(args)}' failed (exit {exit_.code})") from None


def run_quickstart(directory: Path, dpo: bool = False, sft_steps: int | None = None) -> dict:
    """Run the loop in ``directory`` (created; must be empty) and return the val.json contents."""
    from playpen.api import refuse_file, upsert_entry
    from playpen_tune.games import demo_corpus, write_game_registry
    from playpen_tune.tiny import build_tiny_chat_model, registry_entry

    if sft_steps is not None and sft_steps < 1:
        raise PlaypenError(f"--sft_steps must be >= 1 (SFT steps of the quickstart; default {SFT_STEPS}), "
                           f"got {sft_steps}")
    directory = refuse_file(directory, "quickstart directory").absolute()
    if directory.exists() and any(directory.iterdir()):
        raise PlaypenError(f"{directory} is not empty; pass a new directory to 'playpen quickstart DIR'")
    directory.mkdir(parents=True, exist_ok=True)
    os.chdir(directory)

    _step(1, f"building a tiny chat model offline and registering it as '{BASE}'")
    model_dir = build_tiny_chat_model(directory / "models" / BASE, corpus=demo_corpus(), hidden_size=128)
    upsert_entry(registry_entry(BASE, model_dir))
    write_game_registry(directory)

    _step(2, "playpen play mock: the programmatic expert plays wordecho's train split (clemcore)")
    _playpen("play", "mock", *GAME_ARGS, "-r", "transcripts")

    _step(3, "playpen learn -l sft_qlora (4-bit NF4 base + LoRA) on the expert transcripts")
    steps = str(SFT_STEPS if sft_steps is None else sft_steps)
    _playpen("learn", "-l", "sft_qlora", "-m", BASE, "--dataset", "transcripts", "--split_source", str(DEMO_SPLIT_FILE),
             "--max_steps", steps, *SFT_ARGS)
    tuned = f"{BASE}-sft_qlora"

    if dpo:
        _step(4, "playpen learn -l dpo_qlora on the base model's failed episodes vs the expert's")
        _playpen("play", BASE, *GAME_ARGS, "-r", "transcripts", "-L", "8")
        _playpen("learn", "-l", "dpo_qlora", "-m", tuned, "--dataset", "transcripts",
                 "--split_source", str(DEMO_SPLIT_FILE), "--max_steps", "40",
                 "--learning_rate", "1e-3", "--per_device_train_batch_size", "8", "--gradient_accumulation_steps",
                 "1", "--max_length", "128", "--logging_steps", "10", "--beta", "0.1")
        tuned = f"{tuned}-dpo_qlora"
    else:
        _step(4, "DPO skipped (run 'playpen quickstart --dpo' to add it)")

    _step(5, f"playpen eval {tuned} --baseline {BASE} on the validation split")
    _playpen("eval", tuned, "--baseline", BASE, "-r", "eval", *GAME_ARGS, "-L", "8")
    scores = {name: json.loads((directory / "eval" / f"{name}.val.json").read_text()) for name in (BASE, tuned)}
    base_score, tuned_score = scores[BASE]["clemscore"] or 0.0, scores[tuned]["clemscore"] or 0.0
    print(f"\nquickstart: clemscore {BASE} = {base_score:.2f}, {tuned} = {tuned_score:.2f} "
          f"(wordecho's validation split, computed by clemcore); files in {directory}")
    if tuned_score <= base_score:
        raise PlaypenError(f"the tuned model did not beat the base ({tuned_score:.2f} <= {base_score:.2f})")
    return scores
