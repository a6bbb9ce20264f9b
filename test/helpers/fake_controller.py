"""A stand-in for a ros2_control controller (ros2_control is not installable here): a real rclpy
node with the controller's ``joints`` parameter that counts the commands it receives.

    python fake_controller.py NAME JOINT [JOINT ...]

Declares ``joints`` on node NAME and subscribes to ``NAME/joint_trajectory``
(trajectory_msgs/JointTrajectory, as joint_trajectory_controller) and ``NAME/commands``
(std_msgs/Float64MultiArray, as forward_position_controller). Prints READY, then one line
``GOT <kind> <n>`` per received command. A trajectory is first judged as joint_trajectory_controller
judges it (ros2_controllers' validate_trajectory_msg): a non-zero ``header.stamp`` plus the last
point's ``time_from_start`` before the controller's now is dropped, ``REJECTED trajectory <n> <late_s>``.
"""

from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory


def main(name: str, joints: list[str]) -> None:
    rclpy.init()
    node = rclpy.create_node(name)
    node.declare_parameter("joints", joints)
    counts = {"trajectory": 0, "commands": 0, "rejected": 0}

    def got(kind: str) -> None:
        counts[kind] += 1
        print(f"GOT {kind} {counts[kind]}", flush=True)

    def trajectory(msg: JointTrajectory) -> None:
        start_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        if start_ns and msg.points:
            last = msg.points[-1].time_from_start
            late_ns = node.get_clock().now().nanoseconds - (start_ns + last.sec * 1_000_000_000 + last.nanosec)
            if late_ns > 0:  # "Received trajectory with non-zero start time ... that ends in the past"
                counts["rejected"] += 1
                print(f"REJECTED trajectory {counts['rejected']} {late_ns / 1e9:.3f}", flush=True)
                return
        got("trajectory")

    node.create_subscription(JointTrajectory, f"{name}/joint_trajectory", trajectory, 10)
    node.create_subscription(Float64MultiArray, f"{name}/commands", lambda _m: got("commands"), 10)
    print("READY", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
