"""What the camera-state score adds to a live tick, against the SAE encode it runs beside.

Per tick the node pools the camera tokens and applies the calibrated regression
(:mod:`pai_ros.sae.camera_state`); the reference, measured in the same run, is the SAE encode of
the same tokens (``encode_frame``), which every tick with an SAE already pays. Two sizes: the demo
policy's (42 tokens of 128: two 4x5 camera grids) and LeRobot's default ACT with two 480x640
cameras (602 tokens of 512: two 15x20 grids, pooled to 4x5 each; a 6-joint arm; SAE 512 -> 4096,
k 32). Weights are random: the cost does not depend on their values.

Usage: python bench/bench_camera_state.py [--rounds 5] [--calls 500]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, print_table

from pai_ros.policy.layout import TokenLayout
from pai_ros.sae.camera_state import OUTPUT_AND_INPUT, POOLED_GRID, CameraStateProbe, StateRegression
from pai_ros.sae.frame import encode_frame
from pai_ros.sae.model import SaeConfig, SparseAutoencoder

SIZES = {  # name: (d_model, camera grid, state dim, SAE width)
    "demo (42 tokens x 128)": (128, (4, 5), 3, 1024),
    "default ACT, two 480x640 cameras (602 tokens x 512)": (512, (15, 20), 6, 4096),
}


def per_call_ms(fn, calls: int) -> float:
    for _ in range(10):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (the median is reported)")
    ap.add_argument("--calls", type=int, default=500, help="calls per round and measurement")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    rng = np.random.default_rng(0)
    rows = []
    for name, (d, grid, k, width) in SIZES.items():
        layout = TokenLayout.build(True, False, ["observation.images.front", "observation.images.wrist"], [grid, grid])
        cells = min(grid[0], POOLED_GRID[0]) * min(grid[1], POOLED_GRID[1])
        dim = 2 * 2 * cells * d  # two cameras, each its cells after and before the encoder
        half = dim // 2  # one regression per camera, as `pai sae calibrate` fits them
        regression = StateRegression(rng.normal(size=(half, k)), np.zeros(half), np.ones(half), np.zeros(k), np.ones(k))
        probe = CameraStateProbe({"front": regression, "wrist": regression}, {"front": (0, half), "wrist": (half, dim)},
                                 {"front": grid, "wrist": grid}, OUTPUT_AND_INPUT)
        sae = SparseAutoencoder(SaeConfig(d_in=d, d_sae=width, architecture="topk", k=32))
        tokens, before, state = torch.randn(layout.num_tokens, d), torch.randn(layout.num_tokens, d), np.zeros(k)
        camera, encode = [], []
        for _ in range(args.rounds):
            camera.append(per_call_ms(lambda: probe.read_frame(tokens, layout, state, before), args.calls))
            encode.append(per_call_ms(lambda: encode_frame(sae, tokens, 32), args.calls))
        c, e = statistics.median(camera), statistics.median(encode)
        rows.append((f"camera-state score per tick, {name} (ms)", f"{c:.3f}", f"{e:.3f}", f"{c / e:.2f}x", "-"))
    print(f"\n{machine()}")
    print_table("Camera-state score vs the SAE encode it runs beside (reference = encode_frame, same tokens)", rows)


if __name__ == "__main__":
    main()
