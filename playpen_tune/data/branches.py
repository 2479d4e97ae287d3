"""Turn-level preference pairs from the episode trees of ``playpen play MODEL --branching K``.

Sibling branches of one branching point share everything up to the answer in which they differ, and then
play on to their own ends. A point gives one pair: the answer of the branch whose episodes scored best
(clemcore's Main Score, averaged over the episodes the branch led to; an aborted episode counts 0, as in
clemscore) is chosen, the answer of the worst branch rejected; the prompt is the player's conversation up to
that answer. This credits a single turn, where pairing whole episodes compares everything that followed the
first difference (:mod:`playpen_tune.data.preferences`).
"""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path
from statistics import fmean


def in_branch_tree(conversation: dict) -> bool:
    """True for a conversation of an episode written by ``playpen play --branching``."""
    from playpen.api import BRANCH_FILE

    return bool(conversation.get("episode_dir")) and (Path(conversation["episode_dir"]) / BRANCH_FILE).is_file()


def branch_pairs(conversations: list[dict], min_score_gap: float = 0.0) -> tuple[list[dict], Counter, int]:
    """Pairs of the branching points the ``conversations`` (of branch-tree episodes) pass.

    Returns the pairs (TRL's conversational preference rows), the skip reasons counted per branching point
    ("equal scores", "score gap below min_score_gap", "identical answers", "contexts differ", "single branch"
    when the others were filtered out) and the number of branching points seen.
    """
    from playpen.api import BRANCH_FILE

    points: dict = defaultdict(lambda: defaultdict(list))  # (tree, point) -> branch -> [(score, messages, answer)]
    for conversation in conversations:
        episode_dir = Path(conversation["episode_dir"])
        path = json.loads((episode_dir / BRANCH_FILE).read_text(encoding="utf-8"))["path"]
        score = conversation["main_score"] if conversation["main_score"] is not None else 0.0
        for step in path:
            if step["player"] == conversation["player"]:
                points[(episode_dir.parent, step["point"])][step["branch"]].append(
                    (score, conversation["messages"], step["answer"]))
    pairs, skipped = [], Counter()
    for branches in points.values():
        pair = _pair(branches, min_score_gap)
        if isinstance(pair, str):
            skipped[pair] += 1
        else:
            pairs.append(pair)
    return pairs, skipped, len(points)


def _pair(branches: dict, min_score_gap: float) -> dict | str:
    """The pair of one branching point, or why it gives none."""
    if len(branches) < 2:
        return "single branch"
    ranked = sorted(branches.values(), key=lambda episodes: fmean(score for score, _, _ in episodes), reverse=True)
    best, worst = ranked[0], ranked[-1]
    gap = fmean(score for score, _, _ in best) - fmean(score for score, _, _ in worst)
    if math.isclose(gap, 0.0, abs_tol=1e-9):
        return "equal scores"
    if gap < min_score_gap:
        return "score gap below min_score_gap"
    (prompt, chosen), (other_prompt, rejected) = _split(*best[0][1:]), _split(*worst[0][1:])
    if chosen is None or rejected is None or prompt != other_prompt:
        return "contexts differ"
    if chosen == rejected:
        return "identical answers"
    return {"prompt": prompt, "chosen": [chosen], "rejected": [rejected]}


def _split(messages: list[dict], answer: int) -> tuple[list[dict], dict | None]:
    """The messages before the player's answer number ``answer`` (0-based), and that answer (None if missing)."""
    answers = [index for index, message in enumerate(messages) if message["role"] == "assistant"]
    if answer >= len(answers):
        return messages, None
    return messages[:answers[answer]], messages[answers[answer]]
