"""``sim_node``: the demo scene as a robot that a policy node drives in closed loop.

A thin adapter around :class:`pai_ros.sim.session.SimSession`. Publishes at ``rate_hz``, every
message of a step with one stamp: ``camera/<front|wrist>/image_raw`` (``sensor_msgs/Image``,
rgb8, sensor QoS, frame ids ``<name>_camera``: what ``replay_node`` publishes, so
``policy_node`` runs unchanged) and ``joint_states`` (``x``, ``y``, ``gripper``). Subscribes to
``action`` (``sensor_msgs/JointState``, what ``policy_node`` publishes by default) and executes
the newest one received since the previous step with the dataset expert's motion limits; no
action, NaN/inf or out-of-range values hold the gripper still, and ``/diagnostics`` says why.
Each finished episode is a JSON line on ``~/episode_outcome`` (``std_msgs/String``); after the
last one ``~/summary`` carries the success rate and mean final distance, and the node exits.
Before each episode it publishes nothing for ``settle_s`` (set it above the policy node's
``max_observation_age_s``): the policy node's inputs go stale, it drops the plan made on the
previous scene, and the episode starts from a fresh one (see :mod:`pai_ros.sim.session`).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from pai_ros.ros import topics
from pai_ros.ros.lifecycle import run_node
from pai_ros.ros.messages import camera_header, diagnostic_array, joint_state, rgb_image, status_name
from pai_ros.ros.params import declare
from pai_ros.ros.sim_time import SimClockWatch
from pai_ros.sim.parameters import PARAMS, SimNodeConfig
from pai_ros.sim.robot import CAMERAS
from pai_ros.sim.scene import STATE_NAMES
from pai_ros.sim.session import SimSession, action_vector

__all__ = ["PARAMS", "SimNode", "main"]

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Outcomes and the summary are few and must not be missed by a late subscriber (a test, a recorder).
LATCHED = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class SimNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("sim_node", **node_kwargs)
        self.config = SimNodeConfig.from_parameters(declare(self, PARAMS))
        c = self.config
        self.session = SimSession(c.sim, c.seed, c.episodes, c.settle_steps, c.loop)
        self.cam_pubs = {cam: self.create_publisher(Image, topics.CAMERA_IMAGE.format(camera=cam),
                                                    qos_profile_sensor_data) for cam in CAMERAS}
        self.state_pub = self.create_publisher(JointState, topics.JOINT_STATES, RELIABLE)
        self.outcome_pub = self.create_publisher(String, topics.SIM_EPISODE_OUTCOME, LATCHED)
        self.summary_pub = self.create_publisher(String, topics.SIM_SUMMARY, LATCHED)
        self.diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, RELIABLE)
        self.clock_watch = SimClockWatch(self, self.diag_pub)
        self.create_subscription(JointState, topics.ACTION, self._on_action, RELIABLE)
        self._action: np.ndarray | None = None  # newest action since the previous step
        self.finished = False
        self._timer = None
        self._start = self.create_timer(max(c.start_delay_s, 1e-3), self._begin)
        self.create_timer(c.diagnostics_period_s, self._publish_diagnostics)
        self.get_logger().info(
            f"simulating {c.episodes} episode(s) of seed {c.seed} at {c.rate_hz:g} Hz, images "
            f"{c.sim.scene.front_hw[0]}x{c.sim.scene.front_hw[1]}, max {c.sim.max_steps} steps, success within "
            f"{c.sim.success_radius:g}; actions from {self.resolve_topic_name('action')}")

    def _on_action(self, msg: JointState) -> None:
        self._action = action_vector(msg.name, msg.position)

    def _begin(self) -> None:
        wanted = self.config.wait_for_subscribers
        if wanted and any(p.get_subscription_count() < wanted for p in (*self.cam_pubs.values(), self.state_pub)):
            return  # the start timer fires again
        self._start.cancel()
        if self.session.showing:
            self._publish_observation()
        self._timer = self.create_timer(self.config.period_s, self._step)

    def _step(self) -> None:
        action, self._action = self._action, None
        tick = self.session.tick(action)
        if tick.finished_episode is not None:
            outcome = tick.finished_episode.as_dict()
            self.outcome_pub.publish(String(data=json.dumps(outcome)))
            self.get_logger().info(f"episode {outcome['episode']}: {outcome['outcome']} after {outcome['steps']} "
                                   f"steps, final distance {outcome['final_distance']:.3f}")
        if tick.all_done:
            self._finish()
            return
        if self.session.showing:  # silent while settling before an episode
            self._publish_observation()

    def _publish_observation(self) -> None:
        obs = self.session.observation
        if obs is None:
            return
        stamp = self.get_clock().now().to_msg()
        for cam, pub in self.cam_pubs.items():
            pub.publish(rgb_image(obs.images[cam], camera_header(stamp, cam)))
        self.state_pub.publish(joint_state(list(STATE_NAMES), obs.state, stamp))

    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        report = self.session.report()
        summary = {**report.summary(), "held": dict(self.session.counts.held),
                   "settling_ticks": self.session.counts.settling}
        self.summary_pub.publish(String(data=json.dumps(summary)))
        self._publish_diagnostics()
        self.get_logger().info(f"closed loop: {report.counts().get('success', 0)}/{len(report.episodes)} episodes "
                               f"succeeded ({report.success_rate:.0%}), mean final distance "
                               f"{report.mean_final_distance:.3f}")
        self.finished = True

    def _publish_diagnostics(self) -> None:
        level, message, values = self.session.diagnostics()
        self.diag_pub.publish(diagnostic_array(status_name(self, "sim"), level, message, values, "pai_demo_scene",
                                               self.get_clock().now().to_msg()))


def _spin_until_finished(node: SimNode) -> None:
    while rclpy.ok() and not node.finished:
        rclpy.spin_once(node, timeout_sec=0.1)
    # Let late subscribers take the latched summary before the process goes away.
    end = node.get_clock().now().nanoseconds + 500_000_000
    while rclpy.ok() and node.get_clock().now().nanoseconds < end:
        rclpy.spin_once(node, timeout_sec=0.05)


def main(args: list[str] | None = None) -> int:
    return run_node("sim_node", SimNode, args, spin=_spin_until_finished, params=PARAMS, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
