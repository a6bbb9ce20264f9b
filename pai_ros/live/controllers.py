"""Does a ros2_control controller accept the joint names our actions carry? (pure check, no ROS)

``joint_trajectory_controller`` and ``forward_position_controller`` list their joints in a
``joints`` parameter. A JointTrajectory naming other joints is refused by the controller with a
line in *its* log only, and a Float64MultiArray is applied positionally: either way the arm
does not do what the policy says. The policy node reads the controller's ``joints`` once it
answers and compares them here.
"""

from __future__ import annotations

from collections.abc import Sequence


def joint_mismatch(output: str, controller: str, action_names: Sequence[str],
                   controller_joints: Sequence[str]) -> str | None:
    """Why ``controller`` would not execute our actions (None: it would)."""
    ours, theirs = list(action_names), list(controller_joints)
    if output == "float64_multi_array":
        # forward_position_controller applies data[i] to joints[i]: names and order must agree.
        if ours != theirs:
            return (f"{controller} applies action_commands positionally to joints {theirs}, the actions are "
                    f"{ours} (set action_names to the controller's joints, in its order)")
        return None
    missing = [n for n in ours if n not in theirs]
    if missing:
        return (f"{controller} has joints {theirs}; it refuses trajectories for {missing} "
                f"(set action_names to the controller's joint names)")
    return None
