"""How should the camera-state score be fitted? Training frames, ridge penalty, one regression or one per camera.

``pai sae calibrate --state-fit-dataset-root`` fits a ridge regression from the encoder's camera
tokens to the robot state (:mod:`pai_ros.sae.camera_state`) on the calibration episodes and the
policy's training episodes. This bench refits it on the same frames several ways and scores the
same held-out frames, clean and corrupted, with each fit:

* ``every 2nd frame`` / ``every frame``: the training episodes at stride 2 (the default until
  2026-12-05) or 1 (the default since: every frame the fit's budget of 2,000 allows);
* ``penalty P``: the ridge penalty as a share of the input dimension (the product uses 0.02);
* ``per camera``: one regression per camera, the frame's score the mean of the cameras' scores,
  each in units of its own threshold (does a camera that disagrees stand out more on its own?).

Every fit is cross-fitted by episode with a 1% false-positive threshold, as the product's is;
"flagged" is the share of frames over it. Demo assets: training episodes 0..N-1, held-out
episodes 0..7 calibrate, 8..15 are scored (the same split as ``bench_ood.py``; ``--swap-halves``
the other way round).

Usage: python bench/bench_camera_state_fit.py [--swap-halves] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_ood import ticks
from common import machine

import pai_ros.sae.camera_state as camera_state
from pai_ros.data.episodes import iter_episode, read_info
from pai_ros.demo.assets import ensure_demo_assets
from pai_ros.policy.capture import CaptureConfig
from pai_ros.policy.loading import load_act_policy
from pai_ros.policy.runner import PolicyRunner
from pai_ros.sae.camera_state import episode_groups, fit_camera_state
from pai_ros.sae.ood import Corruption, auroc, corruptions
from pai_ros.sae.position_score import ScoreSettings

Frames = dict[str, np.ndarray]
Features = Callable[[np.ndarray], np.ndarray]  # [F, cameras, cells, d] -> [F, D]


def collect(runner: PolicyRunner, root: Path, episodes: list[int], transform: Corruption | None = None) -> Frames:
    """Per frame: every camera's encoder tokens ``[cameras, cells, d]``, the state, the episode, the frame's index.

    The tokens are kept per cell, not pooled as :func:`~pai_ros.sae.camera_state.camera_features`
    pools them to at most 4x5 cells a camera: the same on the demo's 4x5 grids (its figures
    reproduce the command's), not on larger cameras, so this bench is for the demo policy.
    """
    cells, states, groups, index = [], [], [], []

    def keep_state(frame, obs):  # the corruptions change images only: the state is the frame's
        states.append(np.asarray(frame.state, np.float64))
        return obs if transform is None else transform(frame, obs)

    for e, tick in ticks(runner, root, episodes, keep_state):
        tokens = tick.capture.encoder_output[0].float()
        cells.append(np.stack([tokens[c.slice].numpy() for c in tick.capture.layout.cameras]))
        index.append(0 if not groups or groups[-1] != e else index[-1] + 1)
        groups.append(e)
    return {"cells": np.stack(cells), "state": np.stack(states), "episode": np.array(groups), "index": np.array(index)}


def every(frames: Frames, stride: int) -> Frames:
    keep = frames["index"] % stride == 0
    return {k: v[keep] for k, v in frames.items()}


def fit_and_score(calibration: Frames, training: Frames, views: list[Features], penalty: float,
                  scored: dict[str, Frames]) -> dict:
    """One regression per view, fitted on calibration + training frames; AUROC and flagged share per condition."""
    saved = camera_state.PENALTY_SHARE
    camera_state.PENALTY_SHARE = penalty
    try:
        fits = []
        for view in views:
            x = np.concatenate([view(calibration["cells"]), view(training["cells"])])
            y = np.concatenate([calibration["state"], training["state"]])
            groups = episode_groups(calibration["episode"], training["episode"])
            probe, summary = fit_camera_state(x, y, groups, {}, ScoreSettings())
            fits.append((probe, view, summary))
    finally:
        camera_state.PENALTY_SHARE = saved

    def score(f: Frames) -> np.ndarray:  # each view in units of its own threshold: 1 is "flagged"
        return np.mean([p.scores(view(f["cells"]), f["state"]) / s["threshold"] for p, view, s in fits], axis=0)

    clean = score(scored["clean"])
    return {"fit_frames": int(len(calibration["state"]) + len(training["state"])),
            "state_explained": [s["state_explained"] for _, _, s in fits],
            "auroc": {k: auroc(clean, score(f)) for k, f in scored.items() if k != "clean"},
            "flagged": {k: float((score(f) > 1).mean()) for k, f in scored.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--swap-halves", action="store_true",
                    help="calibrate on the second half of the held-out episodes and score the first (a second split)")
    args = ap.parse_args()
    start = time.perf_counter()
    torch.set_grad_enabled(False)

    assets = ensure_demo_assets(progress=False)
    runner = PolicyRunner(load_act_policy(assets.policy_dir, "cpu"), "replan", CaptureConfig(encoder_output=True))
    held, train_root = assets.heldout_root, assets.dataset_root
    n_held = int(read_info(held)["total_episodes"])
    cal_eps, ev_eps = list(range(n_held // 2)), list(range(n_held // 2, n_held))
    if args.swap_halves:
        cal_eps, ev_eps = ev_eps, cal_eps
    training = collect(runner, train_root, list(range(int(read_info(train_root)["total_episodes"]))))
    calibration = collect(runner, held, cal_eps)
    first = next(iter_episode(held, ev_eps[0], read_info(held)))
    kinds = corruptions(list(runner.spec.cameras), {c: first.images[c].shape for c in runner.spec.cameras})
    scored = {"clean": collect(runner, held, ev_eps),
              **{k: collect(runner, held, ev_eps, fn) for k, fn in kinds.items()}}
    runner.close()

    combined: list[Features] = [lambda c: c.reshape(len(c), -1)]
    per_camera: list[Features] = [lambda c, i=i: c[:, i].reshape(len(c), -1) for i in range(training["cells"].shape[1])]
    fits = {
        "every 2nd frame (the default before)": (every(training, 2), combined, 0.02),
        "every frame (the default)": (training, combined, 0.02),
        **{f"every frame, penalty {p}": (training, combined, p) for p in (0.005, 0.01, 0.05)},
        "every 2nd frame, per camera": (every(training, 2), per_camera, 0.02),
        "every frame, per camera": (training, per_camera, 0.02),
    }
    results = {name: fit_and_score(calibration, t, views, penalty, scored)
               for name, (t, views, penalty) in fits.items()}

    conditions = [k for k in scored if k != "clean"]
    print(f"\nCamera-state score fitted several ways: AUROC / flagged per corruption, {len(scored['clean']['state'])} "
          f"held-out frames per condition (episodes {ev_eps[0]}..{ev_eps[-1]}); target >= 0.90 on occlusion\n")
    print("| fit | fit frames | clean flagged | " + " | ".join(conditions) + " |")
    print("|---|---|---|" + "---|" * len(conditions))
    for name, r in results.items():
        print(f"| {name} | {r['fit_frames']} | {r['flagged']['clean']:.1%} | "
              + " | ".join(f"{r['auroc'][c]:.3f} / {r['flagged'][c]:.0%}" for c in conditions) + " |")
    seconds = round(time.perf_counter() - start, 1)
    print(f"\n(bench_camera_state_fit: {seconds:.0f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine(), "policy": str(assets.policy_dir),
                                         "calibration_episodes": cal_eps, "evaluation_episodes": ev_eps,
                                         "fits": results, "seconds": seconds}, indent=2))


if __name__ == "__main__":
    main()
