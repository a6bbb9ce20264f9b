"""A peer that sends joint names which are not valid UTF-8.

Measured (Kilted wheels): rclpy does not raise and the executor goes on; the generated message
code decodes the bad bytes with errors="replace", so the callback sees U+FFFD in the name. The
policy node must then say so (one /diagnostics reason) instead of a puzzling "lacks joint(s)",
publish no action from that state, and act again once the names decode.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ros_processes import Probe

from pai_ros.live.received_text import undecodable, undecodable_reason


def test_undecodable_values_are_named() -> None:
    assert undecodable(["x", "gr\ufffdpper", "y"]) == ["gr\ufffdpper"]
    assert undecodable_reason("joint_states name", ["x", "y"]) is None
    reason = undecodable_reason("joint_states name", ["x", "gr\ufffdpper"])
    assert reason is not None and "\n" not in reason
    assert "joint_states name" in reason and "not valid UTF-8" in reason and "'gr\\ufffdpper'" in reason
    many = undecodable_reason("n", [f"\ufffd{i}" for i in range(7)])
    assert many is not None and "and 3 more" in many


@pytest.mark.ros
def test_rclpy_replaces_invalid_utf8_instead_of_raising() -> None:
    """The fact the node's check relies on (if a distro raised instead, this test says so)."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import JointState

    raw = serialize_message(JointState(name=["x", "gripper"], position=[0.0, 1.0]))
    msg = deserialize_message(raw.replace(b"gripper", b"gr\xffpper"), JointState)
    assert list(msg.name) == ["x", "gr\ufffdpper"] and list(msg.position) == [0.0, 1.0]


@pytest.mark.ros
@pytest.mark.slow
def test_policy_node_names_undecodable_joint_names_and_recovers(tiny_act: Path, ros_env: dict) -> None:
    from test_policy_node import TOPICS, diag, start_node, start_robot

    probe = Probe(TOPICS, ros_env)
    node = start_node(tiny_act, ros_env)
    robot = start_robot(ros_env, "undecodable_name", start=6.0, end=11.0)
    try:
        probe.wait_for(lambda m: m["topic"] == "action", 60)  # healthy first
        fault_ns = int(robot.wait_for_line(lambda s: s.startswith("PHASE fault"), 30).split()[2])
        seen: list[str] = []

        def explained(m: dict) -> bool:
            if m["topic"] != "/diagnostics" or m["recv_ns"] < fault_ns:
                return False
            seen.append(diag(m)["message"])
            return "not valid UTF-8" in diag(m)["message"]

        try:
            bad = probe.wait_for(explained, 20)
        except TimeoutError:
            raise AssertionError(f"no /diagnostics names the undecodable joint name; seen: {sorted(set(seen))}") from None
        assert diag(bad)["level"] == 2 and "gr\\ufffdpper" in diag(bad)["message"]
        after_ns = int(robot.wait_for_line(lambda s: s.startswith("PHASE after"), 30).split()[2])
        probe.wait_for(lambda m: m["topic"] == "action" and m["stamp_ns"] > after_ns, 30)
        during = [m for m in probe.messages("action") if fault_ns + 0.2e9 < m["stamp_ns"] < after_ns]
        assert not during, f"{len(during)} actions from joint states with undecodable names"
    finally:
        for p in (robot, node, probe):
            p.stop()
    assert node.popen.returncode == 0, "\n".join(node.lines[-20:])
