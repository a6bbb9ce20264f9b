"""Robot <-> GPU workstation link cost: bytes per policy tick with raw vs JPEG (CompressedImage) cameras.

Two network namespaces joined by a veth pair stand for the two machines (test/helpers/netns.py;
needs root). replay_node (a generated dataset, two cameras at --size, 15 fps, looping) runs on
the "robot", policy_node (a random-init ACT for that size, on the CPU) on the "gpu" host; a probe
on the robot receives the actions (and the heatmaps). Discovery: LOCALHOST range plus
ROS_STATIC_PEERS, Fast DDS held to UDPv4. The veth's kernel counters are read when the window
opens and when --window more actions have come back; bytes are divided by the actions received
(policy ticks) and by the frames the replay published in the window (camera frames).

A last stage plays one episode of raw frames to a probe on the gpu host (no policy) and counts
how many best-effort images arrive, with Fast DDS's default UDP socket buffers (the system's
net.core.rmem_default, 208 kB here) and with a profile asking for 4 MB buffers.

Usage: python bench/bench_two_hosts.py [--size 480x640] [--window 20] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
from common import machine, print_table  # noqa: E402
from helpers.netns import LinkWindow, NetnsProbe, TwoHosts, run_policy_across, two_hosts  # noqa: E402
from ros_processes import Proc  # noqa: E402

CAMERAS = ["front", "wrist"]
STATE = ["x", "y", "gripper"]
# The node's tick (default ACT at 480x640 with input_gradient maps, the replay beside it) takes
# 1-1.5 s on a 2-core CPU. Since 2026-12-05 the node
# re-checks the observation's age when the action is ready, so at 0.5 s it refused every action
# and the run waited for one in vain. This bench counts bytes on the link, not latency.
MAX_AGE_S = 5.0


def build_assets(work: Path, hw: tuple[int, int], frames: int) -> tuple[Path, Path]:
    from pai_ros.demo.dataset import DatasetSpec, write_dataset
    from pai_ros.policy.random_init import save_random_act
    from pai_ros.sim.scene import SceneConfig

    root = work / "ds"
    write_dataset(root, DatasetSpec("pai/two_hosts", num_episodes=1, seed=3),
                  SceneConfig(front_hw=hw, wrist_hw=hw, episode_length=frames), progress=False)
    act = save_random_act(work / "act", {c: hw for c in CAMERAS}, state_dim=3, action_dim=3,
                          chunk_size=10, n_action_steps=10)
    return root, act


# The shipped profile (docs/multi_machine.md): UDP only, 4 MB socket buffers (the kernel doubles them).
UDP_BIG_BUFFERS = Path(__file__).resolve().parents[1] / "config" / "fastdds_udp_large_images.xml"


def frame_delivery(net: TwoHosts, env: dict[str, str], domain: int, root: Path,
                   profile: str | None = None) -> tuple[int, int]:
    """(raw front images received on the gpu host, frames published) for one episode, no policy."""
    probe = NetnsProbe(net.gpu, ["camera/front/image_raw:Image", "camera/wrist/image_raw:Image",
                                 "joint_states:JointState", "recorded_action:JointState"],
                       net.gpu.ros_env(env, domain, profile))
    try:
        replay = Proc(net.robot.command([sys.executable, "-m", "pai_ros.ros.replay_node", "--ros-args",
                                         "-p", f"dataset_root:={root}", "-p", "wait_for_subscribers:=1"]),
                      net.robot.ros_env(env, domain, profile), "replay_node")
        assert replay.wait(timeout=300) == 0, "\n".join(replay.lines[-20:])
        published = int(replay.wait_for_line(lambda s: "replay finished:" in s).split("finished:")[1].split()[0])
        # joint_states is reliable: once all of them are in, every image that will arrive has arrived.
        probe.wait_for_line(lambda _: len(probe.messages("joint_states")) >= published, 60)
        return len(probe.messages("camera/front/image_raw")), published
    finally:
        probe.stop()


def kb(n: float) -> str:
    return f"{n / 1000:.1f} kB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="480x640", help="camera HxW of the dataset and the policy")
    ap.add_argument("--window", type=int, default=20, help="actions counted per measurement window")
    ap.add_argument("--jpeg-quality", type=int, default=90)
    ap.add_argument("--json", type=Path, help="also write the rows as JSON (list of {figure, this, ...})")
    ap.add_argument("--quick", action="store_true", help="128x160 cameras, 5-action windows (a smoke test)")
    args = ap.parse_args()
    if args.quick:
        args.size, args.window = "128x160", 5
    hw = tuple(int(v) for v in args.size.lower().split("x"))
    env = dict(os.environ)
    domain = 1 + (os.getpid() * 13) % 100
    with tempfile.TemporaryDirectory(prefix="pai_two_hosts_") as tmp:
        root, act = build_assets(Path(tmp), hw, frames=30)
        with two_hosts() as net:
            runs: dict[str, LinkWindow] = {}
            for name, compressed, heat in (("raw", False, True), ("jpeg", True, True), ("raw_noheat", False, False)):
                runs[name] = run_policy_across(net, env, domain, dataset_root=str(root), policy_path=str(act),
                                               cameras=CAMERAS, state_names=STATE, compressed=compressed,
                                               window_actions=args.window, jpeg_quality=args.jpeg_quality,
                                               watch_heatmaps=heat, max_observation_age_s=MAX_AGE_S)
            received, published = frame_delivery(net, env, domain, root)
            received_big, published_big = frame_delivery(net, env, domain, root, str(UDP_BIG_BUFFERS))
    raw, jpeg, noheat = runs["raw"], runs["jpeg"], runs["raw_noheat"]
    fps = 15.0
    rows = [
        ("robot->gpu per camera image (JPEG vs raw)", kb(jpeg.up_per_camera_frame), kb(raw.up_per_camera_frame),
         f"{jpeg.up_per_camera_frame / raw.up_per_camera_frame:.3f}x", "< 1x"),
        ("robot->gpu per frame (2 images + joint state; = per tick when ticks keep up)",
         kb(jpeg.up_per_camera_frame * 2), kb(raw.up_per_camera_frame * 2),
         f"{jpeg.up_per_camera_frame / raw.up_per_camera_frame:.3f}x", "< 1x"),
        (f"robot->gpu per policy tick measured here (CPU policy: {raw.frames / raw.actions:.1f} / "
         f"{jpeg.frames / jpeg.actions:.1f} frames per tick raw / JPEG)", kb(jpeg.up_per_tick), kb(raw.up_per_tick),
         f"{jpeg.up_per_tick / raw.up_per_tick:.3f}x", "-"),
        ("gpu->robot per tick (action + 2 heatmaps)", kb(jpeg.down_per_tick), kb(raw.down_per_tick),
         f"{jpeg.down_per_tick / raw.down_per_tick:.3f}x", "-"),
        ("gpu->robot per tick, heatmaps not subscribed on robot vs subscribed", kb(noheat.down_per_tick),
         kb(raw.down_per_tick), f"{noheat.down_per_tick / raw.down_per_tick:.4f}x", "-"),
        (f"robot->gpu at {fps:g} fps, 2 cameras (JPEG vs raw)",
         f"{jpeg.up_per_camera_frame * 2 * fps * 8 / 1e6:.1f} Mbit/s",
         f"{raw.up_per_camera_frame * 2 * fps * 8 / 1e6:.1f} Mbit/s", "-", "-"),
        ("raw images delivered across the link (best effort, no policy): 4 MB socket buffers vs default",
         f"{received_big}/{published_big}", f"{received}/{published}",
         f"{received_big / published_big:.2f} vs {received / published:.2f}", "1.00"),
    ]
    print_table(f"Two hosts over a veth (UDP): 2 x {hw[0]}x{hw[1]} rgb8 cameras, JPEG q{args.jpeg_quality}, "
                f"policy ticks counted by actions received ({args.window} per window); {machine()}", rows)
    for name, r in runs.items():
        print(f"{name}: {r.actions} actions, {r.frames} frames, {r.heatmaps} heatmaps, up {r.up.tx_bytes} B, "
              f"down {r.up.rx_bytes} B")
    if args.json:
        keys = ("figure", "this", "reference", "ratio", "target")
        args.json.write_text(json.dumps([dict(zip(keys, r)) for r in rows], indent=2) + "\n")


if __name__ == "__main__":
    main()
