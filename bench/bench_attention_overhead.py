"""Overhead of every-tick interpretability over a plain ACT forward, and wasted forwards per mode.

Default LeRobot ACT configuration (ResNet-18, dim_model 512, 4 encoder layers, chunk 100),
random weights, two 480x640 cameras, on this machine's CPU (or --device cuda). Compared in
interleaved rounds, same inputs:

* reference A: ``policy.predict_action_chunk`` on an already preprocessed batch (bare model);
* reference B: preprocess + ``predict_action_chunk`` + postprocess (what any deployment runs);
* pai: ``PolicyRunner.step`` (validation, preprocess, forward with capture hooks, postprocess)
  + cross-attention shares and grids + both heatmap overlays rendered at 480x640.

Usage: python bench/bench_attention_overhead.py [--rounds 12] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved, machine, print_table, summary_ms  # noqa: E402

from pai_ros.attention.maps import maps_for_tick  # noqa: E402
from pai_ros.attention.render import Normalization, normalize, overlay  # noqa: E402
from pai_ros.policy.loading import load_act_policy  # noqa: E402
from pai_ros.policy.observation import Observation  # noqa: E402
from pai_ros.policy.random_init import save_random_act  # noqa: E402
from pai_ros.policy.runner import PolicyRunner  # noqa: E402

DEFAULT_ACT = dict(dim_model=512, n_heads=8, n_encoder_layers=4, chunk_size=100, n_action_steps=100)
FULL_SIZE = dict(dim_feedforward=3200, n_vae_encoder_layers=4, latent_dim=32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    cams = {"front": (480, 640), "wrist": (480, 640)}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_random_act(Path(tmp) / "act", cams, state_dim=6, action_dim=6, **DEFAULT_ACT, **FULL_SIZE)
        loaded = load_act_policy(ckpt, args.device)
        plain = load_act_policy(ckpt, args.device)
    params = sum(p.numel() for p in loaded.policy.parameters()) / 1e6
    rng = np.random.default_rng(0)
    obs = Observation({c: rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for c, hw in cams.items()},
                      rng.normal(size=6).astype(np.float32))
    runner = PolicyRunner(loaded, "replan")
    batch = runner.preprocess(obs)

    def bare() -> None:
        with torch.inference_mode():
            plain.policy.predict_action_chunk(batch)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def deployed() -> None:
        with torch.inference_mode():
            raw = {f"observation.images.{c}": torch.from_numpy(img).permute(2, 0, 1).float() / 255
                   for c, img in obs.images.items()}
            raw["observation.state"] = torch.from_numpy(obs.state)
            chunk = plain.policy.predict_action_chunk(plain.preprocessor(raw))
            plain.postprocessor(chunk[:, 0])

    def pai_tick() -> None:
        res = runner.step(obs)
        maps = maps_for_tick(res)
        scaled = normalize(maps.grids, Normalization("frame"))
        for c in cams:
            overlay(obs.images[c], scaled[c])

    for fn in (bare, deployed, pai_tick):  # warm-up
        fn()
    times = interleaved({"bare": bare, "deployed": deployed, "pai": pai_tick}, args.rounds)
    b, d, p = (summary_ms(times[k]) for k in ("bare", "deployed", "pai"))
    fmt = lambda s: f"{s[0]:.1f} ms [{s[1]:.1f}-{s[2]:.1f}]"  # noqa: E731
    rows = [
        ("tick with capture+shares+2 overlays vs bare predict_action_chunk", fmt(p), fmt(b), f"{p[0] / b[0]:.3f}x", "<= 1.05x"),
        ("same vs preprocess+predict+postprocess", fmt(p), fmt(d), f"{p[0] / d[0]:.3f}x", "<= 1.05x"),
    ]

    # Wasted forwards per executed action, per mode (tiny model: only the counts matter).
    with tempfile.TemporaryDirectory() as tmp:
        small = {"front": (64, 80)}
        ck_q = save_random_act(Path(tmp) / "q", small, chunk_size=20, n_action_steps=20)
        ck_e = save_random_act(Path(tmp) / "e", small, chunk_size=20, n_action_steps=1, temporal_ensemble_coeff=0.01)
        o = Observation({"front": np.zeros((64, 80, 3), np.uint8)}, np.zeros(3, np.float32))
        for mode, ck in (("ensemble", ck_e), ("queue", ck_q), ("replan", ck_q), ("chunk", ck_q)):
            r = PolicyRunner(load_act_policy(ck, "cpu"), mode)
            for _ in range(60):
                r.step(o)
            fresh = "every tick" if mode != "chunk" else "once per chunk"
            rows.append((f"wasted forwards per executed action, {mode} (maps {fresh})",
                         f"{r.stats.wasted_per_action:.3f}", "-", "-", "0" if mode == "ensemble" else "-"))
    print_table(f"Attention overhead: default ACT ({params:.1f} M params), 2 x 480x640, {args.device}, "
                f"{args.rounds} interleaved rounds, median [min-max]; {machine()}", rows)


if __name__ == "__main__":
    main()
