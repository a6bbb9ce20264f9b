"""A stand-in robot for fault tests: two cameras and joint states, with scripted faults.

    python fake_robot.py --rate 20 [--fault NAME --fault-start 2.0 --fault-end 5.0]
                         [--schedule NAME:START:END,NAME:START:END,...] [--seconds 30]
                         [--env-state N [--env-type float32_multi_array|joint_state]] [--split-joints]

Publishes camera/front/image_raw and camera/wrist/image_raw (64x80 rgb8, sensor QoS, stamped
now, frame_id <name>_camera) and joint_states (x, y, gripper; with --split-joints one message per
joint, the gripper from a second publisher, as separate arm and gripper drivers); with --env-state N also
environment_state (N values: Float32MultiArray, or a stamped JointState named env_0..). During each fault's
[start, end) (seconds since start) that fault is active; otherwise everything is healthy.
Prints ``PHASE <name> <wall ns>`` at every change (``before``/``after`` for a single
``--fault``, ``ok`` between scheduled faults) and ``PHASE done <ns>`` at the end.

Faults: cameras_pause, joints_pause, nan_state, inf_state, missing_joint, bad_encoding,
wrong_size (front camera at half size), truncated_image (front data cut short),
undecodable_name (the joint name "gripper" arrives as the invalid UTF-8 bytes b"gr\\xffpper", sent as
raw CDR, as a peer with a broken string encoding would), stamps_back
(every stamp 5 s in the past: a clock jump back), stamps_future (5 s ahead), burst (front
camera at 10x the rate), env_pause (environment_state stops).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.duration import Duration
from rclpy.qos import qos_profile_sensor_data
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32MultiArray

BURST = 10


def parse_schedule(a: argparse.Namespace) -> list[tuple[str, float, float]]:
    if a.schedule:
        out = []
        for entry in a.schedule.split(","):
            name, start, end = entry.split(":")
            out.append((name, float(start), float(end)))
        return out
    return [(a.fault, a.fault_start, a.fault_end)] if a.fault != "none" else []


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--fault", default="none")
    ap.add_argument("--fault-start", type=float, default=1e9)
    ap.add_argument("--fault-end", type=float, default=1e9)
    ap.add_argument("--schedule", default="")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--width", type=int, default=80)
    ap.add_argument("--env-state", type=int, default=0)
    ap.add_argument("--env-type", default="float32_multi_array", choices=("float32_multi_array", "joint_state"))
    ap.add_argument("--split-joints", action="store_true",
                    help="publish each joint in its own JointState, the gripper from a second publisher")
    a = ap.parse_args()
    schedule = parse_schedule(a)
    single = not a.schedule
    rclpy.init()
    node = rclpy.create_node("fake_robot")
    cams = {c: node.create_publisher(Image, f"camera/{c}/image_raw", qos_profile_sensor_data) for c in ("front", "wrist")}
    joints = node.create_publisher(JointState, "joint_states", qos_profile_sensor_data)
    gripper_joints = node.create_publisher(JointState, "joint_states", qos_profile_sensor_data)
    env_named = a.env_type == "joint_state"
    env = (node.create_publisher(JointState if env_named else Float32MultiArray, "environment_state",
                                 qos_profile_sensor_data) if a.env_state else None)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (a.height, a.width, 3), dtype=np.uint8)
    small = np.ascontiguousarray(frame[::2, ::2])
    start = time.monotonic()
    phase = None
    period = 1.0 / (a.rate * BURST)  # the loop runs at burst rate; healthy topics go out every BURST-th turn
    turn = 0
    while time.monotonic() - start < a.seconds:
        t = time.monotonic() - start
        fault = next((name for name, s, e in schedule if s <= t < e), None)
        if fault is not None:
            now_phase = "fault"
        elif single and schedule and t >= schedule[0][2]:
            now_phase = "after"
        else:
            now_phase = "before" if single else "ok"
        label = f"{now_phase} {fault}" if not single and fault else now_phase
        if label != phase:
            phase = label
            print(f"PHASE {now_phase} {time.time_ns()} {fault or ''}".rstrip(), flush=True)
        now = node.get_clock().now()
        if fault == "stamps_back":
            now = now - Duration(seconds=5)
        elif fault == "stamps_future":
            now = now + Duration(seconds=5)
        stamp: Time = now.to_msg()
        healthy_turn = turn % BURST == 0
        for name, pub in cams.items():
            burst = fault == "burst" and name == "front"
            if not (healthy_turn or burst) or fault == "cameras_pause":
                continue
            img = small if fault == "wrong_size" and name == "front" else frame
            h, w = img.shape[:2]
            msg = Image(height=h, width=w, encoding="rgb8", step=w * 3, data=img.tobytes())
            if fault == "bad_encoding":
                msg.encoding = "16UC1"
            if fault == "truncated_image" and name == "front":
                msg.data = img.tobytes()[: w * 3 * (h // 2)]
            msg.header.stamp, msg.header.frame_id = stamp, f"{name}_camera"
            pub.publish(msg)
        if healthy_turn and fault != "joints_pause":
            js = JointState(name=["x", "y", "gripper"], position=[0.5 + 0.1 * math.sin(t), 0.5, 0.0])
            if fault == "nan_state":
                js.position = [float("nan"), 0.5, 0.0]
            if fault == "inf_state":
                js.position = [0.5, float("-inf"), 0.0]
            if fault == "missing_joint":
                js.name, js.position = ["x", "y"], [0.5, 0.5]
            js.header.stamp = stamp
            if fault == "undecodable_name":  # rclpy publishes bytes as an already serialised message
                raw = serialize_message(js)
                joints.publish(raw.replace(b"gripper", b"gr\xffpper"))
            elif a.split_joints:  # as an arm driver and a gripper driver would, on one topic
                for i, name in enumerate(js.name):
                    part = JointState(name=[name], position=[js.position[i]])
                    part.header.stamp = stamp
                    (gripper_joints if name == "gripper" else joints).publish(part)
            else:
                joints.publish(js)
        if env is not None and healthy_turn and fault != "env_pause":
            values = [0.25 * i for i in range(a.env_state)]
            if env_named:
                em = JointState(name=[f"env_{i}" for i in range(a.env_state)], position=values)
                em.header.stamp = stamp
                env.publish(em)
            else:
                env.publish(Float32MultiArray(data=values))
        rclpy.spin_once(node, timeout_sec=0.0)
        turn += 1
        time.sleep(max(0.0, turn * period - (time.monotonic() - start)))
    print(f"PHASE done {time.time_ns()}", flush=True)
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
