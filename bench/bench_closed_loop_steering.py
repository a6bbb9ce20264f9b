"""Is feature steering real in closed loop? Ablate the features that matter most vs as many random ones.

The demo policy drives the simulated demo robot (``pai_ros.sim``) over a fixed episode set while
an SAE feature steering (:class:`pai_ros.sae.steering.SteeringHook`, the SAE's error term kept)
is armed on every forward pass:

* baseline: no steering (the hook disarmed: bit-identical actions);
* top-k by effect: the ``k`` features whose ablation changes the predicted action chunk most
  (``pai features effects``: ablation effect over held-out frames, among the top features by
  activation), all ablated at once;
* k random: ``k`` features drawn from the same candidates (features that fire on the held-out
  episodes), excluding both top-k lists (a draw that contained several of the activation
  top-k measured those, not chance: seen on the demo policy), several draws;
* top-k by activation: the ``k`` most variable features by activation (what a browser shows
  first), for comparison with the ranking by effect.

Success rate and mean final distance over the same episodes. If the effect ranking means what it
says, ablating the top-k by effect hurts much more than ablating k random features.

Writes bench/results/closed_loop_steering.png and .json. Needs the demo assets (policy and SAE;
`pai demo-assets`) unless --policy-path/--sae/--heldout-root are given.

Usage: python bench/bench_closed_loop_steering.py [--episodes 50] [--seed 0] [--k 8] [--draws 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, print_table  # noqa: E402

from pai_ros.sim.evaluate import ClosedLoopReport, evaluate_closed_loop  # noqa: E402
from pai_ros.sim.policy import EVAL_MODE, sim_config_for, sim_runner  # noqa: E402
from pai_ros.sim.robot import SimConfig  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def rank_features(policy_path: Path, sae_dir: Path, heldout_root: Path, episodes: list[int], work: Path,
                  candidates: int, frames: int, action_dims: tuple[int, ...] | None = None,
                  horizon: int | None = None) -> tuple[list[dict], list[int]]:
    """The same pipeline as `pai features record`, `analyse`, `effects`: (rows by effect, ranked by activation)."""
    from pai_ros.features.analyse import AnalyseSettings, analyse
    from pai_ros.features.effects import EffectSettings, feature_effects
    from pai_ros.features.record import record_features
    from pai_ros.features.results import ResultsDir
    from pai_ros.policy.runner import activations_runner
    from pai_ros.sae.model import load_sae

    loaded = load_sae(sae_dir)
    runner = activations_runner(policy_path, "cpu")
    try:
        record_features(runner, loaded, heldout_root, episodes, work, progress=False)
        analysis = json.loads(analyse(ResultsDir(work), AnalyseSettings(top_features=candidates, thumbnails=False),
                                      progress=False).read_text())
        effects = json.loads(feature_effects(ResultsDir(work), runner, loaded,
                                             EffectSettings(top_features=candidates, frames=frames,
                                                            action_dims=action_dims, horizon=horizon),
                                             progress=False).read_text())
    finally:
        runner.close()
    return effects["features"], [int(f["feature"]) for f in analysis["features"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=8, help="features ablated together")
    ap.add_argument("--draws", type=int, default=3, help="random draws of k features")
    ap.add_argument("--candidates", type=int, default=32, help="top features by activation whose effect is measured")
    ap.add_argument("--effect-frames", type=int, default=64, help="held-out frames the effects are measured on")
    ap.add_argument("--feature-episodes", type=int, default=4, help="held-out episodes the features are ranked on")
    ap.add_argument("--effect-action-dims", type=int, nargs="+", default=None,
                    help="rank by the effect on these action dimensions only (e.g. 2: the demo's gripper)")
    ap.add_argument("--effect-horizon", type=int, default=None, help="rank by the effect on the first N actions")
    ap.add_argument("--policy-path", default=None)
    ap.add_argument("--sae", default=None, help="SAE directory (default: the demo SAE)")
    ap.add_argument("--heldout-root", default=None, help="held-out dataset (default: the demo's)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()

    base = SimConfig()
    if args.policy_path is None or args.sae is None or args.heldout_root is None:
        from pai_ros.demo.assets import ensure_demo_assets

        assets = ensure_demo_assets()
        if not assets.has_sae():
            raise SystemExit("the demo assets have no SAE: run `pai demo-assets` or pass --sae")
        base = SimConfig(scene=assets.settings.scene)
    policy_path = Path(args.policy_path or assets.policy_dir)
    sae_dir = Path(args.sae or assets.sae_dir)
    heldout = Path(args.heldout_root or assets.heldout_root)

    from pai_ros.data.episodes import read_info
    from pai_ros.sae.model import load_sae
    from pai_ros.sae.steering import Steering, SteeringHook

    episodes = list(range(min(args.feature_episodes, int(read_info(heldout)["total_episodes"]))))
    t0 = time.perf_counter()
    effect_dims = None if args.effect_action_dims is None else tuple(args.effect_action_dims)
    with tempfile.TemporaryDirectory() as tmp:
        by_effect, by_activation = rank_features(policy_path, sae_dir, heldout, episodes, Path(tmp) / "features",
                                                 args.candidates, args.effect_frames, effect_dims, args.effect_horizon)
    rank_seconds = time.perf_counter() - t0
    k = min(args.k, len(by_effect))
    top_effect = [int(r["feature"]) for r in by_effect[:k]]
    top_activation = by_activation[:k]
    # Neither ranking's picks: a random draw holding activation-top features tests those, not chance.
    pool = [f for f in by_activation if f not in top_effect and f not in top_activation]
    rng = np.random.default_rng(args.seed)
    draws = [sorted(int(f) for f in rng.choice(pool, size=min(k, len(pool)), replace=False))
             for _ in range(args.draws)] if pool else []

    loaded = load_sae(sae_dir)
    conditions: dict[str, list[int] | None] = {"baseline (no steering)": None,
                                               f"top-{k} by effect ablated": top_effect}
    for i, d in enumerate(draws):
        conditions[f"{k} random ablated (draw {i + 1})"] = d
    conditions[f"top-{k} by activation ablated"] = top_activation

    runner = sim_runner(policy_path, EVAL_MODE)
    hook = SteeringHook(runner.policy.model.encoder)
    sae = loaded.sae.to(runner.device)
    reports: dict[str, ClosedLoopReport] = {}
    try:
        config = sim_config_for(runner, base)
        for name, features in conditions.items():
            steering = (Steering.build(features, "ablate", [], num_features=loaded.cfg.d_sae, max_value=np.inf)
                        if features else None)
            hook.arm(sae, steering)
            try:
                reports[name] = evaluate_closed_loop(runner, args.episodes, args.seed, config, progress=True,
                                                     desc=name)
            finally:
                hook.disarm()
    finally:
        hook.remove()
        runner.close()

    base_r = reports["baseline (no steering)"]
    top_r = reports[f"top-{k} by effect ablated"]
    rand = [reports[n] for n in conditions if "random" in n]
    rand_rates = [r.success_rate for r in rand]
    rand_dist = [r.mean_final_distance for r in rand]
    act_r = reports[f"top-{k} by activation ablated"]

    def rate(r: ClosedLoopReport) -> str:
        return f"{r.success_rate:.0%}"

    print(f"machine: {machine()}; policy {policy_path}; SAE {loaded.sae_id} ({loaded.cfg.d_sae} features); "
          f"episodes 0..{args.episodes - 1} of seed {args.seed}; features ranked on held-out episodes {episodes} "
          f"in {rank_seconds:.0f} s")
    print(f"top-{k} by effect: {top_effect}; by activation: {top_activation}; random draws: {draws}")
    spread = f" [{min(rand_rates):.0%}-{max(rand_rates):.0%}]" if rand_rates else ""
    rows = [
        (f"success rate, top-{k} features by effect ablated, vs no steering", rate(top_r), rate(base_r), "-", "-"),
        (f"success rate, {k} random features ablated (mean of {len(rand)} draws), vs no steering",
         f"{np.mean(rand_rates):.0%}{spread}" if rand_rates else "-", rate(base_r), "-", "-"),
        (f"success rate, top-{k} by activation ablated, vs no steering", rate(act_r), rate(base_r), "-", "-"),
        (f"mean final distance, top-{k} by effect ablated, vs {k} random (mean)",
         f"{top_r.mean_final_distance:.3f}", f"{np.mean(rand_dist):.3f}" if rand_dist else "-",
         f"{top_r.mean_final_distance / np.mean(rand_dist):.2f}x" if rand_dist else "-", "> 1x"),
        ("mean final distance, no steering", f"{base_r.mean_final_distance:.3f}", "-", "-", "-"),
    ]
    print_table(f"Closed-loop steering: ablating SAE features on the demo robot ({args.episodes} episodes)", rows)

    args.results.mkdir(parents=True, exist_ok=True)
    _plot(reports, args.results / "closed_loop_steering.png", k, args.episodes)
    out = {"policy": str(policy_path), "sae_id": loaded.sae_id, "episodes": args.episodes, "seed": args.seed, "k": k,
           "effect_action_dims": args.effect_action_dims, "effect_horizon": args.effect_horizon,
           "top_by_effect": top_effect, "top_by_activation": top_activation, "random_draws": draws,
           "effects": by_effect, "conditions": {n: r.summary() for n, r in reports.items()}}
    (args.results / "closed_loop_steering.json").write_text(json.dumps(out, indent=2))
    print(f"\nwrote {args.results / 'closed_loop_steering.png'} and {args.results / 'closed_loop_steering.json'}")


def _plot(reports: dict[str, ClosedLoopReport], path: Path, k: int, episodes: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(reports)
    colours = ["tab:gray" if n.startswith("baseline") else "tab:red" if "by effect" in n
               else "tab:purple" if "by activation" in n else "tab:blue" for n in names]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    y = np.arange(len(names))
    a.barh(y, [reports[n].success_rate * 100 for n in names], color=colours)
    a.set_yticks(y, names, fontsize=8)
    a.invert_yaxis()
    a.set_xlim(0, 100)
    a.set_xlabel(f"success rate (%), {episodes} episodes")
    b.barh(y, [reports[n].mean_final_distance for n in names], color=colours)
    b.set_yticks(y, [])
    b.invert_yaxis()
    b.set_xlabel("mean final distance to the target (table units)")
    fig.suptitle(f"Demo policy in closed loop with SAE features ablated (k = {k})")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
