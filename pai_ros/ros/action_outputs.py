"""The policy node's action publishers: one per output type in ``action_output``.

``joint_state`` (``action``, sensor_msgs/JointState), ``joint_trajectory`` (``action_trajectory``,
for joint_trajectory_controller) and ``float64_multi_array`` (``action_commands``, for
forward_position_controller).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from pai_ros.live import LiveConfig, TickOutput
from pai_ros.live.parameters import JOINT_TRAJECTORY
from pai_ros.ros import topics
from pai_ros.ros.messages import float64_multi_array, joint_state, joint_trajectory, to_stamp

# Every output of the policy node is RELIABLE: a dropped command is a robot that did not move.
RELIABLE = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
ACTION_TOPICS = {"joint_state": (topics.ACTION, JointState),
                 "joint_trajectory": (topics.ACTION_TRAJECTORY, JointTrajectory),
                 "float64_multi_array": (topics.ACTION_COMMANDS, Float64MultiArray)}


class ActionOutputs:
    """Publishers of the configured outputs (none in observe-only mode, ``publish_actions:=false``)."""

    def __init__(self, node: Node, config: LiveConfig, names: tuple[str, ...]) -> None:
        self.node, self.config, self.names = node, config, list(names)
        outputs = config.action_output if config.publish_actions else ()
        self.pubs: dict[str, Any] = {out: node.create_publisher(ACTION_TOPICS[out][1], ACTION_TOPICS[out][0], RELIABLE)
                                     for out in outputs}

    def describe(self) -> str:
        """The resolved action topics, for the node's ready line."""
        topics_ = [self.node.resolve_topic_name(ACTION_TOPICS[o][0]) for o in self.pubs]
        return ", ".join(topics_) or "nothing (observe-only)"

    def publish(self, out: TickOutput) -> None:
        """The tick's action on every output it did not hold (the tick decided, and counted, why)."""
        stamp = to_stamp(out.stamp_ns)
        for output, pub in self.pubs.items():
            if output in out.held_outputs:
                continue
            if output == "joint_state":
                pub.publish(joint_state(self.names, out.action, stamp))
            elif output == JOINT_TRAJECTORY:  # its points are timed from now: the controller drops past ones
                plan = out.plan if self.config.trajectory_points == "chunk" else out.plan[:1]
                sent_after_s = (self.node.get_clock().now().nanoseconds - out.stamp_ns) / 1e9
                pub.publish(joint_trajectory(self.names, plan, stamp, self.config.period_s, sent_after_s))
            else:
                pub.publish(float64_multi_array(out.action))

    def send_stop(self, point: np.ndarray, now_ns: int) -> bool:
        """Cancel the rest of the plan a trajectory controller was sent (``trajectory_points:=chunk``): it
        would go on executing it, planned from an older scene. True when a stop went out."""
        pub = self.pubs.get(JOINT_TRAJECTORY)
        if self.config.trajectory_points != "chunk" or pub is None:
            return False
        pub.publish(joint_trajectory(self.names, point, to_stamp(now_ns), self.config.period_s))
        return True

    def stop_delivered(self, timeout_s: float) -> bool:
        """The stop reached every subscriber of the trajectory output within ``timeout_s`` (a process that
        exits sooner may take it with it)."""
        return self.pubs[JOINT_TRAJECTORY].wait_for_all_acked(Duration(seconds=timeout_s))
