"""Preference pairs from episodes of the same game instance played with different results."""

import itertools
import math
from collections import Counter, defaultdict

OUTCOME_RANK = {"aborted": 0, "failure": 1, "success": 2}


def preference_pairs(conversations: list[dict], min_score_gap: float = 0.0) -> tuple[list[dict], Counter]:
    """Pair conversations of one (game, experiment, instance, role) whose episodes scored differently.

    Episodes are compared by main score when both have one, else by outcome (success > failure >
    aborted; such outcome differences always clear ``min_score_gap``). A pair yields
    ``{"prompt": shared messages up to the user turn before the first differing answer,
    "chosen": [better answer], "rejected": [worse answer]}`` (TRL's conversational preference
    format). Returns the pairs and the skip reasons counted per episode pair ("equal scores",
    "score gap below min_score_gap", "identical answers", "contexts differ"), plus
    "single episode" counted per conversation without a partner.
    """
    groups = defaultdict(list)
    for conversation in conversations:
        key = tuple(conversation[k] for k in ("game", "experiment", "instance", "role"))
        groups[key].append(conversation)
    pairs, skipped = [], Counter()
    for group in groups.values():
        if len(group) == 1:
            skipped["single episode"] += 1
        for first, second in itertools.combinations(group, 2):
            pair = _pair(first, second, min_score_gap)
            if isinstance(pair, str):
                skipped[pair] += 1
            else:
                pairs.append(pair)
    return pairs, skipped


def _pair(first: dict, second: dict, min_score_gap: float) -> dict | str:
    """Return the preference pair, or the reason why these two conversations give none."""
    better, worse, gap = _ranked(first, second)
    if gap == 0:
        return "equal scores"
    if gap < min_score_gap:
        return "score gap below min_score_gap"
    pairs = zip(better["messages"], worse["messages"], strict=False)  # the first difference, in the shorter length
    index = next((i for i, (a, b) in enumerate(pairs) if a != b), None)
    if index is None:
        return "identical answers"
    if better["messages"][index]["role"] != "assistant":
        return "contexts differ"
    return {
        "prompt": better["messages"][:index],
        "chosen": [better["messages"][index]],
        "rejected": [worse["messages"][index]],
    }


def _ranked(first: dict, second: dict) -> tuple[dict, dict, float]:
    """Order two conversations best first, with their score gap (inf when decided by outcome)."""
    if first["main_score"] is not None and second["main_score"] is not None:
        difference = first["main_score"] - second["main_score"]
        gap = abs(difference)
    else:
        difference = OUTCOME_RANK[first["outcome"]] - OUTCOME_RANK[second["outcome"]]
        gap = math.inf if difference else 0.0
    return (first, second, gap) if difference >= 0 else (second, first, gap)
