"""Terminal summary and baseline comparison (comparison.md/.html and a per-game delta chart)."""
from __future__ import annotations

import html
from pathlib import Path

from playpen.files import atomic_write_text
from playpen.suites import score_names


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_summary(evaluation, results_dir: Path) -> None:
    scores = ", ".join(f"{name} {_fmt(value)}" for name, value in evaluation.scores.items())
    print(f"\n{evaluation.model}: {scores} ({results_dir / (evaluation.model + '.val.json')})")
    for game, numbers in sorted(evaluation.games.items()):
        print(f"  {game:<24} % played {_fmt(numbers['% played']):>7}  quality {_fmt(numbers['quality score']):>7}")
    for game, error in sorted(evaluation.failed.items()):
        print(f"  {game:<24} FAILED: {error}")


def comparison_rows(base, tuned) -> list[dict]:
    """One row per game (and one per suite score: 'clemscore', 'statscore', ...): base, tuned, delta, or FAILED."""
    rows = []
    for game in sorted(set(base.games) | set(tuned.games) | set(base.failed) | set(tuned.failed)):
        row = {"game": game}
        for label, evaluation in (("base", base), ("tuned", tuned)):
            row[label] = evaluation.games[game]["score"] if game in evaluation.games else None
            row[f"{label}_failed"] = evaluation.failed.get(game)
        row["delta"] = None if row["base"] is None or row["tuned"] is None else round(row["tuned"] - row["base"], 2)
        rows.append(row)
    for key in score_names():
        b, t = base.scores.get(key), tuned.scores.get(key)
        rows.append({"game": key, "base": b, "tuned": t, "base_failed": None, "tuned_failed": None,
                     "delta": None if b is None or t is None else round(t - b, 2)})
    return rows


def _cell(row, label) -> str:
    return "FAILED" if row[f"{label}_failed"] else _fmt(row[label])


def baseline_source_line(source: dict | None) -> str | None:
    """Where the baseline's numbers come from (``baseline_source`` of val.json), for comparison.md."""
    if not source or source.get("kind") == "played":
        return None
    return f"Baseline numbers: {source['numbers']}, from {source['kind']} {source['path']}."


def to_markdown(base, tuned, rows, source: dict | None = None) -> str:
    lines = [f"| game | {base.model} (base) | {tuned.model} (tuned) | delta |", "|---|---:|---:|---:|"]
    lines += [f"| {r['game']} | {_cell(r, 'base')} | {_cell(r, 'tuned')} | {_fmt(r['delta'])} |" for r in rows]
    failed = [(r["game"], label, r[f"{label}_failed"]) for r in rows for label in ("base", "tuned") if r[f"{label}_failed"]]
    if failed:
        lines += ["", "Failed games (not counted in the scores above):"]
        lines += [f"- {game} ({label}): {error}" for game, label, error in failed]
    lines += ["", "Per-game values are % played x quality score / 100 from clemcore's table; clemscore is "
                  "clemcore's formula over the games: mean % played x mean quality score / 100."]
    source_line = baseline_source_line(source)
    if source_line:
        lines += ["", source_line]
    return "\n".join(lines) + "\n"


def to_html(base, tuned, rows) -> str:
    cells = "".join(
        f"<tr><td>{html.escape(r['game'])}</td><td>{_cell(r, 'base')}</td><td>{_cell(r, 'tuned')}</td>"
        f"<td>{_fmt(r['delta'])}</td></tr>" for r in rows)
    return (f"<html><body><table border='1'><tr><th>game</th><th>{html.escape(base.model)} (base)</th>"
            f"<th>{html.escape(tuned.model)} (tuned)</th><th>delta</th></tr>{cells}</table></body></html>\n")


def write_chart(rows, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games = [r for r in rows if r["game"] not in score_names()]
    labels = [r["game"] + (" (FAILED)" if r["base_failed"] or r["tuned_failed"] else "") for r in games]
    deltas = [r["delta"] or 0.0 for r in games]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(games) + 2), 4))
    ax.bar(labels, deltas, color=["tab:green" if d >= 0 else "tab:red" for d in deltas])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("tuned - base (per-game score)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_comparison(base, tuned, results_dir: Path, source: dict | None = None) -> list[dict]:
    """Print the comparison and write comparison.md, comparison.html and comparison.png; ``source``: where the
    baseline's numbers come from when they were not played here (val.json's ``baseline_source``)."""
    rows = comparison_rows(base, tuned)
    markdown = to_markdown(base, tuned, rows, source)
    print("\n" + markdown)
    atomic_write_text(results_dir / "comparison.md", markdown)
    atomic_write_text(results_dir / "comparison.html", to_html(base, tuned, rows))
    write_chart(rows, results_dir / "comparison.png", f"{tuned.model} vs {base.model}")
    print(f"wrote {results_dir / 'comparison.md'}, comparison.html and comparison.png")
    return rows
