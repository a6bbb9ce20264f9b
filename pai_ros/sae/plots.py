"""Pictures of SAE training and OOD calibration (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pai_ros.plotting import pyplot, save_figure


def plot_training(history: dict[str, list[float]], metrics: dict[str, Any], out: Path) -> Path:
    """FVU, L0 and dead fraction against step, and the held-out feature-density histogram."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4), dpi=100)
    steps = history["step"]
    for ax, key, label in ((axes[0], "fvu", "FVU (training batch)"), (axes[1], "l0", "L0 (active features / token)"),
                           (axes[2], "dead_fraction", "dead fraction (AuxK window)")):
        ax.plot(steps, history[key], lw=1.4)
        ax.set_xlabel("step")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    density = np.asarray(metrics.get("feature_density_log10", []), dtype=float)
    axes[3].hist(density, bins=40, color="tab:purple")
    axes[3].set_xlabel("log10 firing rate on held-out tokens")
    axes[3].set_title(f"feature density (held-out FVU {metrics.get('fvu', float('nan')):.3f}, "
                      f"L0 {metrics.get('l0', float('nan')):.1f})", fontsize=10)
    return save_figure(fig, out)


def plot_ood(clean: np.ndarray, corrupted: dict[str, np.ndarray], threshold: float, aurocs: dict[str, float],
             out: Path) -> Path:
    """Histograms of per-frame reconstruction error, clean vs each corruption, with the threshold."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8), dpi=100)
    everything = np.concatenate([clean, *corrupted.values()]) if corrupted else clean
    bins = np.logspace(np.log10(max(everything.min(), 1e-6)), np.log10(max(everything.max(), 1e-5)), 50)
    ax.hist(clean, bins=bins, alpha=0.6, label="held-out, clean")
    for name, errs in corrupted.items():
        ax.hist(errs, bins=bins, alpha=0.45, label=f"{name} (AUROC {aurocs[name]:.3f})")
    ax.axvline(threshold, color="k", ls="--", lw=1.2, label=f"threshold {threshold:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("per-frame reconstruction error (FVU)")
    ax.set_ylabel("frames")
    ax.legend(fontsize=8)
    ax.set_title("SAE reconstruction error as an OOD score")
    return save_figure(fig, out)
