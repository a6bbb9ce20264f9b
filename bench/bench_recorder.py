"""recorder_node under the policy node's load: are all messages recorded? (target: 0 lost)

Two processes over real Fast DDS on this machine (localhost only, a domain of this run's own):
``recorder_node`` (two camera topics, heatmaps on) and test/helpers/ros_talker.py publishing,
at ``--rate`` Hz for ``--seconds``, two 480x640 rgb8 camera images (sensor-data QoS: best
effort), two 480x640 heatmap images (best effort) and a JointState ``action`` (reliable). The
talker starts publishing only once the recorder has matched every topic; the recorder is
stopped with SIGINT after the talker exits. Per topic: messages published (talker's count),
received (recorder's callbacks) and written (read back from the bag with rosbags).

Usage: python bench/bench_recorder.py [--seconds 60] [--rate 30] [--compression none|zstd]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
from common import machine, print_table  # noqa: E402
from ros_processes import Proc  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TALKER = REPO / "test" / "helpers" / "ros_talker.py"
CAMERAS = ["camera/front/image_raw", "camera/wrist/image_raw"]
HEATMAPS = ["attention/front/heatmap", "attention/wrist/heatmap"]

# The shipped profile (config/fastdds_large_images.xml): one source for users and this benchmark.
SHM_PROFILE_FILE = Path(__file__).resolve().parents[1] / "config" / "fastdds_large_images.xml"

# The reference: a bare rclpy subscriber (raw bytes, counting only) on the same topics with the
# QoS the recorder picks, in its own process. What it misses, DDS lost before any recorder saw it.
PROBE = r"""
import json, signal, sys, threading
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image, JointState
rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
stop = threading.Event()
signal.signal(signal.SIGINT, lambda *_: stop.set())
node = rclpy.create_node("bench_probe")
counts, subs = {}, []
for topic, cls, reliable in json.loads(sys.argv[1]):
    counts[topic] = 0
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
    def cb(raw, topic=topic):
        counts[topic] += 1
    subs.append((topic, node.create_subscription({"Image": Image, "JointState": JointState}[cls], topic, cb, qos, raw=True)))
announced = set()
while not stop.is_set():
    rclpy.spin_once(node, timeout_sec=0.1)
    for topic, sub in subs:
        if topic not in announced and sub.get_publisher_count() > 0:
            announced.add(topic)
            print(f"probe matched {topic}", flush=True)
idle = 0
while idle < 3:  # drain: until nothing arrives for three rounds
    before = sum(counts.values())
    rclpy.spin_once(node, timeout_sec=0.05)
    idle = idle + 1 if sum(counts.values()) == before else 0
print(json.dumps(counts), flush=True)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--compression", default="none", choices=("none", "zstd"))
    ap.add_argument("--image-qos", default="best_effort", choices=("best_effort", "reliable"),
                    help="QoS of the image publishers (cameras use best effort; reliable shows recorder capacity)")
    ap.add_argument("--transport", default="default", choices=("default", "large_data", "shm32mb"),
                    help="Fast DDS transports for all processes: default (SHM with 512 KB segments + UDP), "
                         "large_data (FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA), shm32mb (an XML profile adding a "
                         "shared-memory transport with 32 MB segments, so that a 921 KB frame fits)")
    args = ap.parse_args()

    env = dict(os.environ)
    env.update({"ROS_DOMAIN_ID": str(1 + (os.getpid() * 13) % 100),  # a domain of this run's own
                "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_LOCALHOST_ONLY": "1", "PYTHONUNBUFFERED": "1"})
    if args.transport == "large_data":
        env["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    reliable_images = args.image_qos == "reliable"
    with tempfile.TemporaryDirectory() as tmp:
        if args.transport == "shm32mb":
            env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(SHM_PROFILE_FILE)
        bag = Path(tmp) / "bag"
        rec = Proc([sys.executable, "-m", "pai_ros.ros.recorder_node", "--ros-args", "-p", f"output:={bag}",
                    "-p", f"camera_topics:=[{','.join(CAMERAS)}]", "-p", "record_heatmaps:=true",
                    "-p", f"compression:={args.compression}", "-p", "discovery_period_s:=0.2"], env)
        talker = None
        spec = [["/action", "JointState", True]] + [[f"/{t}", "Image", reliable_images] for t in CAMERAS + HEATMAPS]
        probe = Proc([sys.executable, "-c", PROBE, json.dumps(spec)], env)
        try:
            rec.wait_for_line(lambda line: "recording to" in line)
            talker_args = [sys.executable, str(TALKER), "--seconds", str(args.seconds), "--rate", str(args.rate),
                           "--image", "480x640", "--kinds", "action", "--subscribers", "2"] + (["--image-reliable"] if reliable_images else [])
            for t in CAMERAS:
                talker_args += ["--camera", t]
            for t in HEATMAPS:
                talker_args += ["--heatmap", t]
            talker = Proc(talker_args, env, stdin=True)
            talker.wait_for_line(lambda line: "READY" in line)
            for topic in ["/action", *(f"/{t}" for t in CAMERAS + HEATMAPS)]:
                rec.wait_for_line(lambda line: f"matched 1 publisher(s) on {topic}" in line)
                probe.wait_for_line(lambda line: f"probe matched {topic}" in line)
            cpu0, t0 = rec.cpu_seconds(), time.monotonic()
            talker.popen.stdin.write("GO\n")
            talker.popen.stdin.flush()
            if talker.popen.wait(timeout=args.seconds + 120) != 0:
                raise SystemExit("talker failed:\n" + "\n".join(talker.lines[-20:]))
            talker.wait(timeout=10)
            cpu1, t1 = rec.cpu_seconds(), time.monotonic()
            published = json.loads(talker.lines[-1])
            rec.popen.send_signal(signal.SIGINT)
            probe.popen.send_signal(signal.SIGINT)
            rc = rec.popen.wait(timeout=120)
            rec.wait(timeout=10)
            probe.popen.wait(timeout=60)
            probe.wait(timeout=10)
            bare = json.loads(probe.lines[-1])
        finally:
            for p in (rec, talker, probe):
                if p is not None and p.popen.poll() is None:
                    p.popen.kill()
        if rc != 0:
            raise SystemExit(f"recorder exited with {rc}:\n" + "\n".join(rec.lines[-30:]))
        received = {}
        for line in rec.lines:
            m = re.search(r"summary (\S+) \[[^]]+\]: received (\d+), written (\d+)", line)
            if m:
                received[m.group(1)] = int(m.group(2))
        from rosbags.rosbag2 import Reader

        with Reader(bag) as reader:
            written = {c.topic: c.msgcount for c in reader.connections}
            files = len(reader.storage.files) if hasattr(reader.storage, "files") else 1
        size_mb = sum(f.stat().st_size for f in bag.glob("*.mcap")) / 1e6

    rows = []
    for topic in sorted(published):
        p, r, w, b = published[topic], received.get(topic, 0), written.get(topic, 0), bare.get(topic, 0)
        rows.append((f"{topic}: recorder written (received) vs bare subscriber [published]", f"{w} ({r})",
                     f"{b} [{p}]", f"{w / b:.4f}" if b else "-", "written = received = published"))
    total_p, total_w, total_b = sum(published.values()), sum(written.values()), sum(bare.values())
    rows.append(("all topics: lost vs published (recorder; bare subscriber)", f"{total_p - total_w}",
                 f"{total_p - total_b}", "-", "0"))
    wall = t1 - t0
    rows.append(("recorder CPU while publishing (1.0 = one core)", f"{(cpu1 - cpu0) / wall:.2f}", "-", "-", "-"))
    rows.append(("achieved publish rate per topic", f"{total_p / len(published) / wall:.1f} Hz", f"{args.rate:.0f} Hz",
                 "-", "-"))
    print_table(f"recorder_node: {args.seconds:.0f} s at {args.rate:.0f} Hz, 2 cameras + 2 heatmaps 480x640 rgb8 "
                f"({args.image_qos.replace('_', ' ')}) + action (reliable), Fast DDS transport {args.transport}, "
                f"compression {args.compression}; bag {size_mb:.0f} MB in "
                f"{files} file(s); {machine()}", rows)


if __name__ == "__main__":
    main()
