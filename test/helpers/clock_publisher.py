"""Publish simulated time on /clock, as a simulator does: 1000 s + real time elapsed, every 5 ms.

    python clock_publisher.py [--ros-args ...]
Prints READY once the publisher exists; runs until killed.
"""

from __future__ import annotations

import time

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

START_S = 1000.0


def main() -> None:
    rclpy.init()
    node = rclpy.create_node("clock_publisher")
    pub = node.create_publisher(Clock, "/clock", QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
    t0 = time.monotonic()

    def tick() -> None:
        ns = int((START_S + time.monotonic() - t0) * 1e9)
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(ns, 1_000_000_000)
        pub.publish(msg)

    # The node's own clock is wall time (no use_sim_time here), so this timer runs from the start.
    node.create_timer(0.005, tick)
    print("READY", flush=True)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
