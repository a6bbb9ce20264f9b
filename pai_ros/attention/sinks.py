"""Where raw cross-attention goes: attention sinks measured over many frames.

A cell is a sink when it collects cross-attention mass in every frame whatever the scene
shows (transformers park attention on a few tokens whose values change little). Over a set of
forward passes: each frame's cross-attention (heads and queries averaged) as shares of the
frame's total mass; per camera the ``top_k`` cells with the highest *median* share are the
candidate sinks; how much of the camera's mass they hold on average against the uniform
``top_k / cells``; how often the camera's peak cell is one of them; and the mean share of the
latent and state tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pai_ros.plotting import pyplot, save_figure
from pai_ros.policy.capture import ForwardCapture


def sink_analysis(captures: Sequence[ForwardCapture], top_k: int = 3) -> dict:
    """Sink statistics (see the module docstring) over ``captures`` (each with its cross-attention)."""
    usable = [c for c in captures if c.cross_attention is not None]
    if not usable:
        raise ValueError("no forward pass with cross-attention to analyse")
    layout = usable[0].layout
    per_frame = np.stack([c.cross_attention[0].float().mean(dim=0).cpu().numpy() for c in usable])  # (F, S)
    per_frame = per_frame / per_frame.sum(axis=1, keepdims=True)
    out: dict = {"frames": len(usable), "cameras": {}, "token_shares": {}}
    shares = [layout.split(w)[0] for w in per_frame]
    for key in shares[0]:
        if key not in [c.name for c in layout.cameras]:
            out["token_shares"][key] = float(np.mean([s[key] for s in shares]))
    for cam in layout.cameras:
        block = per_frame[:, cam.slice]  # (F, cells)
        within = block / np.maximum(block.sum(axis=1, keepdims=True), 1e-12)
        k = min(top_k, within.shape[1])
        sinks = np.argsort(-np.median(within, axis=0), kind="stable")[:k]
        peaks = within.argmax(axis=1)
        out["cameras"][cam.name] = {
            "top_k": k, "cells": int(within.shape[1]),
            "sink_cells": [[int(i // cam.grid_w), int(i % cam.grid_w)] for i in sinks],  # (row, col)
            "sink_mass_share": float(within[:, sinks].sum(axis=1).mean()),
            "uniform_share": k / within.shape[1],
            "peak_on_a_sink_rate": float(np.isin(peaks, sinks).mean()),
            "camera_share": float(np.mean([s[cam.name] for s in shares])),
            "mean_grid": within.mean(axis=0).reshape(cam.grid_h, cam.grid_w).round(5).tolist(),
        }
    return out


def plot_sinks(analysis: dict, path: Path, title: str = "") -> None:
    """Each camera's mean cross-attention share per cell, the sink cells outlined, into a PNG."""
    plt = pyplot()
    cams = analysis["cameras"]
    fig, axes = plt.subplots(1, len(cams), figsize=(4.8 * len(cams), 3.6), dpi=100, squeeze=False)
    for ax, (name, s) in zip(axes[0], cams.items()):
        im = ax.imshow(np.asarray(s["mean_grid"]), cmap="viridis")
        for r, c in s["sink_cells"]:
            ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
        ax.set_title(f"{name}: sinks hold {s['sink_mass_share']:.0%} (uniform {s['uniform_share']:.0%})", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    save_figure(fig, path, title)


def plot_same_frame(image: np.ndarray, grids: dict[str, np.ndarray], path: Path, *,
                    sink_cells: Sequence[Sequence[int]] = (), target_cell: tuple[int, int] | None = None,
                    figures: dict[str, str] | None = None, title: str = "") -> None:
    """One camera frame next to each method's map of it, into a PNG.

    Each map is scaled to its own maximum (the pictures compare *where* methods point, not how
    much mass they carry); the sink cells (``(row, col)``) are outlined in red on every map and
    the target's cell, where known, in white, so a reader sees at a glance which maps sit on the
    sinks and which on the thing the action depends on. ``figures`` puts a measured figure under
    a method's name (how far to trust that map, e.g. its peak hit rate over the run's frames).
    """
    plt = pyplot()
    from pai_ros.attention.render import overlay

    shapes = {name: np.asarray(g).shape for name, g in grids.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"the maps of one frame must share one grid shape, got {shapes}")
    h, w = image.shape[:2]
    panels = [("camera image", image)]
    for name, grid in grids.items():
        g = np.clip(np.asarray(grid, dtype=np.float64), 0.0, None)
        panels.append((name, overlay(image, g / max(g.max(), 1e-12), alpha=0.75, interpolation="nearest")))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9), dpi=110, squeeze=False)
    gh, gw = next(iter(shapes.values()), (1, 1))
    ch, cw = h / gh, w / gw

    def outline(ax, cell, colour, style) -> None:
        r, c = cell
        ax.add_patch(plt.Rectangle((c * cw - 0.5, r * ch - 0.5), cw, ch, fill=False, edgecolor=colour,
                                   linewidth=1.6, linestyle=style))

    for i, (ax, (name, picture)) in enumerate(zip(axes[0], panels)):
        ax.imshow(picture)
        ax.set_title(f"{name}\n{(figures or {})[name]}" if name in (figures or {}) else name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if i > 0:
            for cell in sink_cells:
                outline(ax, cell, "red", "--")
        if target_cell is not None:
            outline(ax, target_cell, "white", "-")
    save_figure(fig, path, title)
