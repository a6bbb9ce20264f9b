"""How should the camera-state score be fitted? Training frames, ridge penalty, one regression or one per camera.

``pai sae calibrate --state-fit-dataset-root`` fits a ridge regression from the encoder's camera
tokens to the robot state (:mod:`pai_ros.sae.camera_state`) on the calibration episodes and the
policy's training episodes. This bench refits it on the same frames several ways and scores the
same held-out frames, clean and corrupted, with each fit:

* ``every 2nd frame`` / ``every frame``: the training episodes at stride 2 (the default until
  2026-12-05) or 1 (the default since: every frame the fit's budget of 2,000 allows);
* ``penalty P``: the ridge penalty as a share of the input dimension (the product uses 0.02);
* ``per camera``: one regression per camera, the frame's score the mean of the cameras' scores,
  each in units of its own threshold (since 2026-12-06; before, one regression read every camera);
* ``encoder input and output``: each camera's regression reads its cells before the encoder too
  (straight from its backbone, not yet mixed with the other camera), the product's default;
  ``encoder output`` alone is what the product read before;
* ``window N``: the per-camera score averaged over the episode's last N ticks (a live monitor
  that waits for a disagreement to persist; measured, not what the node publishes).

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
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_ood import ticks
from bench_ood_detectors import over_ticks
from common import machine

import pai_ros.sae.camera_state as camera_state
from pai_ros.data.episodes import iter_episode, read_info
from pai_ros.demo.assets import ensure_demo_assets
from pai_ros.policy.capture import CaptureConfig
from pai_ros.policy.loading import load_act_policy
from pai_ros.policy.runner import PolicyRunner
from pai_ros.sae.camera_state import camera_grids, episode_groups, fit_camera_state
from pai_ros.sae.ood import Corruption, auroc, corruptions
from pai_ros.sae.position_score import ScoreSettings

Frames = dict[str, np.ndarray]
DEFAULT = "every frame, per camera, encoder input and output (the default)"


def collect(runner: PolicyRunner, root: Path, episodes: list[int], transform: Corruption | None = None) -> Frames:
    """Per frame: every camera's encoder output and input tokens (``cells``, ``cells_in``: ``[cameras,
    cells, d]``), the state, the episode, the frame's index.

    The tokens are kept per cell, not pooled as :func:`~pai_ros.sae.camera_state.camera_features`
    pools them to at most 4x5 cells a camera: the same on the demo's 4x5 grids (its figures
    reproduce the command's), not on larger cameras, so this bench is for the demo policy.
    """
    cells, cells_in, states, groups, index = [], [], [], [], []

    def keep_state(frame, obs):  # the corruptions change images only: the state is the frame's
        states.append(np.asarray(frame.state, np.float64))
        return obs if transform is None else transform(frame, obs)

    for e, tick in ticks(runner, root, episodes, keep_state):
        for out, tokens in ((cells, tick.capture.encoder_output[0]), (cells_in, tick.capture.encoder_input[0])):
            out.append(np.stack([tokens.float()[c.slice].numpy() for c in tick.capture.layout.cameras]))
        index.append(0 if not groups or groups[-1] != e else index[-1] + 1)
        groups.append(e)
    return {"cells": np.stack(cells), "cells_in": np.stack(cells_in), "state": np.stack(states),
            "episode": np.array(groups), "index": np.array(index)}


def every(frames: Frames, stride: int) -> Frames:
    keep = frames["index"] % stride == 0
    return {k: v[keep] for k, v in frames.items()}


def flat(frames: Frames, inputs: tuple[str, ...]) -> np.ndarray:
    """The regression's input: each camera's block contiguous, in layout order, its encoder output
    cells then (with ``encoder_input``) its input cells: the same blocks as ``camera_features``
    (inside a block cells come before channels here, which a ridge regression does not mind)."""
    parts = [frames["cells"]] + ([frames["cells_in"]] if camera_state.ENCODER_INPUT in inputs else [])
    stacked = np.stack(parts, axis=2)  # [F, cameras, sources, cells, d]
    return stacked.reshape(len(stacked), -1)


def fit_and_score(calibration: Frames, training: Frames, grids: dict[str, tuple[int, int]], per_camera: bool,
                  inputs: tuple[str, ...], penalty: float, scored: dict[str, Frames], window: int = 1) -> dict:
    """The regression(s) fitted on calibration + training frames; AUROC and flagged share per condition."""
    saved = camera_state.PENALTY_SHARE
    camera_state.PENALTY_SHARE = penalty
    try:
        probe, summary = fit_camera_state(np.concatenate([flat(calibration, inputs), flat(training, inputs)]),
                                          np.concatenate([calibration["state"], training["state"]]),
                                          episode_groups(calibration["episode"], training["episode"]), grids,
                                          ScoreSettings(), per_camera=per_camera, inputs=inputs)
    finally:
        camera_state.PENALTY_SHARE = saved

    def score(f: Frames) -> np.ndarray:
        return over_ticks(probe.scores(flat(f, inputs), f["state"]), f["episode"], window)

    clean, threshold = score(scored["clean"]), summary["threshold"]
    out = {"fit_frames": int(len(calibration["state"]) + len(training["state"])),
           "state_explained": {c: r["state_explained"] for c, r in summary["regressions"].items()},
           "auroc": {k: auroc(clean, score(f)) for k, f in scored.items() if k != "clean"},
           "flagged": {k: float((score(f) > threshold).mean()) for k, f in scored.items()}}
    if window > 1:  # the per-frame threshold does not hold for a mean over ticks: no flagged shares
        out.pop("flagged")
    elif probe.per_camera:
        out["covered_camera_named"] = covered_camera_named(probe, scored, threshold, inputs)
    return out


def covered_camera_named(probe: camera_state.CameraStateProbe, scored: dict[str, Frames], threshold: float,
                         inputs: tuple[str, ...]) -> dict[str, float]:
    """Per ``covered_<camera>`` condition: on the frames flagged, the share where that camera's own
    score is the highest (what the status line names first; chance is one over the cameras)."""
    out = {}
    for condition, f in scored.items():
        camera = condition.removeprefix("covered_")
        if camera == condition or camera not in probe.regressions:
            continue
        by_camera = probe.camera_scores(flat(f, inputs), f["state"])
        names = np.array(list(by_camera))
        top = names[np.argmax(np.stack(list(by_camera.values())), axis=0)]
        flagged = probe.combine(by_camera) > threshold
        out[condition] = float((top[flagged] == camera).mean()) if flagged.any() else float("nan")
    return out


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
    grids = camera_grids(next(ticks(runner, held, cal_eps[:1]))[1].capture.layout)
    first = next(iter_episode(held, ev_eps[0], read_info(held)))
    kinds = corruptions(list(runner.spec.cameras), {c: first.images[c].shape for c in runner.spec.cameras})
    scored = {"clean": collect(runner, held, ev_eps),
              **{k: collect(runner, held, ev_eps, fn) for k, fn in kinds.items()}}
    runner.close()

    out, both = camera_state.OUTPUT_ONLY, camera_state.OUTPUT_AND_INPUT
    fits = {
        "every 2nd frame, one regression (the default until 2026-12-05)": (every(training, 2), False, out, 0.02, 1),
        "every frame, one regression (until 2026-12-06)": (training, False, out, 0.02, 1),
        **{f"every frame, one regression, penalty {p}": (training, False, out, p, 1) for p in (0.005, 0.01, 0.05)},
        "every frame, per camera, encoder output": (training, True, out, 0.02, 1),
        DEFAULT: (training, True, both, 0.02, 1),
        "every frame, one regression, encoder input and output": (training, False, both, 0.02, 1),
        **{f"the default, averaged over {w} ticks": (training, True, both, 0.02, w) for w in (2, 4, 8)},
    }
    results = {name: fit_and_score(calibration, t, grids, per_camera, inputs, penalty, scored, window)
               for name, (t, per_camera, inputs, penalty, window) in fits.items()}

    conditions = [k for k in scored if k != "clean"]
    print(f"\nCamera-state score fitted several ways: AUROC / flagged per corruption, {len(scored['clean']['state'])} "
          f"held-out frames per condition (episodes {ev_eps[0]}..{ev_eps[-1]}); target >= 0.90 on occlusion\n")
    print("| fit | fit frames | clean flagged | " + " | ".join(conditions) + " |")
    print("|---|---|---|" + "---|" * len(conditions))
    for name, r in results.items():
        flagged = r.get("flagged")
        print(f"| {name} | {r['fit_frames']} | " + (f"{flagged['clean']:.1%}" if flagged else "-") + " | "
              + " | ".join(f"{r['auroc'][c]:.3f}" + (f" / {flagged[c]:.0%}" if flagged else "")
                           for c in conditions) + " |")
    for name, r in results.items():
        if "covered_camera_named" in r:
            print(f"\n{name}: of the frames flagged with one camera covered, the share where that camera's own "
                  "score is the highest: " + ", ".join(f"{k} {v:.0%}" for k, v in r["covered_camera_named"].items()))
    seconds = round(time.perf_counter() - start, 1)
    print(f"\n(bench_camera_state_fit: {seconds:.0f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine(), "policy": str(assets.policy_dir),
                                         "calibration_episodes": cal_eps, "evaluation_episodes": ev_eps,
                                         "fits": results, "seconds": seconds}, indent=2))


if __name__ == "__main__":
    main()
