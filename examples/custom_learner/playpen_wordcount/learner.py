"""A learner in a few lines: the shape every playpen learner has.

It "trains" nothing; it reads JSONL/JSON conversations and writes per-role word counts, which
is enough to show config fields, the output directory, the manifest and the result object.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from playpen.api import Learner, LearnerResult, LearnRequest, PlaypenError


@dataclass
class WordCountConfig:
    """Fields become YAML keys and --<field> options."""

    dataset: str = field(default="", metadata={"help": "a .json or .jsonl file of {'messages': [...]}"})
    lowercase: bool = field(default=True, metadata={"help": "count words case-insensitively"})
    top_k: int = field(default=5, metadata={"help": "how many words to keep per role"})
    output_dir: str | None = field(default=None, metadata={"help": "run directory"})


class WordCountLearner(Learner):
    """Counts the most frequent words per role (an example plugin learner)."""

    config_class = WordCountConfig

    def learn(self, request: LearnRequest) -> LearnerResult:
        config = request.config
        if not config.dataset:
            raise PlaypenError("pass --dataset FILE")
        with open(config.dataset, encoding="utf-8") as handle:
            text = handle.read()
        if config.dataset.endswith(".json"):
            rows = json.loads(text)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        counts: dict[str, Counter] = {}
        for row in rows:
            for message in row["messages"]:
                words = message["content"].lower().split() if config.lowercase else message["content"].split()
                counts.setdefault(message["role"], Counter()).update(words)
        top = {role: counter.most_common(config.top_k) for role, counter in counts.items()}
        request.output_dir.mkdir(parents=True, exist_ok=True)
        manifest = request.output_dir / "wordcount.json"
        manifest.write_text(json.dumps({"model": request.model["model_name"], "top": top}, indent=2))
        return LearnerResult(output_dir=request.output_dir, manifest_path=manifest,
                             metrics={"examples": len(rows)})
