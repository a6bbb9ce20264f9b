"""ROS overhead of the policy node: its whole tick vs the core runner's step, in one run.

Separate processes over real DDS on this machine: replay_node (the demo's held-out episodes,
looping) -> policy_node (the demo policy) -> a probe on /diagnostics. The policy node reports
both figures in /diagnostics: ``latency_*`` is the whole tick in the node (message conversion,
policy, heatmaps for both cameras, publishing), ``policy_*`` the core runner alone (validation,
preprocess, forward with capture, postprocess). Their ratio is the ROS overhead.

With the demo SAE built (`pai demo-assets` builds it) the node runs a second time with ``sae_path``: the
same ratio then includes encoding every tick and publishing ``features``.

Needs the demo assets (`pai demo-assets`). Usage: python bench/bench_policy_node.py [--seconds 40]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
from common import machine, print_table  # noqa: E402
from ros_processes import Probe, Proc  # noqa: E402

from pai_ros.demo.assets import ensure_demo_assets  # noqa: E402


def measure(assets: object, seconds: float, rate: float, sae: Path | None) -> dict[str, str]:
    """One node run; the last /diagnostics values once actions have flowed for ``seconds``."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(1 + (os.getpid() * 17) % 100), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOCALHOST_ONLY="1", PYTHONUNBUFFERED="1")
    probe = Probe(["/diagnostics:DiagnosticArray"], env)
    policy = Proc([sys.executable, "-m", "pai_ros.ros.policy_node", "--ros-args", "-p", f"policy_path:={assets.policy_dir}",
                   "-p", f"control_rate_hz:={rate}", "-p", "state_joint_names:=['x', 'y', 'gripper']",
                   "-p", "max_observation_age_s:=0.5"] + (["-p", f"sae_path:={sae}"] if sae else []), env, "policy_node")
    replay = None
    try:
        policy.wait_for_line(lambda s: "ready:" in s, 120)
        replay = Proc([sys.executable, "-m", "pai_ros.ros.replay_node", "--ros-args", "-p",
                       f"dataset_root:={assets.heldout_root}", "-p", "loop:=true"], env, "replay_node")
        probe.wait_for(lambda m: int(m["status"][0]["values"].get("actions_published", "0")) > 0, 120)
        time.sleep(seconds)  # the measurement window, once actions flow
        # The replay node reports on /diagnostics too: the policy node's last status.
        ours = [m for m in probe.messages("/diagnostics") if m["status"][0]["name"].startswith("policy_node")]
        return ours[-1]["status"][0]["values"]
    finally:
        for p in (replay, policy, probe):
            if p is not None:
                p.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=40.0, help="measurement window per configuration")
    ap.add_argument("--rate", type=float, default=15.0, help="control rate of the policy node")
    args = ap.parse_args()
    assets = ensure_demo_assets()
    runs = {"without SAE": measure(assets, args.seconds, args.rate, None)}
    if assets.has_sae():
        runs["with the demo SAE"] = measure(assets, args.seconds, args.rate, assets.sae_dir)
    rows = []
    for label, v in runs.items():
        node_mean, node_p99 = float(v["latency_mean_ms"]), float(v["latency_p99_ms"])
        core_mean, core_p99 = float(v["policy_mean_ms"]), float(v["policy_p99_ms"])
        extra = f", SAE encode {v['sae_encode_mean_ms']} ms" if "sae_encode_mean_ms" in v else ""
        rows += [
            (f"policy-node tick vs core runner step, mean, {label}", f"{node_mean:.1f} ms", f"{core_mean:.1f} ms",
             f"{node_mean / core_mean:.3f}x", "<= 1.10x"),
            (f"same, p99, {label}", f"{node_p99:.1f} ms", f"{core_p99:.1f} ms", f"{node_p99 / core_p99:.3f}x", "-"),
            (f"actions / skipped / rejected ticks, {label}{extra}",
             f"{v['actions_published']} / {v['skipped_ticks']} / {v['rejected_ticks']}", "-", "-", "-"),
        ]
        print(json.dumps({label: v}))
    print_table(f"Policy node ROS overhead: demo policy, 2 x 128x160 cameras at {args.rate} Hz, replay in another "
                f"process, {args.seconds:.0f} s per configuration; {machine()}", rows)


if __name__ == "__main__":
    main()
