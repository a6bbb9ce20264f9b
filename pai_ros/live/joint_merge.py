"""Joint states from several publishers on one topic, merged by joint name (ROS-free).

Arms are often driven by two nodes, e.g. the arm's ros2_control hardware and a separate gripper
driver, each publishing ``joint_states`` with its own joints. The latest message alone then
always lacks someone's joints, and a policy node that reads only it never acts. This keeps the
newest position of every joint name (as robot_state_publisher does) and hands the tick one
reading of the joints the policy reads, stamped by the *oldest* of them: a joint whose driver
stopped makes the whole state too old, never silently frozen.

Merging needs names: with no ``state_joint_names`` the policy reads positions in message order,
which only one message defines, so the latest message is used as it is. A message that is broken
in itself (a name twice, fewer positions than names, names that are not valid UTF-8) is handed
over as it is until a sound one arrives, so that the tick says what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pai_ros.live.inputs import JointReading
from pai_ros.live.received_text import undecodable


@dataclass(frozen=True)
class _Joint:
    position: float
    effective_ns: int  # its message's stamp, or receive time for an unstamped message
    recv_ns: int
    stamped: bool


class JointStateMerge:
    def __init__(self, wanted: Sequence[str]) -> None:
        self.wanted = tuple(wanted)
        self._joints: dict[str, _Joint] = {}
        self._last: JointReading | None = None
        self._broken: JointReading | None = None

    def add(self, reading: JointReading) -> None:
        """One received message's names and positions."""
        self._last = reading
        names = list(reading.names)
        if (len(set(names)) < len(names) or len(reading.positions) < len(names) or undecodable(names)):
            self._broken = reading
            return
        self._broken = None
        for name, position in zip(names, reading.positions):
            self._joints[name] = _Joint(float(position), reading.effective_ns, reading.recv_ns, reading.stamp_ns != 0)

    def reading(self) -> JointReading | None:
        """What the tick reads now (None before any message).

        Until every wanted joint has arrived, every joint seen so far stamped as the latest message:
        the tick then says which joints are missing (and which there are) before judging ages.
        """
        if self._last is None or not self.wanted:
            return self._last
        if self._broken is not None:
            return self._broken
        names = list(self._joints)
        if any(n not in self._joints for n in self.wanted):
            return JointReading(self._last.stamp_ns, self._last.recv_ns, names,
                                [self._joints[n].position for n in names])
        present = [self._joints[n] for n in self.wanted]
        oldest = min(present, key=lambda j: j.effective_ns)
        stale = [n for n in self.wanted if self._joints[n].effective_ns == oldest.effective_ns]
        merged = len({j.effective_ns for j in present}) > 1
        # An unstamped joint makes the state unstamped (stamp 0), judged by the oldest arrival, as
        # a single unstamped message is: the tick then says so.
        unstamped = not all(j.stamped for j in present)
        return JointReading(0 if unstamped else oldest.effective_ns,
                            oldest.effective_ns if unstamped else min(j.recv_ns for j in present), names,
                            [self._joints[n].position for n in names],
                            oldest_joints=tuple(stale) if merged else ())
