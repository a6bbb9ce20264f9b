"""A separate process that publishes known test traffic for the recorder (tests and bench).

    python ros_talker.py --count N [--delayed features] [--image 48x64] [--rate 50] [--ros-args ...]
    python ros_talker.py --seconds S --rate 30 --image 480x640 --camera cam/front ... (benchmark)

Topics (relative names, so ``--ros-args -r __ns:=/ns`` moves them all): ``joint_states`` and
``action`` (JointState, reliable), ``features`` (FeatureActivations, reliable), ``/diagnostics``
(DiagnosticArray, reliable), each ``--camera`` and ``--heatmap`` topic (rgb8 Image with the
sensor-data QoS: best effort). Message i of every topic carries stamp sec = 1000 + i so the
test can check exactly which messages arrived.

Handshake on stdin/stdout so that nothing is published before the recorder is subscribed:
the talker prints ``READY <topics>`` and waits for a ``GO`` line; with ``--delayed TOPIC`` that
topic's publisher is created only after the others have finished, then ``READY <topic>`` and
``GO`` again. Reliable publishers are flushed with ``wait_for_all_acked`` before exit. The
last stdout line is JSON: messages published per resolved topic.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.duration import Duration
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState

from pai_ros.msg import FeatureActivations

RELIABLE = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)


def stamp_of(i: int) -> tuple[int, int]:
    return 1000 + i, 1000 * i


def make(kind: str, i: int, image_hw: tuple[int, int], image_cache: dict) -> object:
    sec, nsec = stamp_of(i)
    if kind in ("joint_states", "action"):
        msg = JointState()
        msg.name = ["x", "y", "gripper"]
        msg.position = [float(i), i + 0.5, -1.0 * i]
        if kind == "joint_states":
            msg.velocity = [0.25, 0.5, 0.75]
            msg.effort = []
    elif kind == "features":
        msg = FeatureActivations()
        msg.sae_id = "sae-test"
        msg.num_features = 4096
        msg.feature_indices = [i % 4096, 17]
        msg.activations = [1.5, 0.25]
        msg.token_counts = [3, 1]
        msg.num_tokens = 40
        msg.mean_l0 = 2.0
        msg.reconstruction_error = 0.125
        msg.ood_threshold = math.nan
        msg.is_ood = False
    elif kind == "diagnostics":
        msg = DiagnosticArray()
        status = DiagnosticStatus(level=DiagnosticStatus.OK, name=f"pai/test{i}", message="ok", hardware_id="talker")
        status.values = [KeyValue(key="index", value=str(i))]
        msg.status = [status]
    else:  # image: prebuilt per size (filling a large Python array each time would dominate)
        msg = image_cache.get(kind)
        if msg is None:
            h, w = image_hw
            msg = Image(height=h, width=w, encoding="rgb8", step=w * 3)
            msg.data = np.full(h * w * 3, 7, dtype=np.uint8).tobytes()
            image_cache[kind] = msg
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nsec
    return msg


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=10, help="messages per topic (ignored with --seconds)")
    ap.add_argument("--seconds", type=float, default=0.0, help="publish for this long instead of --count")
    ap.add_argument("--rate", type=float, default=50.0, help="publishing rate, Hz")
    ap.add_argument("--image", default="48x64", help="HxW of the camera and heatmap images")
    ap.add_argument("--camera", action="append", default=[], help="camera topic (repeatable)")
    ap.add_argument("--heatmap", action="append", default=[], help="heatmap topic (repeatable)")
    ap.add_argument("--kinds", default="joint_states,action,features,diagnostics",
                    help="which of joint_states, action, features, diagnostics to publish")
    ap.add_argument("--delayed", default="", help="one of the kinds/topics, started after the others")
    ap.add_argument("--no-handshake", action="store_true", help="do not wait for GO lines on stdin")
    ap.add_argument("--subscribers", type=int, default=1, help="matched subscriptions to wait for per topic")
    ap.add_argument("--image-reliable", action="store_true", help="images reliable instead of the sensor-data QoS")
    args, ros_args = ap.parse_known_args()
    h, w = (int(v) for v in args.image.split("x"))

    rclpy.init(args=[sys.argv[0], *ros_args])
    node = rclpy.create_node("pai_test_talker")
    topics = {"joint_states": "joint_states", "action": "action", "features": "features",
              "diagnostics": "/diagnostics"}
    types = {"joint_states": JointState, "action": JointState, "features": FeatureActivations,
             "diagnostics": DiagnosticArray}
    kinds = [k for k in args.kinds.split(",") if k]
    plan = [(k, topics[k], types[k], RELIABLE) for k in kinds]
    image_qos = QoSProfile(depth=30, reliability=ReliabilityPolicy.RELIABLE) if args.image_reliable else qos_profile_sensor_data
    plan += [(t, t, Image, image_qos) for t in args.camera + args.heatmap]
    now = [p for p in plan if p[0] != args.delayed and p[1] != args.delayed]
    later = [p for p in plan if p not in now]
    published: dict[str, int] = {}
    cache: dict = {}
    try:
        for group in (now, later):
            if not group:
                continue
            pubs = [(kind, node.create_publisher(cls, topic, qos)) for kind, topic, cls, qos in group]
            print("READY " + " ".join(p.topic_name for _, p in pubs), flush=True)
            if not args.no_handshake:
                line = sys.stdin.readline()
                if line.strip() != "GO":
                    return 3
            # Writer-side match as well, so that no message goes to a reader we do not know yet.
            deadline = time.monotonic() + 60
            while any(p.get_subscription_count() < args.subscribers for _, p in pubs) and time.monotonic() < deadline:
                rclpy.spin_once(node, timeout_sec=0.02)
            period = 1.0 / args.rate
            start = time.monotonic()
            i = 0
            while (time.monotonic() - start < args.seconds) if args.seconds else (i < args.count):
                for kind, pub in pubs:
                    pub.publish(make(kind, i, (h, w), cache))
                    published[pub.topic_name] = published.get(pub.topic_name, 0) + 1
                i += 1
                # Fixed-rate schedule: sleep until the next tick (no drift, no catch-up bursts).
                delay = start + i * period - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            for kind, pub in pubs:
                if kind in topics or args.image_reliable:  # reliable: every sample acknowledged before we go
                    pub.wait_for_all_acked(Duration(seconds=30))
        print(json.dumps(published), flush=True)
        return 0
    finally:
        node.destroy_node()
        rclpy.shutdown()


if __name__ == "__main__":
    sys.exit(main())
