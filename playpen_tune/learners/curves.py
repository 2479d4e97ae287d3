"""``training_curves.png`` of every QLoRA run, as TRL users look at them in TensorBoard: the training
loss (and the held-out loss when there is one) next to the metrics each learner cares about
(SFT: token accuracy; DPO: reward accuracy and margin; GRPO: the mean episode reward of its rollouts)."""
from __future__ import annotations

from pathlib import Path

CURVES_FILE = "training_curves.png"


def logged_series(log_history: list[dict], key: str) -> list[tuple[int, float]]:
    """``[(step, value)]`` of one metric the trainer logged (``trainer.state.log_history``)."""
    return [(entry["step"], entry[key]) for entry in log_history if key in entry]


def write_curves(path: Path, panels: dict[str, dict[str, list[tuple[int, float]]]], title: str) -> Path:
    """Plot one panel per ``{y label: {series label: [(step, value)]}}`` side by side into ``path``; return it.

    Panels without any point are left out.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {label: {name: points for name, points in series.items() if points} for label, series in panels.items()}
    panels = {label: series for label, series in panels.items() if series}
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.5 * max(1, len(panels)), 3.5), squeeze=False)
    for ax, (label, series) in zip(axes[0], panels.items(), strict=False):  # one axis when there are no panels
        for name, points in series.items():
            ax.plot([step for step, _ in points], [value for _, value in points],
                    marker="." if len(series) == 1 else "o", markersize=3, label=name)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
