"""A publisher process driven over stdin, for recorder fault tests: numbered JointState messages.

    python seq_publisher.py [--topics joint_states,action] [--payload BYTES] [--ros-args ...]

Prints ``READY <topics>`` once its (reliable) publishers exist, then reads commands:

* ``PUB N RATE``: publish messages N more times on every topic at RATE Hz, then print
  ``SENT <total per topic>``. Message i (counted over the process's life, from 0) has
  ``header.stamp.sec = i`` and ``position[0] = i``; ``--payload`` adds that many bytes of
  ``effort`` to make the messages large (to fill a disk quickly).
* ``WAIT``: wait until every subscriber acknowledged what was sent (``wait_for_all_acked``), then
  print ``ACKED``.
* ``MATCHED N``: wait until every publisher is matched with at least N subscriptions (DDS
  endpoint matching, which can lag behind the ROS graph the recorder sees), then print
  ``MATCHED``; messages published before the match would be lost to a volatile subscriber.

The process ends at end of input or when it is killed.
"""

from __future__ import annotations

import argparse
import sys
import time

import rclpy
from rclpy.duration import Duration
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--topics", default="joint_states,action")
    ap.add_argument("--payload", type=int, default=0, help="extra bytes per message (effort array)")
    args, ros_args = ap.parse_known_args()
    rclpy.init(args=[sys.argv[0], *ros_args])
    node = rclpy.create_node("pai_test_seq_publisher")
    qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    pubs = [node.create_publisher(JointState, t, qos) for t in args.topics.split(",") if t]
    effort = [0.5] * (args.payload // 8)
    sent = 0
    try:
        print("READY " + " ".join(p.topic_name for p in pubs), flush=True)
        for line in sys.stdin:
            cmd = line.split()
            if cmd and cmd[0] == "PUB":
                count, rate = int(cmd[1]), float(cmd[2])
                start = time.monotonic()
                for k in range(count):
                    msg = JointState()
                    msg.header.stamp.sec = sent
                    msg.name = ["x"]
                    msg.position = [float(sent)]
                    msg.effort = effort
                    for pub in pubs:
                        pub.publish(msg)
                    sent += 1
                    delay = start + (k + 1) / rate - time.monotonic()  # fixed-rate schedule
                    if delay > 0:
                        time.sleep(delay)
                print(f"SENT {sent}", flush=True)
            elif cmd and cmd[0] == "MATCHED":
                deadline = time.monotonic() + 60
                while any(pub.get_subscription_count() < int(cmd[1]) for pub in pubs) and time.monotonic() < deadline:
                    time.sleep(0.01)
                print("MATCHED", flush=True)
            elif cmd and cmd[0] == "WAIT":
                for pub in pubs:
                    pub.wait_for_all_acked(Duration(seconds=30))
                print("ACKED", flush=True)
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
