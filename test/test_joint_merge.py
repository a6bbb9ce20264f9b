"""joint_states from several publishers, merged by name (pai_ros.live.joint_merge), without ROS."""

from __future__ import annotations

from pai_ros.live.inputs import JointReading
from pai_ros.live.joint_merge import JointStateMerge

MS = 1_000_000


def reading(t_ms: int, names: list[str], positions: list[float], stamped: bool = True) -> JointReading:
    return JointReading(t_ms * MS if stamped else 0, t_ms * MS + 2 * MS, names, positions)


def test_arm_and_gripper_publishers_make_one_state_stamped_by_the_older() -> None:
    merge = JointStateMerge(["x", "y", "gripper"])
    assert merge.reading() is None
    merge.add(reading(100, ["x", "y"], [0.1, 0.2]))
    merge.add(reading(90, ["gripper"], [0.7]))
    merge.add(reading(130, ["x", "y"], [0.3, 0.4]))  # the arm moved on; the gripper's 90 ms stands
    got = merge.reading()
    assert dict(zip(got.names, got.positions)) == {"x": 0.3, "y": 0.4, "gripper": 0.7}
    assert got.effective_ns == 90 * MS and got.recv_ns == 92 * MS and got.oldest_joints == ("gripper",)


def test_one_publisher_of_every_joint_is_passed_through_with_nothing_to_name() -> None:
    merge = JointStateMerge(["x", "gripper"])
    merge.add(reading(100, ["gripper", "x", "extra"], [0.5, 0.1, 9.0]))
    got = merge.reading()
    assert got.effective_ns == 100 * MS and got.oldest_joints == ()
    assert dict(zip(got.names, got.positions)) == {"gripper": 0.5, "x": 0.1, "extra": 9.0}


def test_a_joint_never_published_is_left_out_so_the_tick_names_it() -> None:
    merge = JointStateMerge(["x", "y", "gripper"])
    merge.add(reading(100, ["x", "y"], [0.1, 0.2]))
    got = merge.reading()
    assert "gripper" not in got.names and got.effective_ns == 100 * MS


def test_unstamped_messages_count_by_their_receive_time() -> None:
    merge = JointStateMerge(["x", "gripper"])
    merge.add(reading(100, ["x"], [0.1], stamped=False))
    merge.add(reading(120, ["gripper"], [0.2]))
    got = merge.reading()
    assert got.effective_ns == 102 * MS  # x: received at 102 ms, older than the gripper's 120
    assert got.stamp_ns == 0  # unstamped, so that the tick says so


def test_a_broken_message_reaches_the_tick_as_it_is_until_a_sound_one_arrives() -> None:
    merge = JointStateMerge(["x", "gripper"])
    merge.add(reading(100, ["x", "gripper"], [0.1, 0.2]))
    for broken in (reading(110, ["x", "x"], [0.1, 0.3]), reading(110, ["x", "gripper"], [0.1]),
                   reading(110, ["x", "gr\ufffdpper"], [0.1, 0.2])):
        merge.add(broken)
        assert merge.reading() is broken  # the tick's checks say what is wrong with it
    merge.add(reading(120, ["x", "gripper"], [0.5, 0.6]))
    assert merge.reading().positions == [0.5, 0.6]


def test_without_joint_names_the_latest_message_is_read_in_its_own_order() -> None:
    merge = JointStateMerge([])
    merge.add(reading(100, ["x", "y"], [0.1, 0.2]))
    last = reading(110, ["gripper"], [0.7])
    merge.add(last)
    assert merge.reading() is last


def test_a_message_without_names_is_a_reading_without_joints_not_a_crash() -> None:
    """min() of no joints raised in the node's worker thread: the node stopped ticking without a word."""
    merge = JointStateMerge(["a", "b"])
    merge.add(JointReading(0, 100, [], [1.0, 2.0]))
    got = merge.reading()
    assert list(got.names) == [] and got.effective_ns == 100
