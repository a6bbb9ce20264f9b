"""The policy node's parameters: one spec, read by the ROS node, the core and the README tables.

The ROS node declares these (with descriptions and ranges, so ``ros2 param describe`` explains
them) and hands the values to :meth:`pai_ros.live.config.LiveConfig.from_parameters`; tests and
offline tools build a :class:`~pai_ros.live.config.LiveConfig` from the same defaults without ROS.
"""

from __future__ import annotations

from pai_ros.attention.attribution import LIVE_METHODS
from pai_ros.attention.render import COLORMAPS
from pai_ros.paramspec import Param
from pai_ros.policy.runner import MODES

JOINT_TRAJECTORY = "joint_trajectory"  # the output a trajectory controller executes whole plans from
ACTION_OUTPUTS = ("joint_state", JOINT_TRAJECTORY, "float64_multi_array")
TRAJECTORY_POINTS = ("next", "chunk")
ENVIRONMENT_STATE_TYPES = ("float32_multi_array", "joint_state")
LIVE_NORMALIZATIONS = ("raw", "frame", "percentile")

PARAMS: list[Param] = [
    Param("policy_path", "", "LeRobot ACT checkpoint directory (pretrained_model), lerobot-train output dir, or a "
          "hub id (org/name) found in the local Hugging Face cache", read_only=True),
    Param("device", "auto", "torch device: auto, cpu, cuda, cuda:N", read_only=True),
    Param("cameras", [], "camera inputs as 'name:topic' or 'name:topic:compressed' (CompressedImage; implied by a "
          "topic ending in /compressed); name may be LeRobot's observation.images.NAME (empty: every policy camera "
          "NAME on camera/NAME/image_raw)", array_type="string", read_only=True),
    Param("joint_states_topic", "joint_states", "sensor_msgs/JointState input with the robot state", read_only=True),
    Param("state_joint_names", [], "joint names, in the policy's state order (empty: the JointState's order, "
          "which must then have exactly the policy's state size)", array_type="string", read_only=True),
    Param("state_scale", [], "per state dimension: policy value = ROS value x scale + offset (e.g. 57.29578 for a "
          "policy trained in degrees on a robot publishing radians; empty: 1)", array_type="double", read_only=True),
    Param("state_offset", [], "per state dimension: added after state_scale (empty: 0)", array_type="double",
          read_only=True),
    Param("environment_state_topic", "environment_state", "input for policies with observation.environment_state "
          "(ignored by other policies)", read_only=True),
    Param("environment_state_type", "float32_multi_array", "message type of environment_state_topic: "
          f"{', '.join(ENVIRONMENT_STATE_TYPES)} (float32_multi_array has no header: its receive time is its age)",
          read_only=True),
    Param("environment_state_names", [], "with environment_state_type joint_state: the names, in the policy's "
          "order (empty: the message's order)", array_type="string", read_only=True),
    Param("action_names", [], "names published with the action (empty: state_joint_names if sizes match, "
          "else action_0, action_1, ...)", array_type="string", read_only=True),
    Param("action_scale", [], "per action dimension: the policy's action = published value x scale + offset, so "
          "published = (action - offset) / scale (empty: 1; clamps apply to published values)", array_type="double",
          read_only=True),
    Param("action_offset", [], "per action dimension: see action_scale (empty: 0)", array_type="double",
          read_only=True),
    Param("action_output", ["joint_state"], "action topics to publish, one or more of: joint_state (action, "
          "sensor_msgs/JointState), joint_trajectory (action_trajectory, trajectory_msgs/JointTrajectory for "
          "joint_trajectory_controller), float64_multi_array (action_commands, std_msgs/Float64MultiArray for "
          "forward_position_controller)", array_type="string", read_only=True),
    Param("trajectory_points", "next", "joint_trajectory output: next (one point, one control period ahead) or "
          "chunk (the actions planned from now on, one control period apart)", read_only=True),
    Param("controller", "", "a ros2_control controller (node name, e.g. /arm_controller) whose 'joints' parameter "
          "the action names must match: joint_trajectory and float64_multi_array outputs are held until it "
          "answers and match (empty: no check)", read_only=True),
    Param("control_rate_hz", 30.0, "control ticks per second", min=0.1, max=1000.0, read_only=True),
    Param("mode", "auto", f"runner mode: auto, {', '.join(MODES)} (auto: as the checkpoint's config says)",
          read_only=True),
    Param("max_observation_age_s", 0.25, "inputs older than this, when the tick starts or when its action is "
          "ready, are stale: no action is published",
          min=0.001, max=60.0, read_only=True),
    Param("max_input_spread_s", 0.0, "inputs of one observation stamped further apart than this (a camera lagging "
          "behind the joints) are refused: no action is published (0: not checked; a value at or above "
          "max_observation_age_s + max_clock_skew_s could never refuse anything and is refused at start)",
          min=0.0, max=60.0, read_only=True),
    Param("max_clock_skew_s", 0.1, "inputs stamped further than this ahead of this node's clock are refused "
          "(the robot's clock and this one disagree): no action is published", min=0.0, max=60.0, read_only=True),
    Param("resize_images", False, "resize camera images whose size differs from the policy's input "
          "(false: such images are refused and no action is published)", read_only=True),
    Param("publish_actions", True, "false = observe-only: interpret the policy while something else drives",
          read_only=True),
    Param("action_min", [], "per-dimension lower clamp of published actions (empty: no clamp)", array_type="double",
          read_only=True),
    Param("action_max", [], "per-dimension upper clamp of published actions (empty: no clamp)", array_type="double",
          read_only=True),
    Param("publish_heatmaps", True, "publish attention/<camera>/heatmap images", read_only=True),
    Param("heatmap_cameras", [], "cameras that get a heatmap topic (empty: all)", array_type="string",
          read_only=True),
    # Default: the one live method that is faithful on the demo (peak on the target in 73-75% of held-out
    # frames, symmetric gain 1.00x integrated gradients' on this machine's build) within the 2.5x tick
    # budget (2.1-2.4x on CPU): bench/bench_faithfulness.py.
    Param("heatmap_method", "input_gradient", f"attribution method: {', '.join(LIVE_METHODS)} (relevance, "
          "relevance_cross and input_gradient run one backward pass per tick, input_gradient through the vision "
          "backbone to the pixels; switching to them is refused, keeping the current method, when memory is short "
          "or the policy gives no gradients)"),
    Param("heatmap_queries", "mean", "decoder queries shown: mean, executed, K or A:B (not for relevance methods: "
          "see relevance_target)", read_only=True),
    Param("relevance_target", "chunk", "output the relevance methods and input_gradient explain: chunk (every action of "
          "the chunk: where the arm is going; the output the benchmark measures faithful), first (the first action, decided "
          "now: mostly where the gripper is), dim:K (action dimension K of the first action)",
          read_only=True),
    Param("heatmap_normalization", "frame", f"colour scale: {', '.join(LIVE_NORMALIZATIONS)}", read_only=True),
    Param("heatmap_vmax", 0.0, "fixed scale maximum for heatmap_normalization=raw (0: per frame)", min=0.0,
          read_only=True),
    Param("heatmap_alpha", 0.6, "overlay opacity at full attention", min=0.0, max=1.0, read_only=True),
    Param("heatmap_colormap", "viridis", f"colormap: {', '.join(COLORMAPS)}", read_only=True),
    Param("sae_path", "", "sparse autoencoder directory (from `pai sae train`) for live features; empty: none. "
          "Setting it while running reloads the SAE (the node must have started with one; empty is refused "
          "then)"),
    Param("features_top_n", 64, "at most this many features per features message (strongest first)",
          min=1, max=1_000_000, read_only=True),
    Param("feature_heatmaps", [], "SAE feature indices that get a features/feature_<F>/<camera>/heatmap topic",
          array_type="integer", read_only=True),
    Param("allow_steering", False, "accept ~/steer requests that change SAE features inside the forward pass "
          "(changes the robot's actions; needs sae_path)", read_only=True),
    Param("steering_max_value", 100.0, "largest |value| a steer request may clamp a feature to, or scale it by",
          min=0.0, max=1e6, read_only=True),
    Param("steering_max_duration_s", 60.0, "longest a steer request may last before it expires", min=0.001,
          max=3600.0, read_only=True),
    Param("diagnostics_period_s", 1.0, "period of /diagnostics messages", min=0.05, max=60.0, read_only=True),
]
