"""The topics the pai_ros nodes publish: one list for the nodes, the viewer configs and their tests.

Names are relative, so they follow the node's namespace (``namespace:=robot1`` gives
``/robot1/action``), except ``/diagnostics``, which ROS tools read at the root. In a pattern,
``{camera}`` stands for a camera name of the policy (the demo's are ``front`` and ``wrist``)
and ``{feature}`` for an SAE feature index. ROS-free: no message classes are imported here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pai_ros.sim.robot import CAMERAS

ACTION = "action"
ACTION_TRAJECTORY = "action_trajectory"
ACTION_COMMANDS = "action_commands"
ATTENTION_SHARES = "attention/shares"
HEATMAP = "attention/{camera}/heatmap"
FEATURES = "features"
FEATURE_HEATMAP = "features/feature_{feature}/{camera}/heatmap"
DIAGNOSTICS = "/diagnostics"
CAMERA_IMAGE = "camera/{camera}/image_raw"
CAMERA_COMPRESSED = "camera/{camera}/image_raw/compressed"
JOINT_STATES = "joint_states"
RECORDED_ACTION = "recorded_action"
ENVIRONMENT_STATE = "environment_state"
SIM_EPISODE_OUTCOME = "~/episode_outcome"
SIM_SUMMARY = "~/summary"
CAMERA_FRAME = "{camera}_camera"  # the frame_id of the images the replay and sim nodes publish

DEMO_CAMERAS = CAMERAS  # the demo scene renders these (sim_node publishes them)


@dataclass(frozen=True)
class Published:
    pattern: str
    msg_type: str
    nodes: tuple[str, ...]
    sensor_qos: bool = False  # best effort: a reliable subscriber (an RViz default) would not match
    note: str = ""


PUBLISHED: tuple[Published, ...] = (
    Published(ACTION, "sensor_msgs/msg/JointState", ("policy_node",), note="action_output: joint_state (default)"),
    Published(ACTION_TRAJECTORY, "trajectory_msgs/msg/JointTrajectory", ("policy_node",),
              note="action_output: joint_trajectory"),
    Published(ACTION_COMMANDS, "std_msgs/msg/Float64MultiArray", ("policy_node",),
              note="action_output: float64_multi_array"),
    Published(ATTENTION_SHARES, "sensor_msgs/msg/JointState", ("policy_node",)),
    Published(HEATMAP, "sensor_msgs/msg/Image", ("policy_node",)),
    Published(FEATURES, "pai_ros/msg/FeatureActivations", ("policy_node",), note="with sae_path"),
    Published(FEATURE_HEATMAP, "sensor_msgs/msg/Image", ("policy_node",), note="with feature_heatmaps"),
    Published(DIAGNOSTICS, "diagnostic_msgs/msg/DiagnosticArray",
              ("policy_node", "recorder_node", "replay_node", "sim_node")),
    Published(CAMERA_IMAGE, "sensor_msgs/msg/Image", ("replay_node", "sim_node"), sensor_qos=True),
    Published(CAMERA_COMPRESSED, "sensor_msgs/msg/CompressedImage", ("replay_node",), sensor_qos=True,
              note="replay compressed:=true"),
    Published(JOINT_STATES, "sensor_msgs/msg/JointState", ("replay_node", "sim_node")),
    Published(RECORDED_ACTION, "sensor_msgs/msg/JointState", ("replay_node",)),
    Published(ENVIRONMENT_STATE, "std_msgs/msg/Float32MultiArray", ("replay_node",),
              note="datasets with observation.environment_state (a JointState with environment_state_type "
                   "joint_state)"),
    Published(SIM_EPISODE_OUTCOME, "std_msgs/msg/String", ("sim_node",),
              note="JSON per finished episode (transient local): outcome, steps, final distance, holds"),
    Published(SIM_SUMMARY, "std_msgs/msg/String", ("sim_node",),
              note="JSON after the last episode (transient local): success rate, mean final distance"),
)


def _regex(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[a-z]+\})", pattern)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$")


def find(topic: str, namespace: str = "") -> Published | None:
    """The published topic that ``topic`` names (absolute names are read below ``namespace``)."""
    name = topic
    if topic.startswith("/") and topic != DIAGNOSTICS:
        prefix = "/" + namespace.strip("/") + "/" if namespace.strip("/") else "/"
        if not topic.startswith(prefix):
            return None
        name = topic[len(prefix):]
    for entry in PUBLISHED:
        if _regex(entry.pattern).match(name):
            return entry
    return None
