"""Terminal summary and baseline comparison (comparison.md/.html, and comparison.png: base and tuned side by side)."""
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
    failed = [(r["game"], label, r[f"{label}_failed"])
              for r in rows for label in ("base", "tuned") if r[f"{label}_failed"]]
    if failed:
        lines += ["", "Failed games (not counted in the scores above):"]
        lines += [f"- {game} ({label}): {error}" for game, label, error in failed]
    lines += ["", "Per-game values are % played x quality score / 100 from clemcore's table; clemscore is "
                  "clemcore's formula over the games: mean % played x mean quality score / 100."]
    source_line = baseline_source_line(source)
    if source_line:
        lines += ["", source_line]
    lines += ["", *settings_lines(base, tuned)]
    return "\n".join(lines) + "\n"


def settings_lines(base, tuned) -> list[str]:
    """How each side was played (val.json ``model_settings``), and a note when they were loaded differently."""
    from playpen.evaluation import describe_settings

    lines = ["How each side was played:", f"- base {base.model}: {describe_settings(base.settings)}",
             f"- tuned {tuned.model}: {describe_settings(tuned.settings)}"]
    if base.settings.get("quantization") != tuned.settings.get("quantization"):
        lines.append("Note: the two sides were loaded with different quantization, so the delta mixes what the "
                     "adapter learned with what quantization changed; 'playpen eval TUNED --baseline BASE "
                     "--baseline_4bit' plays the base on the tuned model's 4-bit base (the adapter's effect alone).")
    if base.settings.get("generation") != tuned.settings.get("generation"):
        lines.append("Note: the two sides were played with different generation settings.")
    return lines


def to_html(base, tuned, rows) -> str:
    cells = "".join(
        f"<tr><td>{html.escape(r['game'])}</td><td>{_cell(r, 'base')}</td><td>{_cell(r, 'tuned')}</td>"
        f"<td>{_fmt(r['delta'])}</td></tr>" for r in rows)
    return (f"<html><body><table border='1'><tr><th>game</th><th>{html.escape(base.model)} (base)</th>"
            f"<th>{html.escape(tuned.model)} (tuned)</th><th>delta</th></tr>{cells}</table>"
            + "".join(f"<p>{html.escape(line)}</p>" for line in settings_lines(base, tuned)) + "</body></html>\n")


SIDES = (("base", "tab:gray"), ("tuned", "tab:blue"))
GAME_PANELS = ("% played", "quality score")


def _wrapped(text: str, width: int = 28) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=True)) or text


def _grouped_bars(ax, labels: list[str], values: dict[str, list], xlabel: str) -> None:
    """Horizontal bars, base and tuned side by side for each label, on a fixed 0-100 axis, values written at the
    bars."""
    import numpy as np

    rows = np.arange(len(labels))
    height = 0.38
    for offset, (side, color) in zip((-height / 2, height / 2), SIDES, strict=True):
        widths = [np.nan if value is None else value for value in values[side]]
        bars = ax.barh(rows + offset, widths, height, label=side, color=color)
        ax.bar_label(bars, labels=["" if value is None else f"{value:.1f}" for value in values[side]],
                     padding=2, fontsize=8)
        for row, value in zip(rows, values[side], strict=True):
            if value is None:  # no number (a FAILED game, or no quality score without a played episode)
                ax.text(1, row + offset, f"{side}: none", va="center", fontsize=8, color="dimgray")
    ax.set_yticks(rows, labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)  # first label on top; the same rows whichever bars have no number
    ax.set_xlim(0, 100)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)


def render_chart(base, tuned) -> tuple[object, dict]:
    """The comparison figure and the numbers it shows, read back from its bars.

    Left: each game's % played and quality score, base and tuned side by side; right: the suite scores
    (clemscore, statscore). Every axis is 0-100, so a model that did not move shows equal bars, not a
    magnified noise axis; the height grows with the number of games and long names are wrapped.
    Returns ``(figure, {panel: {"labels": [...], "base": [...], "tuned": [...]}})``; a FAILED game has no bar (None).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games = sorted(set(base.games) | set(tuned.games) | set(base.failed) | set(tuned.failed))
    labels = [_wrapped(game + (" (FAILED)" if game in base.failed or game in tuned.failed else "")) for game in games]
    panels = {panel: {"labels": labels, **{side: [evaluation.games.get(game, {}).get(panel) if game in evaluation.games
                                                  else None for game in games]
                                           for side, evaluation in (("base", base), ("tuned", tuned))}}
              for panel in GAME_PANELS}
    score_keys = [key for key in score_names() if base.scores.get(key) is not None or tuned.scores.get(key) is not None]
    panels["suite score"] = {"labels": score_keys, "base": [base.scores.get(key) for key in score_keys],
                             "tuned": [tuned.scores.get(key) for key in score_keys]}
    lines = sum(label.count("\n") + 1 for label in labels)
    fig, axes = plt.subplots(1, 3, figsize=(13, max(3.5, 1.8 + 0.32 * max(lines, len(games) * 2))),
                             gridspec_kw={"width_ratios": [3, 3, 2]})
    for ax, (panel, values) in zip(axes, panels.items(), strict=True):
        _grouped_bars(ax, values["labels"], values, panel + (" (clemcore, 0-100)" if panel != "suite score" else ""))
    axes[1].set_yticklabels([])
    axes[2].legend(loc="lower right", fontsize=8)
    fig.suptitle(_wrapped(f"{tuned.model} (tuned) vs {base.model} (base)", 90))
    fig.tight_layout()
    drawn = {}
    for ax, panel in zip(axes, panels, strict=True):
        base_bars, tuned_bars = ax.containers
        drawn[panel] = {"labels": panels[panel]["labels"],
                        **{side: [None if bar.get_width() != bar.get_width() else round(float(bar.get_width()), 2)
                                  for bar in bars] for side, bars in (("base", base_bars), ("tuned", tuned_bars))}}
    return fig, drawn


def write_chart(base, tuned, path: Path) -> dict:
    """Render :func:`render_chart` into ``path`` (PNG, 100 dpi) and return the numbers drawn."""
    import matplotlib.pyplot as plt

    fig, drawn = render_chart(base, tuned)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return drawn


def write_comparison(base, tuned, results_dir: Path, source: dict | None = None) -> list[dict]:
    """Print the comparison and write comparison.md, comparison.html and comparison.png; ``source``: where the
    baseline's numbers come from when they were not played here (val.json's ``baseline_source``)."""
    rows = comparison_rows(base, tuned)
    markdown = to_markdown(base, tuned, rows, source)
    print("\n" + markdown)
    atomic_write_text(results_dir / "comparison.md", markdown)
    atomic_write_text(results_dir / "comparison.html", to_html(base, tuned, rows))
    write_chart(base, tuned, results_dir / "comparison.png")
    print(f"wrote {results_dir / 'comparison.md'}, comparison.html and comparison.png")
    return rows
