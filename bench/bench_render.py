"""Benchmark heatmap rendering at the live size: two 480x640 cameras, 15x20 token grids.

Run with the project environment active:  python bench/bench_render.py [--reps N]

One "tick" is what the live node does per policy step: normalise both cameras' grids together
(mode "frame") and draw both overlays. The combined panel is timed separately. As a yardstick
measured in the same run, the reference is the cheapest possible overlay: a plain cv2.resize of
a colour grid plus cv2.addWeighted, per camera; the ratio stays meaningful on a busy machine
where absolute milliseconds drift.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, print_table  # noqa: E402

from pai_ros.attention.render import Normalization, combined_panel, normalize, overlay  # noqa: E402

HEIGHT, WIDTH = 480, 640
GRID = (15, 20)  # ACT with resnet18 (stride 32) on 480x640
CAMERAS = ("front", "wrist")
SHARES = {"latent": 0.1, "state": 0.05, "env_state": 0.05, "front": 0.5, "wrist": 0.3}


def time_ms(fn: Callable[[], object], reps: int, warmup: int = 20) -> list[float]:
    """Per-call wall times in milliseconds, after warm-up (caches, lazy imports, thread pools)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    images = {cam: rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for cam in CAMERAS}
    grids = {cam: rng.random(GRID).astype(np.float32) for cam in CAMERAS}
    norm = Normalization("frame")

    def tick() -> dict[str, np.ndarray]:
        scaled = normalize(grids, norm)
        return {cam: overlay(images[cam], scaled[cam]) for cam in CAMERAS}

    # Reference: same sizes, no normalisation, one global alpha, colour grid prepared outside.
    colour_grids = {cam: rng.integers(0, 256, (*GRID, 3), dtype=np.uint8) for cam in CAMERAS}

    def reference() -> None:
        for cam in CAMERAS:
            heat = cv2.resize(colour_grids[cam], (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR)
            cv2.addWeighted(images[cam], 0.4, heat, 0.6, 0.0)

    overlays = tick()
    # Interleave the measurements in rounds so that load from other processes hits both alike.
    this_tick, ref_tick, this_panel = [], [], []
    rounds = 4
    for _ in range(rounds):
        this_tick += time_ms(tick, args.reps // rounds)
        ref_tick += time_ms(reference, args.reps // rounds)
        this_panel += time_ms(lambda: combined_panel(overlays, SHARES), args.reps // rounds)

    fmt = lambda t: f"{statistics.median(t):.2f} ms [{min(t):.2f}-{max(t):.2f}]"  # noqa: E731
    ref_median = statistics.median(ref_tick)
    rows = [
        ("2-cam overlay tick (normalise + colormap + blend) vs cv2.resize + cv2.addWeighted", fmt(this_tick),
         fmt(ref_tick), f"{statistics.median(this_tick) / ref_median:.2f}x", "-"),
        ("combined panel (both overlays + shares bar) vs the same reference", fmt(this_panel), fmt(ref_tick),
         f"{statistics.median(this_panel) / ref_median:.2f}x", "-"),
    ]
    print_table(f"Heatmap rendering: {len(CAMERAS)} cameras {HEIGHT}x{WIDTH}, grid {GRID[0]}x{GRID[1]}, "
                f"{len(this_tick)} reps in {rounds} interleaved rounds, cv2 threads {cv2.getNumThreads()}; {machine()}",
                rows)


if __name__ == "__main__":
    main()
