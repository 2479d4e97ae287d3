"""Entry points for the learners: SFT and preference datasets from files, Hub ids and results dirs.

A source is a local ``.json``/``.jsonl`` file, a clemcore results directory (transcripts) or
a Hugging Face Hub dataset id (``name`` or ``org/name``; see ``source_kind``). Rows keep only
the columns TRL reads:

* SFT: ``{"messages": [...]}`` or ``{"prompt": ..., "completion": ...}`` (both strings or both
  message lists);
* preference: ``{"prompt": ..., "chosen": ..., "rejected": ...}`` (all strings or all message
  lists; results directories give message lists).
"""

import hashlib
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets

from playpen.api import STATIC_GAMES, PlaypenError, is_static_game
from playpen_tune.data import readers
from playpen_tune.data.branches import branch_pairs, in_branch_tree
from playpen_tune.data.files import FILE_SUFFIXES, SHAREGPT_FIX
from playpen_tune.data.preferences import preference_pairs
from playpen_tune.data.transcripts import OUTCOMES, conversations_from_episode, episode_records

SFT_COLUMNS = (("messages",), ("prompt", "completion"))
PREFERENCE_COLUMNS = (("prompt", "chosen", "rejected"),)
FILTER_FIELDS = {"games": "game", "roles": "role", "outcomes": "outcome"}  # applied in this order
EVAL_INSTANCES = "evaluation instances"  # the drop reason of the contamination guard
# the drop reason of the static suite's transcripts (statscore's games, playpen.suites)
STATIC_DROP_REASON = "static-suite games (--include_static_games keeps them)"
NO_PREFERENCE = "chosen identical to rejected"
NO_ANSWER = "no assistant answer to learn"
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant"}  # ShareGPT's role names -> chat template roles


@dataclass
class DataReport:
    """What went into a dataset: per-source counts and drops, the row format, a content fingerprint.

    ``sources`` holds one dict per source: source, kind ("file", "hub" or "transcripts"),
    examples, and dropped ({filter or skip reason: count}; ``"evaluation instances"`` counts the
    conversations of instances of the evaluation split left out); preference pairs of a results directory
    also record ``pairs``: turn-level pairs, the branching points they came from, and episode pairs.
    ``fingerprint`` is the sha256 of the canonical JSON of all rows in order. ``contamination`` says whether and
    against which split the episodes were checked (set by the learner).
    """

    sources: list[dict]
    format: str
    total: int
    fingerprint: str
    contamination: dict | None = None

    def to_dict(self) -> dict:
        """Plain dict for the run manifest."""
        return asdict(self)

    def lines(self) -> list[str]:
        """Human-readable summary, one line per source after a header line."""
        lines = [f"data: {self.total} examples ({self.format}), fingerprint {self.fingerprint[:12]}"]
        for source in self.sources:
            dropped = ", ".join(f"{name} {n}" for name, n in source["dropped"].items() if n)
            pairs = source.get("pairs")
            lines.append(f"  {source['kind']} {source['source']}: {source['examples']} examples"
                         + (f" ({pairs['turn_level']} turn-level pairs from {pairs['branching_points']} branching "
                            f"points, {pairs['episode']} episode pairs)" if pairs and pairs["branching_points"] else "")
                         + (f"; dropped: {dropped}" if dropped else ""))
        if self.contamination:
            lines.append(f"  evaluation instances: {self.contamination['summary']}")
        return lines


@dataclass
class _Part:
    source: str
    kind: str
    rows: list[tuple[dict, str]]  # (row, format)
    dropped: dict = field(default_factory=dict)
    dropped_values: dict = field(default_factory=dict)  # filter -> Counter of the values it dropped
    pairs: dict | None = None  # preference pairs of a results directory: turn-level / episode counts


def _collect(sources, split, filters, columns, from_conversations, from_row, exclude) -> list[_Part]:
    """One _Part per source: results directories through ``from_conversations(conversations, part)``
    (without the conversations of ``exclude``'s instances), files and Hub datasets row by row through
    ``from_row(row, where)``."""
    parts = []
    for source in sources:
        kind = source_kind(source)
        if kind == "transcripts":
            conversations, part = _transcripts(source, filters, exclude)
            from_conversations(conversations, part)
        else:
            name, rows = readers.reader(kind).read(source, split, columns)
            part = _Part(source, kind, [from_row(row, f"{name}: row {i} (0-based)") for i, row in enumerate(rows)])
        parts.append(part)
    return parts


def load_sft_dataset(sources: Sequence[str], split: str = "train", games: Sequence[str] | None = None,
                     roles: Sequence[str] | None = None,
                     outcomes: Sequence[str] | None = ("success",),
                     include_static_games: bool = False, exclude=None) -> tuple[datasets.Dataset, DataReport]:
    """Build an SFT dataset from the sources, in order.

    ``split`` selects the split of Hub sources. ``games``, ``roles`` and ``outcomes`` filter the
    conversations of results directories (None or empty: no filter), after the games of the static
    suite are left out (unless ``include_static_games``); ``exclude`` (a
    :class:`playpen.splits.InstanceSplit`, or None) leaves out their conversations of its instances.
    Files and Hub rows are taken as they are. Sources must all give the same row format.
    """
    filters = _filters(games, roles, outcomes, include_static_games)

    def from_conversations(conversations, part):
        part.rows = [({"messages": c["messages"]}, "messages") for c in conversations]

    parts = _collect(sources, split, filters, SFT_COLUMNS, from_conversations, _sft_row, exclude)
    _drop_rows_without_signal(parts, _has_answer, NO_ANSWER)
    if not any(part.rows for part in parts):
        raise PlaypenError(_empty_eval_message(parts, exclude) or _empty_sft_message(parts, filters))
    return _dataset(parts)


def load_preference_dataset(sources: Sequence[str], split: str = "train", games: Sequence[str] | None = None,
                            roles: Sequence[str] | None = None,
                            min_score_gap: float = 0.0, include_static_games: bool = False,
                            exclude=None) -> tuple[datasets.Dataset, DataReport]:
    """Build a preference (DPO) dataset from the sources, in order.

    Files and Hub rows need prompt/chosen/rejected. Results directories give pairs of episodes of
    the same instance and role that scored differently (see ``preference_pairs``), and the episode
    trees of ``playpen play --branching`` one pair per branching point (see ``branch_pairs``), after the static
    suite's games (unless ``include_static_games``) and the ``games`` and ``roles`` filters and
    without the episodes of ``exclude``'s instances;
    ``min_score_gap`` is the smallest main-score difference kept.
    """
    filters = _filters(games, roles, None, include_static_games)

    def from_conversations(conversations, part):
        in_trees = [c for c in conversations if in_branch_tree(c)]
        turn_pairs, turn_skipped, points = branch_pairs(in_trees, min_score_gap)
        pairs, skipped = preference_pairs([c for c in conversations if not in_branch_tree(c)], min_score_gap)
        part.rows = [(pair, "preference (messages)") for pair in turn_pairs + pairs]
        part.dropped.update(skipped + turn_skipped)
        part.pairs = {"turn_level": len(turn_pairs), "branching_points": points, "episode": len(pairs)}

    def from_row(row, where):
        return _typed(row, where, "preference", PREFERENCE_COLUMNS[0])

    parts = _collect(sources, split, filters, PREFERENCE_COLUMNS, from_conversations, from_row, exclude)
    # a pair whose answers are the same carries no preference: DPO's loss would stay at ln 2
    _drop_rows_without_signal(parts, lambda row: row["chosen"] != row["rejected"], NO_PREFERENCE)
    if not any(part.rows for part in parts):
        if _empty_eval_message(parts, exclude):
            raise PlaypenError(_empty_eval_message(parts, exclude))
        removed = Counter()
        for part in parts:
            removed.update(part.dropped)
        if removed[NO_PREFERENCE] and all(part.kind != "transcripts" for part in parts):
            raise PlaypenError(f"0 preference pairs from {', '.join(map(str, sources))}: in all "
                               f"{removed[NO_PREFERENCE]} rows chosen and rejected are the same, so there is "
                               f"nothing to prefer; give rows whose chosen answer differs from the rejected one")
        reasons = ", ".join(f"{name} {n}" for name, n in removed.most_common() if n) or "the sources have no rows"
        gap_hint = " or lower min_score_gap" if removed["score gap below min_score_gap"] else ""
        raise PlaypenError(
            f"0 preference pairs from {', '.join(map(str, sources))} (removed: {reasons}); pairs need two or more "
            "episodes of the same game instance and role (e.g. runs of several models) with different scores "
            f"and differing answers: add such results{gap_hint}"
        )
    return _dataset(parts)


def source_kind(source: str) -> str:
    """Classify a source as a plugin's kind (:mod:`playpen_tune.data.readers`), "file" (.json/.jsonl),
    "transcripts" (a directory) or "hub" (a dataset id).

    Hub ids look like ``name`` or ``org/name``; anything that looks like a path (a trailing
    separator, a data-file suffix, a leading '.', '/' or '~', or more than one '/') is local, so
    a mistyped path is reported as missing rather than looked up on the Hub.
    """
    text = str(source)
    if not text.strip():
        raise PlaypenError("empty data source; pass a .json/.jsonl file, a results directory or a Hub dataset id")
    for kind, plugin_reader in readers.plugin_readers().items():
        if plugin_reader.claims(text):
            return kind
    path = Path(text).expanduser()
    if path.is_dir():
        return readers.TRANSCRIPTS
    if readers.BUILTIN_READERS["file"].claims(text):
        return "file"  # a missing one is reported by read_rows
    supported = f"supported: {', '.join(FILE_SUFFIXES)} files and clemcore results directories"
    if path.exists():
        raise PlaypenError(f"{source}: unsupported data file type{f' {path.suffix!r}' if path.suffix else ''} "
                           f"({supported}); convert it to .jsonl (one JSON object per line)")
    if _looks_local(text):
        note = f" ({supported})" if path.suffix.lower() in _DATA_SUFFIXES else ""
        raise PlaypenError(f"{source}: no such file or directory{note}; check the path")
    return "hub"


_DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".txt", ".tsv", ".arrow")
_SEPARATORS = tuple(sep for sep in {"/", os.sep, os.altsep} if sep)


def _looks_local(source: str) -> bool:
    """True for sources that cannot be a Hub id (``name`` or ``org/name``)."""
    return (source.endswith(_SEPARATORS) or source.startswith((".", "/", "~"))
            or Path(source).suffix.lower() in _DATA_SUFFIXES or source.count("/") > 1
            or (os.sep != "/" and os.sep in source))


def _drop_rows_without_signal(parts: list[_Part], has_signal, reason: str) -> None:
    """Leave out rows that give the learner nothing to learn, counted under ``reason`` in the data report."""
    for part in parts:
        kept = [(row, kind) for row, kind in part.rows if has_signal(row)]
        if len(kept) < len(part.rows):
            part.dropped[reason] = len(part.rows) - len(kept)
            part.rows = kept


def _has_answer(row: dict) -> bool:
    """An SFT row trains on something: an assistant message with content, or a non-empty completion."""
    if "messages" in row:
        return any(m.get("role") == "assistant" and m.get("content") for m in row["messages"])
    completion = row["completion"]
    return bool(completion.strip() if isinstance(completion, str) else _has_answer({"messages": completion}))


def _filters(games, roles, outcomes, include_static_games=False) -> dict:
    unknown = sorted(set(outcomes or ()) - set(OUTCOMES))
    if unknown:
        raise PlaypenError(f"unknown outcome(s) {', '.join(unknown)}; use a comma list of {', '.join(OUTCOMES)}")
    return {"games": games or None, "roles": roles or None, "outcomes": outcomes or None,
            "include_static_games": include_static_games}


def _transcripts(source: str, filters: dict, exclude) -> tuple[list[dict], _Part]:
    """Conversations of a results directory after the filters and without those of ``exclude``'s
    instances, and a part recording the drops."""
    conversations = [c for record in episode_records(source) for c in conversations_from_episode(record)]
    part = _Part(source, "transcripts", [])
    if not filters["include_static_games"]:
        static = [c for c in conversations if is_static_game(c["game"])]
        conversations = [c for c in conversations if not is_static_game(c["game"])]
        if static:
            part.dropped[STATIC_DROP_REASON] = len(static)
    for name, key in FILTER_FIELDS.items():
        wanted = filters[name]
        if wanted is None:
            continue
        removed = Counter(c[key] for c in conversations if c[key] not in wanted)
        conversations = [c for c in conversations if c[key] in wanted]
        part.dropped[name] = sum(removed.values())
        part.dropped_values[name] = removed
    if exclude is not None:
        kept = [c for c in conversations if (c["game"], c["experiment"], int(c["instance"])) not in exclude.instances]
        part.dropped[EVAL_INSTANCES] = len(conversations) - len(kept)
        conversations = kept
    return conversations, part


def _empty_eval_message(parts: list[_Part], exclude) -> str | None:
    """Why no example is left when the contamination guard removed the last ones, else None."""
    removed = sum(part.dropped.get(EVAL_INSTANCES, 0) for part in parts)
    if not removed or any(part.rows for part in parts):
        return None
    return (f"0 examples left: the {removed} remaining conversations are all of instances of the evaluation "
            f"split ({exclude.describe()}); train on episodes of other instances (playpen play --split train) "
            f"or pass --allow_eval_instances true to keep them")


def _sft_row(row: dict, where: str) -> tuple[dict, str]:
    if "messages" in row:
        return {"messages": _message_list(row["messages"], where, "messages")}, "messages"
    return _typed(row, where, "prompt-completion", ("prompt", "completion"))


def _typed(row: dict, where: str, kind: str, columns: Sequence[str]) -> tuple[dict, str]:
    """Keep ``columns`` of a row whose values are all strings or all message lists."""
    if all(isinstance(row[c], str) for c in columns):
        return {c: row[c] for c in columns}, f"{kind} (text)"
    if any(isinstance(row[c], str) for c in columns):
        raise PlaypenError(f"{where}: {', '.join(columns)} must be all strings or all message lists")
    return {c: _message_list(row[c], where, c) for c in columns}, f"{kind} (messages)"


def _message_list(value, where: str, column: str) -> list[dict]:
    if not (isinstance(value, list) and value and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in value)):
        sharegpt = (f"; these are ShareGPT-style messages: {SHAREGPT_FIX}" if isinstance(value, list) and any(
            isinstance(m, dict) and {"from", "value"} <= set(m) for m in value) else "")
        raise PlaypenError(f"{where}: '{column}' must be a non-empty list of {{\"role\", \"content\"}} text "
                           f"messages{sharegpt}")
    roles = sorted({m["role"] for m in value} & set(SHAREGPT_ROLES))
    if roles:
        raise PlaypenError(f"{where}: '{column}' has the role(s) {', '.join(roles)}, which chat templates do not know "
                           f"(ShareGPT's names); rename {', '.join(f'{r} to {SHAREGPT_ROLES[r]}' for r in roles)}")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _empty_sft_message(parts: list[_Part], filters: dict) -> str:
    dropped, values = Counter(), {name: Counter() for name in FILTER_FIELDS}
    for part in parts:
        dropped.update(part.dropped)
        for name, counts in part.dropped_values.items():
            values[name].update(counts)
    emptier = next((name for name in reversed(FILTER_FIELDS) if dropped[name]), None)
    if emptier is None and dropped[STATIC_DROP_REASON]:
        return (f"0 examples left: all {dropped[STATIC_DROP_REASON]} conversations are of static-suite games "
                f"({', '.join(sorted(STATIC_GAMES))}), which playpen eval scores as statscore and training leaves "
                f"out; pass --include_static_games to train on them anyway, or add results of other games")
    if emptier is None and dropped[NO_ANSWER]:
        return (f"0 examples: in all {dropped[NO_ANSWER]} rows of {', '.join(p.source for p in parts)} no assistant "
                f"message (or completion) has content, so there is nothing to learn; add the answers to the rows")
    if emptier is None:
        return f"0 examples: {', '.join(p.source for p in parts)} hold no usable rows; add data or other sources"
    found = values[emptier]
    wanted = filters[emptier]
    if emptier == "outcomes":
        suggestion = [o for o in OUTCOMES if o in wanted or o in found]
    else:
        suggestion = sorted(found)
    return (f"0 examples left: --{emptier} {','.join(wanted)} dropped all {dropped[emptier]} remaining "
            f"conversations ({emptier} found: {', '.join(f'{v} {n}' for v, n in found.most_common())}); "
            f"use --{emptier} {','.join(suggestion)}")


def _dataset(parts: list[_Part]) -> tuple[datasets.Dataset, DataReport]:
    formats = {}
    for part in parts:
        for _, row_format in part.rows:
            formats.setdefault(row_format, part.source)
    if len(formats) > 1:
        (first, first_source), (second, second_source) = list(formats.items())[:2]
        raise PlaypenError(f"cannot mix {first} rows ({first_source}) with {second} rows ({second_source}); "
                           "convert the data to one format or train on them separately")
    rows = [row for part in parts for row, _ in part.rows]
    report = DataReport(
        sources=[{"source": p.source, "kind": p.kind, "examples": len(p.rows), "dropped": dict(p.dropped)}
                 | ({"pairs": p.pairs} if p.pairs is not None else {}) for p in parts],
        format=next(iter(formats)),
        total=len(rows),
        fingerprint=_fingerprint(rows),
    )
    return datasets.Dataset.from_list(rows), report


def _fingerprint(rows: list[dict]) -> str:
    """sha256 of the canonical JSON array of the rows, hashed row by row (no giant string in memory)."""
    digest = hashlib.sha256(b"[")
    for index, row in enumerate(rows):
        if index:
            digest.update(b",")
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    digest.update(b"]")
    return digest.hexdigest()
