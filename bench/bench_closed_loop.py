"""Closed loop: how often the demo policy, driving the simulated demo robot, reaches and closes on the target.

The demo policy acts on what its own actions led to (``pai_ros.sim``: the demo scene, the dataset
expert's motion limits) over a fixed episode set (episodes 0..N-1 of a seed: the same layouts and
noise for every policy). References measured in the same run on the same episodes: the dataset's
scripted expert (what the policy imitates; it knows the target) and holding still (no policy).
The policy runs with temporal ensembling (``ensemble``, the model every step; what the sim
launch file and ``pai demo --closed-loop`` use); ``--modes ensemble chunk replan`` adds other
runner modes: ``chunk`` executes exactly LeRobot's action queue (what ``policy_node``'s ``auto``
picks for the demo policy: 20 actions open loop), ``replan`` the first action of a fresh chunk.

Writes bench/results/closed_loop.png (final distance per episode, by outcome) and
bench/results/closed_loop.json. Needs the demo assets (`pai demo-assets`) unless --policy-path.

Usage: python bench/bench_closed_loop.py [--episodes 50] [--seed 0] [--modes ensemble chunk] [--policy-path P]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, print_table  # noqa: E402

from pai_ros.demo.report import plot_closed_loop  # noqa: E402
from pai_ros.sim.evaluate import ClosedLoopReport, evaluate_closed_loop  # noqa: E402
from pai_ros.sim.policy import EVAL_MODE, sim_config_for, sim_runner  # noqa: E402
from pai_ros.sim.robot import SimConfig, SimRobot, expert_command  # noqa: E402

RESULTS = Path(__file__).parent / "results"
TARGET = 0.8


def _rate(r: ClosedLoopReport) -> str:
    return f"{r.success_rate:.0%} ({r.counts().get('success', 0)}/{len(r.episodes)})"


def _outcomes(r: ClosedLoopReport) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(r.counts().items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", nargs="+", default=[EVAL_MODE], help="runner modes to evaluate (first: the figure)")
    ap.add_argument("--policy-path", default=None, help="checkpoint (default: the demo policy of `pai demo-assets`)")
    ap.add_argument("--max-steps", type=int, default=SimConfig().max_steps)
    ap.add_argument("--results", type=Path, default=RESULTS, help="where the PNG and JSON go")
    args = ap.parse_args()

    base = SimConfig(max_steps=args.max_steps)
    if args.policy_path is None:
        from pai_ros.demo.assets import ensure_demo_assets

        assets = ensure_demo_assets()
        policy_path = assets.policy_dir
        base = SimConfig(scene=assets.settings.scene, max_steps=args.max_steps)
    else:
        policy_path = Path(args.policy_path)

    reports: dict[str, ClosedLoopReport] = {}
    seconds: dict[str, float] = {}
    config = base
    for mode in args.modes:
        runner = sim_runner(policy_path, mode)
        try:
            config = sim_config_for(runner, base)
            t = time.perf_counter()
            reports[mode] = evaluate_closed_loop(runner, args.episodes, args.seed, config, progress=True,
                                                 desc=f"closed loop ({mode})")
            seconds[mode] = time.perf_counter() - t
        finally:
            runner.close()
    robot = SimRobot(config)
    expert = evaluate_closed_loop(lambda obs: expert_command(robot), args.episodes, args.seed, robot=robot)
    hold = evaluate_closed_loop(lambda obs: robot.state, args.episodes, args.seed, robot=robot)

    main_mode = args.modes[0]
    policy = reports[main_mode]
    print(f"machine: {machine()}; policy {policy_path}; episodes 0..{args.episodes - 1} of seed {args.seed}, "
          f"max {config.max_steps} steps, success within {config.success_radius} of the target")
    rows = [
        (f"closed-loop success rate, demo policy ({main_mode}), vs the scripted expert",
         _rate(policy), _rate(expert), "-", f">= {TARGET:.0%}"),
        ("mean final distance to the target (table units), vs the expert",
         f"{policy.mean_final_distance:.3f}", f"{expert.mean_final_distance:.3f}",
         f"{policy.mean_final_distance / max(expert.mean_final_distance, 1e-9):.1f}x", "-"),
        ("mean final distance, holding still (no policy) as the reference", f"{policy.mean_final_distance:.3f}",
         f"{hold.mean_final_distance:.3f}", f"{policy.mean_final_distance / hold.mean_final_distance:.2f}x", "< 1x"),
        ("outcomes (policy / expert)", _outcomes(policy), _outcomes(expert), "-", "-"),
    ]
    for mode in args.modes[1:]:
        r = reports[mode]
        rows.append((f"success rate, runner mode {mode}, vs {main_mode}", _rate(r), _rate(policy), "-", "-"))
    print_table(f"Closed loop on the simulated demo robot ({args.episodes} episodes, seed {args.seed})", rows)

    args.results.mkdir(parents=True, exist_ok=True)
    plot_closed_loop(policy.as_dict(), args.results / "closed_loop.png",
                     title=f"Demo policy in closed loop ({main_mode})")
    out = {"policy": str(policy_path), "episodes": args.episodes, "seed": args.seed,
           "modes": {m: {**r.as_dict(), "seconds": seconds[m]} for m, r in reports.items()},
           "expert": expert.summary(), "hold_position": hold.summary()}
    (args.results / "closed_loop.json").write_text(json.dumps(out, indent=2))
    print(f"\nwrote {args.results / 'closed_loop.png'} and {args.results / 'closed_loop.json'}")


if __name__ == "__main__":
    main()
