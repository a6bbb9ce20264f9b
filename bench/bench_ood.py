"""OOD detection on the demo policy: the frame-level SAE error against the per-position score.

The demo policy and its SAE (``pai demo-assets``: the SAE trained on the policy's encoder tokens
over the 40 training episodes) run over the held-out episodes, which were never trained on.
The first half of them calibrates (the frame-level threshold, the per-position statistics and
their cross-fitted threshold); the second half is scored clean and under each corruption:

* occlusion: a grey block over the middle quarter of every camera's area (grey 128, close to the
  demo table's colour: it mostly hides the blocks rather than adding something new);
* covered_<camera>: that camera's image all black (a covered lens, a dead feed), one at a time;
* noise: Gaussian pixel noise, sigma 40 of 255;
* swapped_cameras: front and wrist images exchanged;
* brightness: every image at 50% brightness (a dimmer room).

Per corruption: AUROC (probability a corrupted frame scores above a clean one) of the frame-level
FVU and of the per-position score (the defaults ``pai sae calibrate`` uses), the share of
frames each flags at its threshold (clean frames: the false-positive rate), and how much the
corruption changes what the policy does: mean absolute change of its predicted action chunk,
in units of the spread (std) of clean actions. A corruption the policy barely reacts to is not
out of distribution *for the policy*, whatever the pixels say. A second table sweeps the score's
settings (share of positions averaged, one- or two-sided) on the same frames (a sweep on the
evaluation frames themselves: read it as sensitivity, not as a tuned result).

A third table scores the same frames with the camera-state score (do the cameras agree with the
joints? :mod:`pai_ros.sae.camera_state`), fitted as ``pai sae calibrate --state-fit-dataset-root``
fits it: on the calibration episodes and the policy's training episodes at the stride the
command would choose (every frame on the demo; ``--train-root`` with ``--policy-path``;
skipped without one).

Usage: python bench/bench_ood.py [--quick] [--sae DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, print_table

from pai_ros.data.episodes import iter_episode, read_info
from pai_ros.demo.assets import ensure_demo_assets
from pai_ros.policy.observation import Observation
from pai_ros.policy.runner import PolicyRunner, TickResult, activations_runner
from pai_ros.sae.calibrate import StateFit
from pai_ros.sae.camera_state import (
    OUTPUT_AND_INPUT,
    camera_features,
    camera_grids,
    episode_groups,
    fit_camera_state,
)
from pai_ros.sae.frame import encode_frame
from pai_ros.sae.model import LoadedSae, load_sae
from pai_ros.sae.ood import Corruption, auroc, corruptions, fit_threshold
from pai_ros.sae.position_score import ScoreSettings, calibrate_positions, frame_scores

Row = tuple[str, str, str, str, str]


def dim_images(_frame, obs: Observation) -> Observation:
    """Every image at 50% brightness (a dimmer room)."""
    images = {c: (im.astype(np.float32) * 0.5).astype(np.uint8) for c, im in obs.images.items()}
    return Observation(images, obs.state, obs.env_state)


def ticks(runner: PolicyRunner, root: Path, episodes: list[int], transform: Corruption | None = None,
          stride: int = 1) -> Iterator[tuple[int, TickResult]]:
    """(episode, tick) for every ``stride``-th frame of ``episodes``, each frame through ``transform``.

    The runner replans every frame (``activations_runner``), so skipping frames changes nothing
    about the ones kept.
    """
    info = read_info(root)
    for e in episodes:
        runner.reset()
        for frame in iter_episode(root, e, info, stride):
            obs = Observation(frame.images, frame.state, frame.env_state)
            yield e, runner.step(obs if transform is None else transform(frame, obs))


def measure(runner: PolicyRunner, loaded: LoadedSae | None, root: Path, episodes: list[int],
            transform: Corruption | None = None, stride: int = 1) -> dict:
    """Per frame (every ``stride``-th): FVU, per-token squared errors, the predicted action chunk, the
    episode, the camera features and robot state of the camera-state score (and the token layout).
    Without an SAE (``loaded`` None) only the last three."""
    fvu, tokens, chunks, groups, features, states = [], [], [], [], [], []
    layout = None

    def keep_state(frame, obs):  # the corruptions change images only: the state is the frame's
        states.append(frame.state)
        return obs if transform is None else transform(frame, obs)

    for e, tick in ticks(runner, root, episodes, keep_state, stride):
        out = tick.capture.encoder_output[0]
        layout = tick.capture.layout
        if loaded is not None:
            ff = encode_frame(loaded.sae, out)
            fvu.append(ff.reconstruction_error)
            tokens.append(ff.token_errors.astype(np.float64))
            chunks.append(tick.chunk)
        groups.append(e)
        features.append(camera_features(out, layout, tick.capture.encoder_input[0]))  # as `pai sae calibrate`
    return {"fvu": np.asarray(fvu), "tokens": np.stack(tokens) if tokens else None,
            "chunks": np.stack(chunks) if chunks else None, "groups": np.asarray(groups),
            "features": np.stack(features), "layout": layout,
            "states": np.stack(states).astype(np.float64) if states and states[0] is not None else None}


def inputs(args: argparse.Namespace) -> tuple[Path, Path, Path, Path | None]:
    """(policy, held-out dataset root, SAE, training dataset root or None): the demo assets', or the ones given."""
    if args.policy_path is not None:
        if args.sae is None or args.heldout_root is None:
            raise SystemExit("--policy-path needs --heldout-root and --sae (an SAE trained on that policy's tokens)")
        return args.policy_path, args.heldout_root, args.sae, args.train_root
    assets = ensure_demo_assets(progress=False)
    sae = args.sae or assets.sae_dir
    if args.sae is None and not assets.has_sae():
        raise SystemExit(f"no demo SAE in {assets.sae_dir}: run `pai demo-assets` (it trains one) or pass --sae")
    return assets.policy_dir, assets.heldout_root, sae, assets.dataset_root


def camera_state_rows(cal: dict, clean: dict, bad: dict[str, dict], train: dict | None,
                      spread: np.ndarray) -> tuple[list[Row], dict]:
    """The camera-state score fitted as `pai sae calibrate --state-fit-dataset-root` fits it, on the same frames."""
    parts = [cal] if train is None else [cal, train]
    probe, summary = fit_camera_state(np.concatenate([p["features"] for p in parts]),
                                      np.concatenate([p["states"] for p in parts]),
                                      episode_groups(*(p["groups"] for p in parts)),
                                      camera_grids(cal["layout"]), ScoreSettings(), inputs=OUTPUT_AND_INPUT)
    thr = summary["threshold"]
    base = probe.scores(clean["features"], clean["states"])
    rows: list[Row] = [("clean frames flagged (false-positive rate)", f"{(base > thr).mean():.1%}", "-", "-", "~1%")]
    out = {"threshold": thr, "episodes": summary["episodes"], "fit_frames": summary["fit_frames"],
           "clean_flagged": float((base > thr).mean()), "corruptions": {}}
    for name, m in bad.items():
        s = probe.scores(m["features"], m["states"])
        change = float((np.abs(m["chunks"] - clean["chunks"]) / spread).mean())
        rows.append((f"{name}: AUROC / frames flagged", f"{auroc(base, s):.3f} / {(s > thr).mean():.1%}", "-", "-",
                     ">= 0.90" if name == "occlusion" else "-"))
        out["corruptions"][name] = {"auroc": auroc(base, s), "flagged": float((s > thr).mean()),
                                    "action_change": change}
    return rows, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 calibration + 2 evaluation episodes")
    ap.add_argument("--frame-stride", type=int, default=1, help="use every N-th frame (a busy machine)")
    ap.add_argument("--sae", type=Path, help="SAE directory (default: the demo assets' SAE)")
    ap.add_argument("--policy-path", type=Path, help="another ACT checkpoint instead of the demo policy")
    ap.add_argument("--heldout-root", type=Path, help="with --policy-path: held-out episodes (LeRobot dataset)")
    ap.add_argument("--train-root", type=Path,
                    help="with --policy-path: the policy's training dataset, for the camera-state score")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    start = time.perf_counter()

    policy, root, sae, train_root = inputs(args)
    loaded = load_sae(sae)
    runner = activations_runner(policy, "cpu")
    held = list(range(int(read_info(root)["total_episodes"])))
    half = len(held) // 2
    cal_eps, ev_eps = held[:half], held[half:]
    if args.quick:
        cal_eps, ev_eps = cal_eps[:2], ev_eps[:2]

    stride = args.frame_stride
    cal = measure(runner, loaded, root, cal_eps, stride=stride)
    clean = measure(runner, loaded, root, ev_eps, stride=stride)
    first = next(iter_episode(root, ev_eps[0], read_info(root)))
    kinds = {**corruptions(list(runner.spec.cameras), {c: first.images[c].shape for c in runner.spec.cameras}),
             "brightness": dim_images}
    bad = {name: measure(runner, loaded, root, ev_eps, fn, stride) for name, fn in kinds.items()}
    train, fit_stride = None, None
    if train_root is not None and cal["states"] is not None:
        train_eps = list(range(int(read_info(train_root)["total_episodes"])))
        fit = StateFit(train_root, train_eps[:4] if args.quick else train_eps)
        fit_stride = fit.stride_for(len(cal["groups"]))
        train = measure(runner, None, train_root, fit.episodes, stride=fit_stride)
    runner.close()

    settings = ScoreSettings()
    frame_thr = fit_threshold(cal["fvu"], "p99")["threshold"]
    stats, summary = calibrate_positions(cal["tokens"], cal["groups"], settings)
    score_thr = summary["threshold"]
    clean_scores = frame_scores(stats, clean["tokens"], settings)
    action_spread = clean["chunks"].reshape(-1, clean["chunks"].shape[-1]).std(axis=0)
    action_spread = np.where(action_spread > 0, action_spread, 1.0)

    n_tok = cal["tokens"].shape[1]
    title = (f"OOD detection on {'the demo policy' if args.policy_path is None else policy}: {len(cal_eps)} held-out episodes calibrate ({cal['fvu'].size} "
             f"frames), {len(ev_eps)} others evaluate ({clean['fvu'].size} frames per condition); "
             f"{n_tok} tokens per frame; SAE {loaded.sae_id} (d_sae {loaded.cfg.d_sae}, k {loaded.cfg.k}). "
             f"this = per-position score (top {settings.top_fraction:.0%} of positions, "
             f"{'two' if settings.two_sided else 'one'}-sided, threshold at {settings.target_fpr:.0%} FPR, "
             f"cross-fitted), reference = frame-level FVU (p99 threshold)")
    rows: list[Row] = [("clean frames flagged (false-positive rate)",
                        f"{(clean_scores > score_thr).mean():.1%}", f"{(clean['fvu'] > frame_thr).mean():.1%}",
                        "-", "~1%")]
    results: dict = {"machine": machine(), "quick": args.quick, "policy": str(policy), "sae_id": loaded.sae_id,
                     "tokens": n_tok,
                     "calibration_episodes": cal_eps, "evaluation_episodes": ev_eps, "score_settings":
                     settings.to_json(), "score_threshold": score_thr, "frame_threshold": frame_thr,
                     "corruptions": {}}
    for name, m in bad.items():
        scores = frame_scores(stats, m["tokens"], settings)
        a_score, a_frame = auroc(clean_scores, scores), auroc(clean["fvu"], m["fvu"])
        change = float((np.abs(m["chunks"] - clean["chunks"]) / action_spread).mean())
        target = ">= 0.90" if name == "occlusion" else "-"
        rows.append((f"{name}: AUROC", f"{a_score:.3f}", f"{a_frame:.3f}", f"{a_score - a_frame:+.3f}", target))
        rows.append((f"{name}: frames flagged / action chunk change (x clean action std)",
                     f"{(scores > score_thr).mean():.1%} / {change:.3f}", f"{(m['fvu'] > frame_thr).mean():.1%}",
                     "-", "-"))
        results["corruptions"][name] = {"score_auroc": a_score, "frame_auroc": a_frame, "action_change": change,
                                        "score_flagged": float((scores > score_thr).mean()),
                                        "frame_flagged": float((m["fvu"] > frame_thr).mean())}
    print_table(title, rows)

    sweep: list[Row] = []
    results["sweep"] = {}
    for top in (0.025, 0.05, 0.1, 0.2, 0.5, 1.0):
        for two in (False, True):
            s = ScoreSettings(top_fraction=top, two_sided=two)
            st, _ = calibrate_positions(cal["tokens"], cal["groups"], s)
            c = frame_scores(st, clean["tokens"], s)
            a = {name: auroc(c, frame_scores(st, m["tokens"], s)) for name, m in bad.items()}
            key = f"top {top:g}, {'two' if two else 'one'}-sided"
            results["sweep"][key] = a
            sweep.append((key, " / ".join(f"{a[n]:.3f}" for n in bad), "-", "-", "-"))
    print_table(f"Per-position score settings (AUROC {' / '.join(bad)}; same frames as above)", sweep)

    if cal["states"] is not None and cal["layout"] is not None and cal["layout"].has_state:
        camera_rows, results["camera_state"] = camera_state_rows(cal, clean, bad, train, action_spread)
        cs = results["camera_state"]
        print_table(f"Camera-state score (do the cameras agree with the joints?) on the same frames: regression "
                    f"fitted on {cs['fit_frames']} frames of {cs['episodes']} episodes (calibration"
                    + (f" + {'every' if fit_stride == 1 else f'every {fit_stride}th'} frame of the training episodes"
                       if fit_stride else "")
                    + f"), threshold {cs['threshold']:.3g} at 1% FPR, cross-fitted",
                    camera_rows)
    results["seconds"] = round(time.perf_counter() - start, 1)
    print(f"\n(bench_ood: {results['seconds']:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
