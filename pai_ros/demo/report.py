"""Pictures of the demo policy's training."""

from __future__ import annotations

from pathlib import Path


def plot_loss_curve(curve: list[tuple[int, float]], out: Path) -> Path:
    """Training loss (L1 + KL, as lerobot-train logs it) against step, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses = zip(*curve)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.plot(steps, losses, lw=1.5)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (L1 + KL weight x KL)")
    ax.set_title("Demo ACT training loss (lerobot-train)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
