"""What the recorder reports, decided without ROS: its /diagnostics status and its closing summary.

The recorder node itself, across real processes (late topics, QoS, a full disk, signals), is
tested in test_recorder_node.py and test_recorder_faults.py; these pin down the words and levels.
"""

from __future__ import annotations

import errno

from pai_ros.bags.errors import BagWriteError
from pai_ros.bags.ledger import RecordingLedger, TopicTally
from pai_ros.diagnostic_level import Level


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _recorded(ledger: RecordingLedger, topic: str, msgtype: str) -> TopicTally:
    tally = TopicTally(topic, msgtype, reliable=True)
    ledger.record(tally)
    return tally


def _ledger(clock: _Clock) -> RecordingLedger:
    return RecordingLedger("/bags/run1", {"/joint_states", "/action", "/typo"}, absent_after_s=5.0, clock=clock)


def test_a_missing_topic_is_said_after_the_grace_period_once_in_the_log_and_in_every_status() -> None:
    clock = _Clock()
    ledger = _ledger(clock)
    _recorded(ledger, "/joint_states", "sensor_msgs/msg/JointState").received = 3
    assert ledger.newly_absent() == [] and ledger.status({"/joint_states": 3})[0] == Level.OK
    clock.now += 5.5
    assert ledger.newly_absent() == ["/action", "/typo"]
    assert ledger.newly_absent() == []  # the log says it once
    level, message, values = ledger.status({"/joint_states": 3})
    assert level == Level.WARN and message == "recording 3 messages on 1 topic(s); no publisher on /action, /typo"
    assert values == {"output": "/bags/run1", "messages_written": "3", "/joint_states": "received 3, written 3"}
    _recorded(ledger, "/action", "std_msgs/msg/Float32MultiArray")
    ledger.refuse("/typo")  # found, but its type cannot be recorded
    level, message, _ = ledger.status({"/joint_states": 3})
    assert level == Level.WARN and message.endswith("; cannot record /typo (see the log)")
    assert ledger.known("/typo") and ledger.known("/action") and not ledger.known("/other")


def test_the_summary_counts_what_was_lost_and_what_never_came() -> None:
    clock = _Clock()
    ledger = _ledger(clock)
    _recorded(ledger, "/joint_states", "sensor_msgs/msg/JointState").received = 10
    _recorded(ledger, "/action", "std_msgs/msg/Float32MultiArray").received = 4
    summary = ledger.summarise({"/joint_states": 10, "/action": 3}, ["run1_0.mcap"])
    assert not summary.ok
    assert summary.lines == [
        (Level.WARN, "summary /action [std_msgs/msg/Float32MultiArray]: received 4, written 3 (1 not written)"),
        (Level.OK, "summary /joint_states [sensor_msgs/msg/JointState]: received 10, written 10"),
        (Level.WARN, "summary /typo: never published while recording; nothing recorded"),
        (Level.OK, "bag closed: /bags/run1 (13 messages on 2 topics; run1_0.mcap)")]
    assert summary.closed == (Level.WARN, "bag closed: /bags/run1 (13 messages on 2 topics; run1_0.mcap); some "
                                          "messages received were not written (see the log); never published: /typo")
    assert ledger.status({"/joint_states": 10, "/action": 3})[:2] == summary.closed  # the last word, from now on


def test_after_a_write_error_the_status_is_an_error_and_the_summary_counts_what_is_on_disk() -> None:
    ledger = _ledger(_Clock())
    _recorded(ledger, "/joint_states", "sensor_msgs/msg/JointState").received = 10
    full = BagWriteError("cannot write the bag /bags/run1: No space left on device", errno.ENOSPC)
    assert ledger.stop_for(full) and not ledger.stop_for(BagWriteError("a later one"))
    level, message, values = ledger.status({"/joint_states": 6})
    assert (level, message) == (Level.ERROR, str(full))
    assert values["errno"] == str(errno.ENOSPC) and values["messages_on_disk"] == "6"
    summary = ledger.summarise({"/joint_states": 6}, ["run1_0.mcap"])
    assert not summary.ok and summary.closed is None
    assert summary.lines[0] == (Level.WARN, "summary /joint_states [sensor_msgs/msg/JointState]: received 10, "
                                            "on disk 6 (4 not written)")
    assert summary.lines[-1] == (Level.WARN, "bag left unfinished: /bags/run1 (6 messages on disk); "
                                             "`pai bag recover /bags/run1` writes them as a complete bag")
    assert ledger.status({"/joint_states": 6})[0] == Level.ERROR  # the error stays the last word
