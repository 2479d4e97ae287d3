"""``training_curves.png`` of a ``grpo_qlora`` run: the loss, and the mean episode reward per step
(train rollouts and, with ``--eval_split``, the held-out split) side by side."""
from __future__ import annotations

from pathlib import Path

CURVES_FILE = "training_curves.png"


def write_curves(path: Path, losses: list[dict], rewards: list[dict], eval_rewards: list[dict], title: str) -> Path:
    """Plot ``[{"step", "loss"}]`` and ``[{"step", "mean_reward"}]`` histories into ``path``; return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, reward_ax) = plt.subplots(1, 2, figsize=(9, 3.5))
    loss_ax.plot([e["step"] for e in losses], [e["loss"] for e in losses], marker=".")
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("GRPO loss")
    reward_ax.plot([e["step"] for e in rewards], [e["mean_reward"] for e in rewards], marker=".", label="train rollouts")
    if eval_rewards:
        reward_ax.plot([e["step"] for e in eval_rewards], [e["mean_reward"] for e in eval_rewards], marker="o",
                       label="held-out split")
    reward_ax.set_xlabel("step")
    reward_ax.set_ylabel("mean episode reward (clemcore scores)")
    reward_ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
