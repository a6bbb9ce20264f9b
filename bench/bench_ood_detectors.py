"""Is the occlusion the demo policy misses visible anywhere in the policy? Other OOD detectors, same frames.

``bench_ood.py`` measures the product's scores. Its occlusion (a grey block over the middle
quarter of both cameras) stays near AUROC 0.7 on the demo policy, against a target of 0.9.
This bench asks whether any other signal the policy offers separates it, so that the limit
is measured rather than assumed. Every detector is fitted on in-distribution frames only
(never on a corruption) and scored on the same held-out frames:

* ``sae_position`` (the product's score, the reference): per-position z of the log SAE
  error, mean of the top 10% of positions, statistics from the calibration episodes;
* ``tokens_mahalanobis``: encoder tokens, per-position mean, one covariance shared by the
  positions (shrunk 10% toward its mean variance), mean of the top 20% of positions;
* ``tokens_knn``: each token's distance to the nearest training token at its position
  (nearest-neighbour detection on the policy's tokens), top 20%;
* ``<layer>_z``: the policy's own ResNet feature maps (``layer2``..``layer4``), each cell's
  channels z-scored against that cell's training statistics (PaDiM's idea, diagonal), top 5%;
* ``<layer>_knn``: each cell's feature vector's distance to the nearest training cell at the
  same place (PatchCore's idea, without the coreset), top 5%;
* ``attention_z``: decoder cross-attention weights (head x query x token) z-scored against
  training, top 1%;
* ``feature_absence``: per SAE feature, how far its frame maximum falls *below* its training
  mean (a feature that always fires going silent: "something usually there is missing"), top 1%;
* ``chunk_inconsistency``: how far this tick's action chunk moves from the previous tick's
  (shifted one step), in clean action spreads: the policy changing its mind;
* ``pixels_z``: not the policy at all, the camera images: each 8x8-pixel cell's mean and spread
  of R, G, B z-scored against that cell's training statistics, top 5% (is the corruption unusual
  in the pixels themselves?);
* ``pixels_knn``: each frame's images, 8x downsampled, against the nearest training frame's;
* ``cameras_vs_joints``: do the cameras agree with the joints? :mod:`pai_ros.sae.camera_state`:
  one ridge regression from all the encoder's camera tokens to the robot state, fitted on the
  calibration episodes (what ``pai sae calibrate`` fitted until 2026-12-06; it now fits one per
  camera, compared in ``bench_camera_state_fit.py``); the score is the squared error of its
  prediction against the measured state, per state dimension in units of its cross-fitted error;
* ``cameras_vs_joints_with_training``: the same fitted on the reference training frames and the
  calibration episodes together (more episodes for the regression and its threshold);
* ``cameras_vs_joints_state_shuffled``: the same frames again, each also run with the robot
  state of a random other reference frame while the regression's target stays the frame's own
  state. ACT's encoder lets its camera tokens attend to the state token, so they carry part of
  the state the policy was given; these copies teach the regression to ignore that part and read
  the state from what the cameras show.

How much of the given state the camera tokens carry is measured too (``state_leak``): the
evaluation frames run again with the state moved by one reference spread per dimension, and the
regressions' predictions compared with the unmoved run's, in units of that move (0: the cameras
alone decide; 1: the prediction follows whatever state the policy is given).

Both regressions also give a cross-fitted threshold at a 1% false-positive rate; the share of
clean evaluation frames above it is printed and kept in the JSON.

Two built from the others, to see whether time or a second signal does what no single frame does:

* ``sae_position_5_ticks``: the product's score averaged over the last 5 ticks of the episode
  (a sustained fault, as an occlusion is; fewer ticks at an episode's start);
* ``sae_position_and_chunk``: Fisher's combination of the product's score and chunk
  inconsistency, each as an upper-tail p-value against the calibration episodes (the product's
  score cross-fitted there, as ``pai sae calibrate`` scores them).

Reference for the detectors that need one: every other frame of training episodes 0..39 (the
policy's and SAE's training data); ``sae_position`` calibrates on held-out episodes 0..7 as
``pai sae calibrate`` would. Evaluation: held-out episodes 8..15, clean and corrupted, the first
frame of each episode left out (it has no previous chunk). A second table splits the occluded
frames by how much the occlusion changed the predicted chunk.

Usage: python bench/bench_ood_detectors.py [--json PATH]
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
from bench_ood import dim_images, ticks
from common import machine, print_table

from pai_ros.data.episodes import iter_episode, read_info
from pai_ros.demo.assets import ensure_demo_assets
from pai_ros.policy.capture import CaptureConfig
from pai_ros.policy.loading import load_act_policy
from pai_ros.policy.observation import Observation
from pai_ros.policy.runner import PolicyRunner
from pai_ros.sae.camera_state import CameraStateProbe, camera_features, episode_groups, fit_camera_state
from pai_ros.sae.frame import encode_frame
from pai_ros.sae.model import LoadedSae, load_sae
from pai_ros.sae.ood import Corruption, auroc, corruptions
from pai_ros.sae.position_score import (
    ScoreSettings,
    calibrate_positions,
    cross_fitted_scores,
    frame_scores,
    mean_of_top,
)

Row = tuple[str, str, str, str, str]
LAYERS = ("layer2", "layer3", "layer4")
Frames = dict[str, np.ndarray]
PIXEL_CELL = 8  # pixels per side of the cells the pixel detectors compare
PIXEL_FLOOR = 2.0  # grey levels added to each cell statistic's spread (about a camera's noise): flat cells stay finite


def pixel_features(images: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The cameras' images (sorted by name) as ``[cells, 6]`` (each cell's RGB mean and std) and
    as one 8x-downsampled vector."""
    stats, small = [], []
    for name in sorted(images):
        im = images[name].astype(np.float32)
        h, w = (im.shape[0] // PIXEL_CELL) * PIXEL_CELL, (im.shape[1] // PIXEL_CELL) * PIXEL_CELL
        blocks = im[:h, :w].reshape(h // PIXEL_CELL, PIXEL_CELL, w // PIXEL_CELL, PIXEL_CELL, 3)
        mean, std = blocks.mean(axis=(1, 3)), blocks.std(axis=(1, 3))
        stats.append(np.concatenate([mean, std], axis=-1).reshape(-1, 6))
        small.append(mean.ravel())
    return np.concatenate(stats), np.concatenate(small)


def recording(transform: Corruption | None, sink: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Corruption:
    """``transform`` (or none) that also keeps the pixel features of the images the policy is given
    and the robot state it is given with them."""
    def apply(frame, obs):
        out = obs if transform is None else transform(frame, obs)
        sink.append((*pixel_features(out.images), np.asarray(out.state, np.float64)))
        return out
    return apply


def collect(runner: PolicyRunner, loaded: LoadedSae, root: Path, episodes: list[int],
            transform: Corruption | None = None, stride: int = 1) -> Frames:
    """Per frame: encoder tokens, SAE token errors and frame maxima, backbone maps, attention, chunk."""
    grabbed: dict[str, list[np.ndarray]] = {}
    backbone = runner.policy.model.backbone
    hooks = [getattr(backbone, name).register_forward_hook(
        lambda _m, _i, out, name=name: grabbed.setdefault(name, []).append(out[0].float().cpu().numpy()))
        for name in LAYERS]
    keep: dict[str, list[np.ndarray]] = {k: [] for k in ("tokens", "errors", "feature_max", "attention", "chunk",
                                                       "episode", *LAYERS)}
    pixels: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    try:
        for e, tick in ticks(runner, root, episodes, recording(transform, pixels), stride):
            tokens = tick.capture.encoder_output[0]
            ff = encode_frame(loaded.sae, tokens)
            maxima = np.zeros(loaded.cfg.d_sae, np.float32)
            maxima[ff.feature_indices] = ff.activations
            keep["tokens"].append(tokens.float().numpy())
            keep.setdefault("camera_features", []).append(camera_features(tokens, tick.capture.layout))
            keep["errors"].append(ff.token_errors.astype(np.float64))
            keep["feature_max"].append(maxima)
            keep["attention"].append(tick.capture.cross_attention_heads[0].float().numpy())
            keep["chunk"].append(tick.chunk)
            keep["episode"].append(np.int64(e))
            for name in LAYERS:  # the backbone ran once per camera this tick: [cameras, C, h, w]
                keep[name].append(np.stack(grabbed.pop(name)))
    finally:
        for h in hooks:
            h.remove()
    keep["pixel_cells"] = [c for c, _, _ in pixels]
    keep["pixel_image"] = [v for _, v, _ in pixels]
    keep["state"] = [st for _, _, st in pixels]
    return {k: np.stack(v) for k, v in keep.items()}


def nearest_at_position(reference: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``[Fq, P]`` distance of each query vector to the nearest reference vector at the same position.

    ``reference`` ``[Fr, P, C]``, ``query`` ``[Fq, P, C]``.
    """
    ref = torch.from_numpy(np.ascontiguousarray(reference.transpose(1, 0, 2)))  # [P, Fr, C]
    qry = torch.from_numpy(np.ascontiguousarray(query.transpose(1, 0, 2)))  # [P, Fq, C]
    step = 64  # positions per batched cdist: bounds the [positions, Fq, Fr] distance block
    out = [torch.cdist(qry[p:p + step], ref[p:p + step]).min(dim=-1).values for p in range(0, len(qry), step)]
    return torch.cat(out).numpy().T


def cells(maps: np.ndarray) -> np.ndarray:
    """Backbone maps ``[F, cameras, C, h, w]`` as ``[F, cameras*h*w, C]``."""
    f, k, c, h, w = maps.shape
    return maps.transpose(0, 1, 3, 4, 2).reshape(f, k * h * w, c)


def inconsistency(frames: Frames, spread: np.ndarray) -> np.ndarray:
    """Mean change of the chunk from the previous tick's (shifted one step); NaN on an episode's first frame."""
    chunk, episode = frames["chunk"], frames["episode"]
    out = np.full(len(chunk), np.nan)
    same = episode[1:] == episode[:-1]
    moved = np.abs(chunk[1:, :-1] - chunk[:-1, 1:]) / spread
    out[1:][same] = moved[same].mean(axis=(1, 2))
    return out


def over_ticks(scores: np.ndarray, episode: np.ndarray, ticks: int) -> np.ndarray:
    """Each frame's score averaged with its episode's previous ``ticks - 1`` (fewer at the start).

    Frames are in tick order, each episode's contiguous (as ``collect`` gives them).
    """
    out = np.empty(len(scores))
    for i in range(len(scores)):
        window = slice(max(0, i - ticks + 1), i + 1)
        out[i] = scores[window][episode[window] == episode[i]].mean()
    return out


def state_leak(probe: CameraStateProbe, frames: Frames, moved: Frames, step: np.ndarray) -> list[float]:
    """Per state dimension: the mean change of the regression's prediction when the policy was
    given the state moved by ``step``, in units of ``step`` (same images)."""
    change = probe.predict(moved["camera_features"]) - probe.predict(frames["camera_features"])
    return (change.mean(axis=0) / step).round(3).tolist()


def upper_p(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Empirical upper-tail p-value of each score against ``reference`` (never 0; NaN stays NaN)."""
    ref = np.sort(reference[np.isfinite(reference)])
    p = (len(ref) + 1 - np.searchsorted(ref, scores, side="left")) / (len(ref) + 1)
    return np.where(np.isnan(scores), np.nan, p)


def given_state(states: np.ndarray, seed: int = 0) -> Corruption:
    """Give the policy the state of a random frame of ``states`` instead of the frame's own."""
    rng = np.random.default_rng(seed)

    def apply(_frame, obs):
        return Observation(obs.images, states[rng.integers(len(states))].astype(np.float32), obs.env_state)
    return apply


def moved_state(step: np.ndarray) -> Corruption:
    """Give the policy the frame's state moved by ``step``."""
    def apply(_frame, obs):
        return Observation(obs.images, (np.asarray(obs.state, np.float64) + step).astype(np.float32), obs.env_state)
    return apply


def detectors(reference: Frames, calibration: Frames, spread: np.ndarray, thresholds: dict[str, float],
              other_state: tuple[Frames, Frames], probes: dict[str, CameraStateProbe]
              ) -> dict[str, Callable[[Frames], np.ndarray]]:
    """Each detector fitted on in-distribution frames: frames -> one score per frame (higher = more OOD).

    ``other_state``: the calibration and reference frames run with other frames' states (their
    ``state`` is the one given; the targets are the frames' own). Detectors that come with a
    calibrated threshold put it in ``thresholds``; the camera-state regressions go in ``probes``.
    """
    out: dict[str, Callable[[Frames], np.ndarray]] = {}
    settings = ScoreSettings()
    stats, _ = calibrate_positions(calibration["errors"], calibration["episode"], settings)
    out["sae_position"] = lambda f: frame_scores(stats, f["errors"], settings)

    tokens = reference["tokens"]
    mean = tokens.mean(axis=0)
    resid = (tokens - mean).reshape(-1, tokens.shape[-1])
    cov = resid.T @ resid / len(resid)
    cov += 0.1 * np.trace(cov) / len(cov) * np.eye(len(cov))
    precision = np.linalg.inv(cov)
    out["tokens_mahalanobis"] = lambda f: mean_of_top(np.einsum("fsd,de,fse->fs", f["tokens"] - mean, precision,
                                                             f["tokens"] - mean), 0.2)
    out["tokens_knn"] = lambda f: mean_of_top(nearest_at_position(tokens, f["tokens"]), 0.2)

    for name in LAYERS:
        ref_cells = cells(reference[name])
        mu, sd = ref_cells.mean(axis=0), ref_cells.std(axis=0)
        sd = sd + 1e-3 * float(sd.mean())
        out[f"{name}_z"] = lambda f, n=name, mu=mu, sd=sd: mean_of_top((((cells(f[n]) - mu) / sd) ** 2).mean(-1), 0.05)
        out[f"{name}_knn"] = lambda f, n=name, r=ref_cells: mean_of_top(nearest_at_position(r, cells(f[n])), 0.05)

    att = reference["attention"]
    a_mu, a_sd = att.mean(axis=0), att.std(axis=0) + 1e-4
    out["attention_z"] = lambda f: mean_of_top(((f["attention"] - a_mu) / a_sd) ** 2, 0.01)

    fm = reference["feature_max"]
    f_mu, f_sd = fm.mean(axis=0), fm.std(axis=0)
    f_sd = np.sqrt(f_sd ** 2 + (0.1 * np.median(f_sd[f_sd > 0])) ** 2)  # silent features: no zero spread
    out["feature_absence"] = lambda f: mean_of_top((f_mu - f["feature_max"]) / f_sd, 0.01)
    out["chunk_inconsistency"] = lambda f: inconsistency(f, spread)

    px = reference["pixel_cells"]
    p_mu, p_sd = px.mean(axis=0), px.std(axis=0) + PIXEL_FLOOR
    out["pixels_z"] = lambda f: mean_of_top((((f["pixel_cells"] - p_mu) / p_sd) ** 2).mean(-1), 0.05)
    ref_images = torch.from_numpy(reference["pixel_image"])
    out["pixels_knn"] = lambda f: torch.cdist(torch.from_numpy(f["pixel_image"]), ref_images).min(dim=1).values.numpy()

    # (camera features, target states, episode) per fit. A shuffled copy's target is its frame's
    # own state, and it keeps its frame's episode so that cross-fitting holds both out together.
    both = (calibration, reference)
    x_own = np.concatenate([f["camera_features"] for f in both])
    y_own = np.concatenate([f["state"] for f in both])
    g_own = episode_groups(*(f["episode"] for f in both))
    x_other = np.concatenate([f["camera_features"] for f in other_state])
    fits = {"cameras_vs_joints": (calibration["camera_features"], calibration["state"], calibration["episode"]),
            "cameras_vs_joints_with_training": (x_own, y_own, g_own),
            "cameras_vs_joints_state_shuffled": (np.concatenate([x_own, x_other]), np.concatenate([y_own, y_own]),
                                                 np.concatenate([g_own, g_own]))}
    for name, (x, y, groups) in fits.items():
        probe, summary = fit_camera_state(x, y, groups, {}, settings)
        thresholds[name], probes[name] = summary["threshold"], probe
        out[name] = lambda f, probe=probe: probe.scores(f["camera_features"], f["state"])

    out["sae_position_5_ticks"] = lambda f: over_ticks(out["sae_position"](f), f["episode"], 5)
    cal_score = cross_fitted_scores(calibration["errors"], calibration["episode"], settings)
    cal_chunk = inconsistency(calibration, spread)
    out["sae_position_and_chunk"] = lambda f: -np.log(upper_p(cal_score, out["sae_position"](f))) \
        - np.log(upper_p(cal_chunk, inconsistency(f, spread)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--reference-stride", type=int, default=2, help="every N-th frame of the training episodes")
    args = ap.parse_args()
    start = time.perf_counter()
    torch.set_grad_enabled(False)

    assets = ensure_demo_assets(progress=False)
    if not assets.has_sae():
        raise SystemExit(f"no demo SAE in {assets.sae_dir}: run `pai demo-assets` (it trains one)")
    loaded = load_sae(assets.sae_dir)
    runner = PolicyRunner(load_act_policy(assets.policy_dir, "cpu"), "replan",
                          CaptureConfig(cross_attention=True, per_head=True, encoder_output=True))
    held = assets.heldout_root
    train_root = assets.policy_dir.parent / "datasets" / "pai_demo_reach"
    n_held = int(read_info(held)["total_episodes"])
    cal_eps, ev_eps = list(range(n_held // 2)), list(range(n_held // 2, n_held))

    reference = collect(runner, loaded, train_root, list(range(40)), stride=args.reference_stride)
    calibration = collect(runner, loaded, held, cal_eps)
    other_state = (collect(runner, loaded, held, cal_eps, given_state(reference["state"], 1)),
                   collect(runner, loaded, train_root, list(range(40)), given_state(reference["state"], 2),
                           stride=args.reference_stride))
    state_step = reference["state"].std(axis=0)
    first = next(iter_episode(held, ev_eps[0], read_info(held)))
    kinds = {**corruptions(list(runner.spec.cameras), {c: first.images[c].shape for c in runner.spec.cameras}),
             "brightness": dim_images}
    clean = collect(runner, loaded, held, ev_eps)
    bad = {name: collect(runner, loaded, held, ev_eps, fn) for name, fn in kinds.items()}
    moved = collect(runner, loaded, held, ev_eps, moved_state(state_step))
    runner.close()

    spread = clean["chunk"].reshape(-1, clean["chunk"].shape[-1]).std(axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    scored = ~np.isnan(inconsistency(clean, spread))  # frames with a previous tick, for every detector
    thresholds: dict[str, float] = {}
    probes: dict[str, CameraStateProbe] = {}
    fns = detectors(reference, calibration, spread, thresholds, other_state, probes)
    scores = {det: {cond: fn(frames)[scored] for cond, frames in [("clean", clean), *bad.items()]}
              for det, fn in fns.items()}
    table = {det: {cond: auroc(s["clean"], s[cond]) for cond in bad} for det, s in scores.items()}

    print(f"\nAUROC per detector and corruption: {int(scored.sum())} frames per condition (held-out episodes "
          f"{ev_eps[0]}..{ev_eps[-1]}, first frames left out); reference {len(reference['chunk'])} training frames; "
          "target >= 0.90 on occlusion\n")
    print("| detector | " + " | ".join(bad) + " |")
    print("|---|" + "---|" * len(bad))
    for det, a in table.items():
        print(f"| {det} | " + " | ".join(f"{a[c]:.3f}" for c in bad) + " |")

    flagged = {det: {cond: float((s > thresholds[det]).mean()) for cond, s in scores[det].items()}
               for det in thresholds}
    for det, f in flagged.items():
        print(f"{det}: threshold {thresholds[det]:.3g} (cross-fitted, 1% false-positive rate) flags "
              + ", ".join(f"{cond} {v:.1%}" for cond, v in f.items()))

    leak = {name: state_leak(probe, clean, moved, state_step) for name, probe in probes.items()}
    for name, per_dim in leak.items():
        print(f"{name}: its prediction follows {', '.join(f'{v:+.2f}' for v in per_dim)} of a one-spread move of "
              "the state the policy is given (per state dimension; 0 = the cameras alone decide)")

    change = (np.abs(bad["occlusion"]["chunk"] - clean["chunk"]) / spread).mean(axis=(1, 2))[scored]
    bins = [(0.0, 0.1), (0.1, 0.3), (0.3, np.inf)]
    # Every detector's AUROC per bin goes to the JSON; the printed table shows the product's score
    # against the best other detector on occlusion.
    best = max((d for d in table if d != "sae_position"), key=lambda d: table[d]["occlusion"])
    split_rows: list[Row] = []
    results_split = {}
    for lo, hi in bins:
        sel = (change >= lo) & (change < hi)
        label = f"occluded frames whose chunk moved {lo:g}-{hi:g} clean spreads ({int(sel.sum())} frames)"
        a = {d: auroc(scores[d]["clean"], scores[d]["occlusion"][sel]) for d in table}
        results_split[f"{lo:g}-{hi:g}"] = {"frames": int(sel.sum()), **a}
        split_rows.append((label, f"{a['sae_position']:.3f}", f"{a[best]:.3f}", "-", "-"))
    print_table(f"Occlusion AUROC by how much it changes the policy's chunk (this = sae_position, reference = {best})",
                split_rows)

    results = {"machine": machine(), "policy": str(assets.policy_dir), "sae_id": loaded.sae_id,
               "reference_frames": len(reference["chunk"]), "evaluation_frames": int(scored.sum()),
               "calibration_episodes": cal_eps, "evaluation_episodes": ev_eps, "auroc": table,
               "occlusion_by_action_change": results_split,
               "thresholds": thresholds, "flagged": flagged, "state_leak": leak,
               "seconds": round(time.perf_counter() - start, 1)}
    print(f"\n(bench_ood_detectors: {results['seconds']:.0f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
