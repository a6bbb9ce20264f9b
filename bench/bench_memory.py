"""Peak memory: the policy node (ROS, message buffers, heatmaps, SAE) vs the same work without ROS.

Default LeRobot ACT (random weights, two 480x640 cameras, 3-dof state as the scripted robot
publishes it), CPU. Each configuration runs in a fresh process and reports its peak resident
set (VmHWM from /proc) after the same number of ticks:

* core: ``PolicyRunner.step`` on random observations (+ ``encode_frame`` with the SAE): the
  forward pass alone, no heatmap;
* tick: ``LiveTick.step`` with the node's defaults (its heatmap method, overlays, the action
  plan; + the SAE's features), driven in process with a fake clock: everything the node does
  but ROS. Node vs tick is what the ROS adapter costs;
* node: ``policy_node`` fed by test/helpers/fake_robot.py at camera resolution, heatmaps on
  (+ ``sae_path`` with a random TopK SAE 512 -> 4096, k 32, and the features topic).

Linux only (reads /proc). Usage: python bench/bench_memory.py [--ticks 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
from common import machine, print_table  # noqa: E402
from ros_processes import HELPERS, Probe, Proc  # noqa: E402
from setups import default_act_checkpoint, random_topk_sae  # noqa: E402

from pai_ros.sae.model import save_sae  # noqa: E402

CORE = r"""
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from setups import random_observation
from pai_ros.policy.capture import CaptureConfig
from pai_ros.policy.loading import load_act_policy
from pai_ros.policy.runner import PolicyRunner
ckpt, sae_dir, ticks = sys.argv[2], sys.argv[3], int(sys.argv[4])
runner = PolicyRunner(load_act_policy(ckpt, "cpu"), "replan", CaptureConfig(encoder_output=bool(sae_dir)))
sae = None
if sae_dir:
    from pai_ros.sae.frame import encode_frame
    from pai_ros.sae.model import load_sae
    sae = load_sae(sae_dir).sae
for i in range(ticks):
    res = runner.step(random_observation({"front": (480, 640), "wrist": (480, 640)}, seed=i, dof=3))
    if sae is not None:
        encode_frame(sae, res.capture.encoder_output[0], 64)
print(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
"""


TICK = r"""
import sys
sys.path.insert(0, sys.argv[1])
from setups import random_observation
from pai_ros.live import CameraFrame, JointReading, LiveConfig, LiveTick, TickInputs, TickOutput
ckpt, sae_dir, ticks = sys.argv[2], sys.argv[3], int(sys.argv[4])
names = ["x", "y", "gripper"]
extra = {"sae_path": sae_dir} if sae_dir else {}
live, _ = LiveTick.create(LiveConfig.defaults(ckpt, state_joint_names=names, max_observation_age_s=2.0,
                                              control_rate_hz=2.0, **extra))
S = 1_000_000_000
for i in range(ticks):
    obs = random_observation({"front": (480, 640), "wrist": (480, 640)}, seed=i, dof=3)
    now = (1000 + i) * S
    cams = {c: CameraFrame(now, now, (lambda im=im: im), c) for c, im in obs.images.items()}
    out = live.step(TickInputs(cameras=cams, joint_states=JointReading(now, now, names, [float(v) for v in obs.state])),
                    now + S // 100)
    assert isinstance(out, TickOutput), out
    assert not sae_dir or out.features is not None
print(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
"""


def peak_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM")).split()[1])


def in_process_peak(script: str, ckpt: Path, sae: Path | None, ticks: int) -> int:
    out = subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent), str(ckpt), str(sae or ""),
                          str(ticks)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"in-process reference failed:\n{out.stderr[-3000:]}")
    return int(out.stdout.strip().splitlines()[-1])


def node_peak(ckpt: Path, sae: Path | None, ticks: int) -> int:
    env = dict(os.environ, ROS_DOMAIN_ID=str(1 + (os.getpid() * 13) % 100), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOCALHOST_ONLY="1", PYTHONUNBUFFERED="1")
    topics = ["action:JointState"] + (["features:FeatureActivations"] if sae else [])
    probe = Probe(topics, env)
    args = [sys.executable, "-m", "pai_ros.ros.policy_node", "--ros-args", "-p", f"policy_path:={ckpt}",
            "-p", "control_rate_hz:=2.0", "-p", "state_joint_names:=['x', 'y', 'gripper']",
            "-p", "max_observation_age_s:=2.0"] + (["-p", f"sae_path:={sae}"] if sae else [])
    node = Proc(args, env, "policy_node")
    robot = None
    try:
        node.wait_for_line(lambda s: "ready:" in s, 180)
        robot = Proc([sys.executable, str(HELPERS / "fake_robot.py"), "--height", "480", "--width", "640",
                      "--rate", "10", "--seconds", "600"], env, "robot")
        for _ in range(600):
            if len(probe.messages("action")) >= ticks:
                break
            probe.wait_for_line(lambda s: s.startswith("{"), 60)
        return peak_kb(node.popen.pid)
    finally:
        for p in (robot, node, probe):
            if p is not None:
                p.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=10, help="actions (node) or steps (core) before reading the peak")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = default_act_checkpoint(Path(tmp) / "act", dof=3)
        sae = Path(tmp) / "sae"
        save_sae(random_topk_sae(512, 4096, 32), sae)
        figures = {}
        for name, sae_dir in (("plain", None), ("sae", sae)):
            figures[name] = {"node": node_peak(ckpt, sae_dir, args.ticks),
                             "tick": in_process_peak(TICK, ckpt, sae_dir, args.ticks),
                             "core": in_process_peak(CORE, ckpt, sae_dir, args.ticks)}
    mb = lambda kb: f"{kb / 1024:.0f} MB"  # noqa: E731

    def row(label: str, name: str, reference: str) -> tuple[str, str, str, str, str]:
        f = figures[name]
        return label, mb(f["node"]), mb(f[reference]), f"{f['node'] / f[reference]:.2f}x", "-"

    rows = [row("policy_node peak RSS (heatmaps on) vs core runner alone (forward pass, no heatmap)", "plain", "core"),
            row("same with SAE (features topic) vs core runner + SAE encode", "sae", "core"),
            row("policy_node peak RSS vs LiveTick in process, same defaults (what ROS adds)", "plain", "tick"),
            row("same with SAE (features topic) vs LiveTick + SAE in process", "sae", "tick")]
    print_table(f"Peak memory (VmHWM): default ACT, 2 x 480x640, CPU, {args.ticks} ticks; {machine()}", rows)


if __name__ == "__main__":
    main()
