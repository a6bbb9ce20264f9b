"""Does a ros2_control controller accept the joint names our actions carry? (pure check, no ROS)

``joint_trajectory_controller`` and ``forward_position_controller`` list their joints in a
``joints`` parameter. A JointTrajectory naming other joints is refused by the controller with a
line in *its* log only, and a Float64MultiArray is applied positionally: either way the arm
does not do what the policy says. The policy node reads the controller's ``joints`` once it
answers and compares them here; :class:`ControllerGate` holds the verdict, so that the live tick
decides (and counts, and reports) which actions go out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# The action output that no controller checks: a JointState command, e.g. for a robot driver.
UNCHECKED_OUTPUT = "joint_state"


@dataclass
class ControllerGate:
    """Whether actions may go to a ros2_control controller, as the last check of its joints found.

    ``problem`` is set until the controller answers and its joints match; meanwhile the outputs
    that go to it are held (the others, a JointState command, are still published).
    """

    controller: str
    outputs: tuple[str, ...]  # every action output the node publishes
    problem: str | None = None
    verified: bool = False

    def __post_init__(self) -> None:
        if self.problem is None and not self.verified:
            self.problem = f"joints of {self.controller} not verified yet (no answer from it)"

    @property
    def checked_outputs(self) -> tuple[str, ...]:
        """The outputs that go to the controller."""
        return tuple(o for o in self.outputs if o != UNCHECKED_OUTPUT)

    def sends(self, output: str) -> bool:
        return self.problem is None or output == UNCHECKED_OUTPUT

    @property
    def holds_every_output(self) -> bool:
        """No action leaves the node: every output goes to a controller it will not send to."""
        return self.problem is not None and UNCHECKED_OUTPUT not in self.outputs


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
