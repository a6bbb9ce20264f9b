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
from dataclasses import dataclass, field

# The action output that no controller checks: a JointState command, e.g. for a robot driver.
UNCHECKED_OUTPUT = "joint_state"


@dataclass(frozen=True)
class ControllerVerdict:
    """What the last check of the controller's joints found: replaced whole, never edited."""

    problem: str | None  # None: the controller answered and its joints match
    verified: bool  # the controller answered (a problem then is a mismatch, not a missing answer)

    def __post_init__(self) -> None:
        if self.problem is None and not self.verified:
            raise ValueError("an unverified controller always has a problem: its joints are not known")


@dataclass
class ControllerGate:
    """Whether actions may go to a ros2_control controller, as the last check of its joints found.

    Until the controller answers and its joints match, the outputs that go to it are held (the
    others, a JointState command, are still published). The check answers on the node's spin
    thread while a tick runs on its worker, so the verdict is one object swapped in a single
    assignment, and a tick reads it once (:meth:`held`): it decides, counts, words its status and
    publishes on that one reading, never on two that straddle the answer. ``/diagnostics`` adds the
    verdict as it is when published (``controller``), which the next tick then acts on.
    """

    controller: str
    outputs: tuple[str, ...]  # every action output the node publishes
    verdict: ControllerVerdict = field(init=False)

    def __post_init__(self) -> None:
        self.verdict = ControllerVerdict(f"joints of {self.controller} not verified yet (no answer from it)", False)

    def answered(self, problem: str | None) -> None:
        """The controller listed its joints; ``problem`` says why they do not fit (None: they do)."""
        self.verdict = ControllerVerdict(problem, True)

    def unusable(self, problem: str) -> None:
        """The controller answered without joints: keep holding, and keep asking."""
        self.verdict = ControllerVerdict(problem, False)

    @property
    def checked_outputs(self) -> tuple[str, ...]:
        """The outputs that go to the controller."""
        return tuple(o for o in self.outputs if o != UNCHECKED_OUTPUT)

    def held(self) -> tuple[str, ...]:
        """The outputs not to send under the current verdict, read once (a tick keeps what it read)."""
        return self.checked_outputs if self.verdict.problem is not None else ()

    def holds_all(self, held: tuple[str, ...]) -> bool:
        """Whether holding ``held`` (what :meth:`held` gave) leaves no output to publish."""
        return bool(held) and set(self.outputs) <= set(held)


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
