"""A stand-in robot for fault tests: two cameras and joint states, with scripted faults.

    python fake_robot.py --rate 20 [--fault none|cameras_pause|nan_state|bad_encoding|missing_joint]
                         [--fault-start 2.0] [--fault-end 5.0] [--seconds 30]

Publishes camera/front/image_raw and camera/wrist/image_raw (64x80 rgb8, sensor QoS, stamped
now, frame_id <name>_camera) and joint_states (x, y, gripper). During [fault-start, fault-end)
the chosen fault is active; before and after, everything is healthy. Prints PHASE lines.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--fault", default="none")
    ap.add_argument("--fault-start", type=float, default=1e9)
    ap.add_argument("--fault-end", type=float, default=1e9)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--width", type=int, default=80)
    a = ap.parse_args()
    rclpy.init()
    node = rclpy.create_node("fake_robot")
    cams = {c: node.create_publisher(Image, f"camera/{c}/image_raw", qos_profile_sensor_data) for c in ("front", "wrist")}
    joints = node.create_publisher(JointState, "joint_states", qos_profile_sensor_data)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (a.height, a.width, 3), dtype=np.uint8)
    start = time.monotonic()
    phase = None
    while time.monotonic() - start < a.seconds:
        t = time.monotonic() - start
        faulty = a.fault_start <= t < a.fault_end
        now_phase = "fault" if faulty else ("after" if t >= a.fault_end else "before")
        if now_phase != phase:
            phase = now_phase
            print(f"PHASE {phase} {time.time_ns()}", flush=True)
        stamp = node.get_clock().now().to_msg()
        if not (faulty and a.fault == "cameras_pause"):
            for name, pub in cams.items():
                msg = Image(height=a.height, width=a.width, encoding="rgb8", step=a.width * 3, data=frame.tobytes())
                if faulty and a.fault == "bad_encoding":
                    msg.encoding = "16UC1"
                msg.header.stamp, msg.header.frame_id = stamp, f"{name}_camera"
                pub.publish(msg)
        js = JointState(name=["x", "y", "gripper"], position=[0.5 + 0.1 * math.sin(t), 0.5, 0.0])
        if faulty and a.fault == "nan_state":
            js.position = [float("nan"), 0.5, 0.0]
        if faulty and a.fault == "missing_joint":
            js.name, js.position = ["x", "y"], [0.5, 0.5]
        js.header.stamp = stamp
        joints.publish(js)
        rclpy.spin_once(node, timeout_sec=0.0)
        time.sleep(max(0.0, 1.0 / a.rate - (time.monotonic() - start - t)))
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
