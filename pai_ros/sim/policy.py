"""A policy checkpoint ready for the simulated robot: a runner, and the scene at its image size."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pai_ros.errors import UserError
from pai_ros.sim.robot import CAMERAS, SimConfig

#: How closed-loop evaluation runs the policy by default: temporal ensembling (LeRobot's
#: ``ACTTemporalEnsembler``; ``policy_node`` ``mode:=ensemble``). The model runs every step and the
#: executed action blends every chunk predicted for that step, so the policy corrects itself on
#: what its actions led to. The demo policy executed open loop on its 20-action chunks (LeRobot's
#: queue, what ``auto`` picks for it) closes the gripper on a schedule, about 10 steps in, wherever
#: it is (bench/RESULTS.md, "Closed loop").
EVAL_MODE = "ensemble"


def sim_config_for(runner, base: SimConfig | None = None) -> SimConfig:
    """``base`` with camera sizes taken from the policy (the demo's cameras, at the size it was trained on)."""
    base = base or SimConfig()
    cams = runner.spec.cameras
    missing = [c for c in CAMERAS if c not in cams]
    if missing:
        raise UserError(f"the policy has no camera(s) {', '.join(missing)} (it has {', '.join(cams) or 'none'}): "
                        "the simulated demo robot has a front and a wrist camera")
    (_, fh, fw), (_, wh, ww) = cams["front"], cams["wrist"]
    if runner.spec.state_dim != 3:
        raise UserError(f"the policy's state has {runner.spec.state_dim} dimensions; the demo robot's is "
                        "[x, y, gripper]")
    scene = dataclasses.replace(base.scene, front_hw=(fh, fw), wrist_hw=(wh, ww))
    return dataclasses.replace(base, scene=scene)


def sim_runner(policy_path: str | Path, mode: str = EVAL_MODE, device: str = "cpu"):
    """A :class:`~pai_ros.policy.runner.PolicyRunner` with no attention capture (nothing to draw here)."""
    from pai_ros.policy.capture import CaptureConfig
    from pai_ros.policy.loading import load_act_policy
    from pai_ros.policy.runner import PolicyRunner

    return PolicyRunner(load_act_policy(policy_path, device), mode, CaptureConfig(cross_attention=False, encoder_output=False))
