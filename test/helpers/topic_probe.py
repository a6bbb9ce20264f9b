"""An independent subscriber process for tests: prints one JSON line per received message.

    python topic_probe.py TOPIC:TYPE[:latched|:reliable] [TOPIC:TYPE[:latched|:reliable] ...]
TYPE is Image, CompressedImage, JointState, JointTrajectory, Float64MultiArray, Float32MultiArray,
DiagnosticArray, String or FeatureActivations. The first
line is READY once every subscription exists. Subscriptions are best effort (they match
reliable and best-effort publishers alike), except ``:latched`` ones: reliable and transient-local,
for publishers that keep their messages for late subscribers (a message published before this
probe discovered the publisher still arrives, where a best-effort subscription would miss it),
``:reliable`` ones (reliable, volatile: they match only reliable publishers), and DiagnosticArray
topics (/diagnostics): reliable, as diagnostic_aggregator subscribes (every pai_ros node publishes
/diagnostics so). A node's last word is published just before it exits, and it waits for reliable
readers to acknowledge it; a best-effort reader gets no such wait, so under load the last word was
lost with the exiting process: subscribe to a last word ``:reliable`` or ``:latched`` (CI runs
failed on exactly that, last on a node's last word after Ctrl-C).
"""

from __future__ import annotations

import json
import sys

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float32MultiArray, Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory

# The latched publishers' own profile (reliable, transient-local), so the subscription matches what they offer.
from pai_ros.ros.sim_node import LATCHED

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)

TYPES = {"Image": Image, "CompressedImage": CompressedImage, "JointState": JointState,
         "DiagnosticArray": DiagnosticArray, "JointTrajectory": JointTrajectory,
         "Float64MultiArray": Float64MultiArray, "Float32MultiArray": Float32MultiArray, "String": String}


def summary(topic: str, msg, now_ns: int) -> dict:
    out = {"topic": topic, "recv_ns": now_ns}
    header = getattr(msg, "header", None)
    if header is not None:
        out["stamp_ns"] = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
        out["frame_id"] = header.frame_id
    if isinstance(msg, Image):
        out.update(encoding=msg.encoding, height=msg.height, width=msg.width, step=msg.step, size=len(msg.data))
        if msg.encoding == "rgb8" and msg.height and msg.width:
            mid = (msg.height // 2 * msg.width + msg.width // 2) * 3
            out["center_rgb"] = list(msg.data[mid:mid + 3])
    elif isinstance(msg, JointState):
        out.update(name=list(msg.name), position=[float(p) for p in msg.position])
    elif isinstance(msg, JointTrajectory):
        out.update(joint_names=list(msg.joint_names), points=[
            {"positions": [float(p) for p in pt.positions],
             "time_from_start_ns": pt.time_from_start.sec * 1_000_000_000 + pt.time_from_start.nanosec}
            for pt in msg.points])
    elif isinstance(msg, (Float64MultiArray, Float32MultiArray)):
        out.update(data=[float(v) for v in msg.data], dims=[(d.label, int(d.size)) for d in msg.layout.dim])
    elif isinstance(msg, String):
        out["data"] = msg.data
    elif isinstance(msg, DiagnosticArray):
        out["status"] = [{"name": s.name, "level": int.from_bytes(s.level, "little") if isinstance(s.level, bytes)
                          else int(s.level), "message": s.message,
                          "values": {kv.key: kv.value for kv in s.values}} for s in msg.status]
    else:  # FeatureActivations
        out.update(sae_id=msg.sae_id, feature_indices=[int(i) for i in msg.feature_indices],
                   activations=[float(a) for a in msg.activations], token_counts=[int(c) for c in msg.token_counts],
                   num_features=int(msg.num_features), num_tokens=int(msg.num_tokens), mean_l0=float(msg.mean_l0),
                   reconstruction_error=float(msg.reconstruction_error), ood_threshold=float(msg.ood_threshold),
                   is_ood=bool(msg.is_ood), ood_score=float(msg.ood_score), steered=bool(msg.steered),
                   steering_mode=msg.steering_mode, steered_features=[int(i) for i in msg.steered_features],
                   steering_values=[float(v) for v in msg.steering_values],
                   steering_remaining_s=float(msg.steering_remaining_s),
                   camera_state_score=float(msg.camera_state_score),
                   camera_state_threshold=float(msg.camera_state_threshold),
                   camera_state_cameras=list(msg.camera_state_cameras),
                   camera_state_camera_scores=[float(v) for v in msg.camera_state_camera_scores])
    return out


def main(specs: list[str]) -> None:
    rclpy.init()
    node = rclpy.create_node("topic_probe")
    for spec in specs:
        topic, type_name, *flags = spec.split(":")
        if flags not in ([], ["latched"], ["reliable"]):
            raise SystemExit(f"topic_probe: unknown flags {flags} in {spec!r}")
        if flags == ["latched"]:
            qos = LATCHED
        elif flags == ["reliable"] or type_name == "DiagnosticArray":
            qos = RELIABLE
        else:
            qos = qos_profile_sensor_data
        if type_name == "FeatureActivations":
            from pai_ros.msg import FeatureActivations as msg_type
        else:
            msg_type = TYPES[type_name]
        node.create_subscription(msg_type, topic, lambda m, t=topic: print(
            json.dumps(summary(t, m, node.get_clock().now().nanoseconds)), flush=True), qos)
    print("READY", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
