"""Which map can be trusted: pointing, deletion/insertion, and the per-tick cost of the gradient methods.

On the demo's held-out episodes (the target block's pixel position is recorded in each camera),
for cross_attention, rollout, relevance, relevance_cross, input_gradient, integrated_gradients
(blur baseline, offline) and a random order, every map explaining the same output (``--output``: the whole
predicted chunk, or its first action):

* pointing (ground truth): peak hit rate on the target's token cell (chance = 1 / cells) and the
  median target mass ratio (target cell's share x cells; 1.0 = uniform), both cameras, as
  bench_attention_accuracy.py measures them;
* deletion / insertion AUC (no ground truth; :mod:`pai_ros.attention.faithfulness`): cells
  blurred (restored) most important first, the normalised change of the predicted actions;
  higher = more faithful; random is the floor, integrated gradients the reference; and their
  symmetric gain (deletion + insertion AUC - 1, median over frames), which a random order scores
  ~0 on and which a blurred patchwork the policy reacts to by itself does not inflate;
* the live cost: a tick with relevance (and relevance_cross, input_gradient) vs a bare tick on the
  same frames, interleaved rounds, same run, CPU.

Also the attention-sink analysis (:mod:`pai_ros.attention.sinks`) of the cross-attention.
Writes bench/results/faithfulness_curves.png and faithfulness.json (or --json), and
methods_same_frame.png next to them: one front-camera frame with each method's map of it, the
sink cells and the target's cell outlined, each map titled with its peak hit rate and symmetric
gain over the run's frames.

Needs the demo assets (`pai demo-assets`; built if missing, which trains the demo policy).
Usage: python bench/bench_faithfulness.py [--episodes 0 1 ...] [--frames-per-episode 8]
       [--faith-every 2] [--ig-steps 16] [--steps 10] [--output chunk|first] [--timing-rounds 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_attention_accuracy import target_cells  # noqa: E402
from common import interleaved, machine, paired_ratio, print_table  # noqa: E402

from pai_ros.attention.attribution import GRADIENT_LIVE_METHODS  # noqa: E402
from pai_ros.attention.explainers import explaining  # noqa: E402
from pai_ros.attention.faithfulness import (  # noqa: E402
    FAITHFULNESS_METHODS,
    FaithfulnessConfig,
    MethodCurves,
    episode_observations,
    frame_curves,
    method_grids,
    plot_curves,
)
from pai_ros.attention.integrated_gradients import IGConfig  # noqa: E402
from pai_ros.attention.relevance import RelevanceTarget  # noqa: E402
from pai_ros.data.episodes import read_info  # noqa: E402
from pai_ros.policy.capture import CaptureConfig  # noqa: E402
from pai_ros.policy.loading import load_act_policy  # noqa: E402
from pai_ros.policy.runner import PolicyRunner  # noqa: E402

RESULTS = Path(__file__).parent / "results"
CAMERAS = ("front", "wrist")


def _frame_indices(root: Path, episode: int, n: int) -> list[int]:
    from pai_ros.data.episodes import episode_length

    total = episode_length(read_info(root), root, episode)
    return np.unique(np.round(np.linspace(0, total - 1, min(n, total))).astype(int)).tolist()


def tick_cost(runner: PolicyRunner, observations, rounds: int, target: RelevanceTarget) -> dict[str, list[float]]:
    """Seconds per tick: bare and each gradient live method, interleaved over the same frames."""
    obs = observations[: max(1, min(4, len(observations)))]

    def ticks(method: str | None):
        def run() -> None:
            if method is None:
                for o in obs:
                    runner.step(o)
            else:
                with explaining(runner, method, target):
                    for o in obs:
                        runner.step(o)
        return run

    fns = {"bare": ticks(None), **{m: ticks(m) for m in GRADIENT_LIVE_METHODS}}
    for fn in fns.values():  # warm-up
        fn()
    return {k: [t / len(obs) for t in v] for k, v in interleaved(fns, rounds).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, nargs="*", default=None)
    ap.add_argument("--frames-per-episode", type=int, default=8)
    ap.add_argument("--faith-every", type=int, default=2, help="deletion/insertion on every k-th evaluated frame")
    ap.add_argument("--ig-steps", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10, help="points on each deletion/insertion curve")
    ap.add_argument("--output", default="chunk", choices=("chunk", "first"))
    ap.add_argument("--timing-rounds", type=int, default=10)
    ap.add_argument("--methods", nargs="+", default=list(FAITHFULNESS_METHODS), choices=FAITHFULNESS_METHODS,
                    help="methods to compare (integrated_gradients is the reference of the AUC ratios)")
    ap.add_argument("--policy", type=Path, default=None, help="instead of the demo policy (with --heldout-root)")
    ap.add_argument("--heldout-root", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=RESULTS / "faithfulness.json")
    ap.add_argument("--png", type=Path, default=RESULTS / "faithfulness_curves.png")
    ap.add_argument("--picture-frame", type=int, default=0,
                    help="which evaluated front-camera frame with a visible target goes into methods_same_frame.png")
    args = ap.parse_args()

    if args.policy is None:
        from pai_ros.demo.assets import ensure_demo_assets

        assets = ensure_demo_assets()
        policy_dir, root = assets.policy_dir, assets.heldout_root
    else:
        policy_dir, root = args.policy, args.heldout_root
    info = read_info(root)
    episodes = args.episodes if args.episodes is not None else list(range(info["total_episodes"]))
    runner = PolicyRunner(load_act_policy(policy_dir, "cpu"), "replan",
                          CaptureConfig(encoder_self_attention=True, encoder_output=False))
    config = FaithfulnessConfig(steps=args.steps, output=args.output)
    ig = IGConfig(steps=args.ig_steps, baseline="blur")
    methods = tuple(args.methods)
    rng = np.random.default_rng(0)
    hits = {c: {m: [] for m in methods} for c in CAMERAS}
    ratios = {c: {m: [] for m in methods} for c in CAMERAS}
    cells: dict[str, int] = {}
    curves = {c: {m: MethodCurves() for m in methods} for c in CAMERAS}
    skipped = {c: 0 for c in CAMERAS}
    seconds: dict[str, float] = {}
    frames = 0
    all_obs = []
    sink_rows = []
    picture = None  # (image, grids, target cell) of the chosen front-camera frame
    seen_targets = 0
    t_start = time.monotonic()
    for ep in episodes:
        wanted = _frame_indices(root, ep, args.frames_per_episode)
        observations = episode_observations(root, ep, args.frames_per_episode)
        targets = {}
        for cam in CAMERAS:
            hw = tuple(info["features"][f"observation.images.{cam}"]["shape"][:2])
            layout = runner.step(observations[0]).capture.layout.camera(cam)
            targets[cam] = target_cells(root, ep, cam, hw, (layout.grid_h, layout.grid_w))
        for i, (fi, obs) in enumerate(zip(wanted, observations)):
            all_obs.append(obs)
            runner.reset()
            grids = method_grids(runner, obs, methods, config, ig, rng, seconds)
            sink_rows.append(runner.step(obs).capture)
            frames += 1
            if targets["front"][fi] is not None:
                if seen_targets == args.picture_frame:
                    picture = (obs.images["front"], {m: grids[m]["front"] for m in methods if m != "random"},
                               targets["front"][fi])
                seen_targets += 1
            for cam in CAMERAS:
                t = targets[cam][fi]
                if t is not None:
                    for m in methods:
                        w = np.asarray(grids[m][cam], dtype=np.float64).ravel()
                        cells[cam] = len(w)
                        hits[cam][m].append(int(np.argmax(w)) == t)
                        ratios[cam][m].append(w[t] / max(w.sum(), 1e-12) * len(w))
                if i % args.faith_every == 0:
                    c = frame_curves(runner, obs, cam, {m: grids[m][cam] for m in methods}, config)
                    if c is None:
                        skipped[cam] += 1
                        continue
                    for m, (d, ins) in c.items():
                        curves[cam][m].deletion.append(d)
                        curves[cam][m].insertion.append(ins)
        print(f"episode {ep}: {frames} frames so far, {time.monotonic() - t_start:.0f} s", flush=True)

    cost = tick_cost(runner, all_obs, args.timing_rounds, RelevanceTarget(config.output))
    from pai_ros.attention.sinks import plot_sinks, sink_analysis

    sinks = sink_analysis(sink_rows)
    for out in (args.json, args.png):  # the pictures go next to the curves, wherever they are asked for
        out.parent.mkdir(parents=True, exist_ok=True)
    plot_sinks(sinks, args.png.with_name("attention_sinks.png"),
               f"mean cross-attention per cell over {frames} held-out frames (red: the 3 most constant cells)")
    fr = config.fractions
    summary = {"output": config.output, "frames": frames, "episodes": episodes, "fractions": fr.tolist(),
               "skipped_frames": skipped, "cameras": {}, "pointing": {}, "map_seconds_per_frame":
               {m: s / max(frames, 1) for m, s in seconds.items()},
               "tick_ms": {k: statistics.median(v) * 1000 for k, v in cost.items()}, "sinks": sinks}
    for cam in CAMERAS:
        summary["cameras"][cam] = {m: curves[cam][m].summary(fr) for m in methods}
        summary["pointing"][cam] = {m: {"frames": len(hits[cam][m]), "peak_hit_rate": float(np.mean(hits[cam][m])),
                                        "chance": 1.0 / cells[cam],
                                        "mass_ratio_median": float(np.median(ratios[cam][m]))}
                                    for m in methods if hits[cam][m]}
    if picture is not None:
        from pai_ros.attention.sinks import plot_same_frame

        image, grids, t = picture
        gw = next(iter(grids.values())).shape[1]
        figures = {}
        for m in grids:
            p, g = summary["pointing"]["front"].get(m), summary["cameras"]["front"][m].get("symmetric_gain_median")
            figures[m] = (f"peak hit {p['peak_hit_rate']:.0%}" if p else "") + (f", gain {g:.2f}" if g is not None
                                                                                 else "")
        plot_same_frame(image, grids, args.png.with_name("methods_same_frame.png"),
                        sink_cells=sinks["cameras"]["front"]["sink_cells"], target_cell=(t // gw, t % gw),
                        figures=figures,
                        title=f"one held-out front-camera frame, output {config.output}: red dashed = the "
                              f"cross-attention sinks, white = the target block's cell")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2))
    plot_curves(summary, args.png, f"deletion/insertion on {frames} held-out demo frames "
                                   f"(1 in {args.faith_every}), output {config.output}")

    rows = []
    for cam in CAMERAS:
        ig_d = summary["cameras"][cam].get("integrated_gradients", {}).get("deletion_auc")
        ig_g = summary["cameras"][cam].get("integrated_gradients", {}).get("symmetric_gain_median")
        for m in methods:
            p = summary["pointing"][cam].get(m)
            s = summary["cameras"][cam][m]
            if p:
                target = ">= 0.70" if cam == "front" and m in ("relevance", "input_gradient") else "-"
                rows.append((f"{cam} peak hit rate, {m}, {p['frames']} frames", f"{p['peak_hit_rate']:.3f}",
                             f"chance {p['chance']:.3f}",
                             f"{p['peak_hit_rate'] / p['chance']:.1f}x chance; mass x{p['mass_ratio_median']:.2f}",
                             target))
            if s.get("frames"):
                ratio = f"{s['deletion_auc'] / ig_d:.2f}x IG" if ig_d else "-"
                target = ">= 0.90x IG" if m in ("relevance", "input_gradient") else "-"
                rows.append((f"{cam} deletion AUC / insertion AUC, {m}, {s['frames']} frames",
                             f"{s['deletion_auc']:.3f} / {s['insertion_auc']:.3f}",
                             f"IG {ig_d:.3f}" if ig_d else "-", ratio, target))
                # The gain is what to read where deletion overshoots 1 (module docstring of faithfulness.py);
                # a ratio to IG only means something while IG's own gain is clearly positive.
                g, (q25, q75) = s["symmetric_gain_median"], s["symmetric_gain_quartiles"]
                comparable = ig_g is not None and ig_g > 0.05
                rows.append((f"{cam} symmetric gain (median [quartiles]), {m}, {s['frames']} frames",
                             f"{g:.3f} [{q25:.2f}-{q75:.2f}]", f"IG {ig_g:.3f}" if ig_g is not None else "-",
                             f"{g / ig_g:.2f}x IG" if comparable else "-", target if comparable else "-"))
    bare = cost["bare"]
    for m in GRADIENT_LIVE_METHODS:
        rows.append((f"tick with {m} (explains {config.output}), CPU", f"{statistics.median(cost[m]) * 1000:.1f} ms",
                     f"bare tick {statistics.median(bare) * 1000:.1f} ms", paired_ratio(cost[m], bare),
                     "<= 2.5x" if m in ("relevance", "input_gradient") else "-"))
    for cam, s in sinks["cameras"].items():
        rows.append((f"{cam} cross-attention mass on its {s['top_k']} most constant cells (sinks)",
                     f"{s['sink_mass_share']:.3f}", f"uniform {s['uniform_share']:.3f}",
                     f"{s['sink_mass_share'] / s['uniform_share']:.1f}x; cells {s['sink_cells']}", "-"))
    rows.append(("cross-attention share of latent / state tokens (mean)",
                 f"{sinks['token_shares'].get('latent', 0):.3f} / {sinks['token_shares'].get('state', 0):.3f}",
                 "-", "-", "-"))
    print_table(f"Faithfulness of the maps on {frames} frames of {len(episodes)} held-out demo episodes "
                f"(output: {config.output}; deletion/insertion on 1 frame in {args.faith_every}); {machine()}", rows)
    print(f"\ncurves: {args.png}; sinks: {args.png.with_name('attention_sinks.png')}; numbers: {args.json}; "
          f"{time.monotonic() - t_start:.0f} s")


if __name__ == "__main__":
    main()
