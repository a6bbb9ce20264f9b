"""Pictures of the demo policy: its training, and how it does in closed loop."""

from __future__ import annotations

from pathlib import Path

from pai_ros.plotting import pyplot, save_figure


def plot_loss_curve(curve: list[tuple[int, float]], out: Path) -> Path:
    """Training loss (L1 + KL, as lerobot-train logs it) against step, log scale."""
    plt = pyplot()
    steps, losses = zip(*curve)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.plot(steps, losses, lw=1.5)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (L1 + KL weight x KL)")
    ax.set_title("Demo ACT training loss (lerobot-train)")
    ax.grid(alpha=0.3)
    return save_figure(fig, out)


def plot_closed_loop(report: dict, out: Path, title: str = "Demo policy in closed loop") -> Path:
    """Each episode's final gripper-to-target distance, coloured by outcome, with the success radius.

    ``report``: :meth:`pai_ros.sim.evaluate.ClosedLoopReport.as_dict`.
    """
    plt = pyplot()
    colours = {"success": "tab:green", "missed": "tab:orange", "timeout": "tab:red"}
    eps = report["per_episode"]
    fig, ax = plt.subplots(figsize=(max(6, 0.14 * len(eps) + 2), 3.4), dpi=110)
    for outcome, colour in colours.items():
        picked = [e for e in eps if e["outcome"] == outcome]
        if picked:
            ax.bar([e["episode"] for e in picked], [e["final_distance"] for e in picked], color=colour,
                   label=f"{outcome} ({len(picked)})")
    ax.axhline(report["success_radius"], color="k", lw=1, ls="--", label="success radius")
    ax.set_xlabel(f"episode (seed {report['seed']})")
    ax.set_ylabel("final distance to target\n(table units)")
    ax.set_title(f"{title}: {report['success_rate']:.0%} of {report['episodes']} episodes succeed")
    ax.legend(fontsize=8)
    return save_figure(fig, out)
