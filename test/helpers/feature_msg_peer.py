"""A separate process on the other side of a FeatureActivations exchange (used by tests).

    python feature_msg_peer.py publish TOPIC    # publish the reference message until a subscriber took it
    python feature_msg_peer.py subscribe TOPIC  # print the first message received as JSON, then exit
"""

from __future__ import annotations

import json
import math
import sys
import time

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, DurabilityPolicy

from pai_ros.msg import FeatureActivations

QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def reference_message() -> FeatureActivations:
    msg = FeatureActivations()
    msg.header.stamp.sec = 1_700_000_123
    msg.header.stamp.nanosec = 456_789
    msg.header.frame_id = "policy"
    msg.sae_id = "sae-3f2a9c"
    msg.num_features = 4096
    msg.feature_indices = [4095, 17, 0]
    msg.activations = [3.5, 1.25, 0.125]
    msg.token_counts = [12, 3, 1]
    msg.num_tokens = 42
    msg.mean_l0 = 7.5
    msg.reconstruction_error = 0.0625
    msg.ood_threshold = math.nan
    msg.is_ood = True
    return msg


def to_dict(msg: FeatureActivations) -> dict:
    return {
        "stamp": [msg.header.stamp.sec, msg.header.stamp.nanosec], "frame_id": msg.header.frame_id,
        "sae_id": msg.sae_id, "num_features": msg.num_features,
        "feature_indices": list(msg.feature_indices), "activations": [float(a) for a in msg.activations],
        "token_counts": list(msg.token_counts), "num_tokens": msg.num_tokens, "mean_l0": msg.mean_l0,
        "reconstruction_error": msg.reconstruction_error,
        "ood_threshold": None if math.isnan(msg.ood_threshold) else msg.ood_threshold, "is_ood": msg.is_ood,
    }


def main(mode: str, topic: str) -> int:
    rclpy.init()
    node = rclpy.create_node(f"feature_msg_{mode}")
    deadline = time.monotonic() + 60
    try:
        if mode == "publish":
            pub = node.create_publisher(FeatureActivations, topic, QOS)
            while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
                rclpy.spin_once(node, timeout_sec=0.05)
            pub.publish(reference_message())
            # Stay until the subscriber has gone (it exits after receiving), so delivery completes.
            while pub.get_subscription_count() > 0 and time.monotonic() < deadline:
                rclpy.spin_once(node, timeout_sec=0.05)
            return 0
        received: list[FeatureActivations] = []
        node.create_subscription(FeatureActivations, topic, received.append, QOS)
        print("READY", flush=True)
        while not received and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        if not received:
            return 3
        print(json.dumps(to_dict(received[0])), flush=True)
        return 0
    finally:
        node.destroy_node()
        rclpy.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
