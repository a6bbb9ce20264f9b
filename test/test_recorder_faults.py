"""recorder_node under faults: SIGKILL, SIGTERM mid-stream, a full disk, publishers that come and go.

Real processes over Fast DDS (the recorder, test/helpers/seq_publisher.py, a /diagnostics probe),
real files, a real tmpfs for the full disk. Every wait is on a log line, an exit or the bag's
contents, with a timeout. Message i of a publisher carries i in ``header.stamp.sec``, so a
recovered topic must read 0, 1, 2, ... with no gap and nothing else.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pai_ros.bags.mcap_scan import McapScanner
from pai_ros.bags.recover import storage_files
from pai_ros.bags.typestore import typestore
from ros_processes import Probe, Proc

pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parents[1]
SEQ = Path(__file__).parent / "helpers" / "seq_publisher.py"
TOPICS = ("/joint_states", "/action")
STORE = typestore()


def _recorder(env: dict[str, str], out: Path, *extra: str) -> Proc:
    return Proc([sys.executable, "-m", "pai_ros.ros.recorder_node", "--ros-args", "-p", f"output:={out}",
                 "-p", "topics:=[joint_states,action]", "-p", "discovery_period_s:=0.1", *extra], env, "recorder")


def _publisher(env: dict[str, str], rec: Proc, *extra: str, nth: int = 1) -> Proc:
    """A seq_publisher that the recorder has matched on both topics (its ``nth`` match of each)."""
    pub = Proc([sys.executable, str(SEQ), *extra], env, "publisher", stdin=True)
    pub.wait_for_line(lambda s: s.startswith("READY"))
    for topic in TOPICS:
        _wait_until(lambda t=topic: _count(rec, f"matched 1 publisher(s) on {t}") >= nth,
                    f"the recorder matching publisher {nth} on {topic}", rec)
    pub.send("MATCHED 1")  # and the publisher's side of the match: the graph can be ahead of DDS
    pub.wait_for_line(lambda s: s == "MATCHED")
    return pub


def _count(proc: Proc, text: str) -> int:
    return sum(text in line for line in list(proc.lines))


def _wait_until(condition: Callable[[], bool], what: str, proc: Proc | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tail = "\n".join(proc.lines[-20:]) if proc else ""
            raise TimeoutError(f"no {what} within {timeout} s\n{tail}")
        time.sleep(0.05)


def _on_disk(bag: Path) -> dict[str, list[int]]:
    """Sequence numbers per topic that a kill right now would leave readable (the recovery reader)."""
    out: dict[str, list[int]] = {}
    if not bag.exists():
        return out
    for path in storage_files(bag) if any(bag.rglob("*.mcap")) else []:
        for channel, _t, raw in McapScanner(path).messages():
            out.setdefault(channel.topic, []).append(STORE.deserialize_cdr(raw, "sensor_msgs/msg/JointState").header.stamp.sec)
    return out


def _read_bag(bag: Path) -> dict[str, list[int]]:
    from rosbags.rosbag2 import Reader

    out: dict[str, list[int]] = {}
    with Reader(bag) as reader:
        for conn, _t, raw in reader.messages():
            out.setdefault(conn.topic, []).append(STORE.deserialize_cdr(raw, conn.msgtype).header.stamp.sec)
    return out


def _summary(rec: Proc, what: str) -> dict[str, tuple[int, int]]:
    """(received, written or on disk) per topic from the recorder's summary lines."""
    out = {}
    for line in rec.lines:
        m = re.search(rf"summary (\S+) \[[^\]]+\]: received (\d+), {what} (\d+)", line)
        if m:
            out[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return out


def _recover(bag: Path, out: Path) -> tuple[subprocess.CompletedProcess, dict[str, int]]:
    proc = subprocess.run([sys.executable, "-m", "pai_ros.cli", "bag", "recover", str(bag), "-o", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    reported = {m.group(1): int(m.group(2)) for m in re.finditer(r"(\S+) \[\S+\]: (\d+) messages recovered", proc.stdout)}
    return proc, reported


def _assert_gap_free(got: dict[str, list[int]]) -> None:
    for topic, seq in got.items():
        assert seq == list(range(len(seq))), (topic, seq[:5], len(seq))


def test_sigkill_loses_only_the_unflushed_window_and_recover_salvages_the_rest(ros_env: dict[str, str],
                                                                               tmp_path: Path) -> None:
    out = tmp_path / "bag"
    rec = _recorder(ros_env, out, "-p", "flush_period_s:=0.2")
    pub = None
    try:
        rec.wait_for_line(lambda s: "recording to" in s)
        pub = _publisher(ros_env, rec)
        pub.send("PUB 40 200")
        pub.wait_for_line(lambda s: s == "SENT 40")
        # The publisher idles now: 40 small messages never fill a chunk, so only the periodic
        # flush can put them on disk. A kill after that must lose none of them.
        _wait_until(lambda: _on_disk(out) == {t: list(range(40)) for t in TOPICS}, "flush of the burst", rec)
        pub.send("PUB 100000 100")  # and now data is flowing when the kill comes
        _wait_until(lambda: min(map(len, _on_disk(out).values())) >= 70, "flushes while data flows", rec)
        rec.popen.kill()
        assert rec.wait() == -signal.SIGKILL
    finally:
        rec.kill()
        if pub:
            pub.kill()
    assert not (out / "metadata.yaml").exists()  # what a kill leaves: an unfinished bag

    _proc, reported = _recover(out, tmp_path / "recovered")
    got = _read_bag(tmp_path / "recovered")
    _assert_gap_free(got)
    assert set(got) == set(TOPICS) and min(map(len, got.values())) >= 70
    assert reported == {t: len(seq) for t, seq in got.items()}  # the report says what a reader reads
    assert got == _on_disk(out)  # everything the killed recorder had flushed, nothing else
    # The recovered bag converts like any other.
    from pai_ros.bags.to_parquet import bag_to_parquet

    summary = bag_to_parquet(tmp_path / "recovered", tmp_path / "parquet", progress=False)
    assert summary.tables == {"actions.parquet": len(got["/action"]), "joint_states.parquet": len(got["/joint_states"])}


def test_sigterm_while_data_flows_writes_everything_received(ros_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "bag"
    rec = _recorder(ros_env, out)
    pub = None
    try:
        rec.wait_for_line(lambda s: "recording to" in s)
        pub = _publisher(ros_env, rec)
        pub.send("PUB 100000 100")
        _wait_until(lambda: min(map(len, _on_disk(out).values()), default=0) >= 30, "data flowing", rec)
        rec.popen.send_signal(signal.SIGTERM)
        assert rec.wait() == 0, "\n".join(rec.lines)
    finally:
        rec.kill()
        if pub:
            pub.kill()
    counts = _summary(rec, "written")
    assert set(counts) == set(TOPICS) and all(received == written for received, written in counts.values()), counts
    got = _read_bag(out)
    _assert_gap_free(got)  # reliable topics: in order, from the first message, none missing
    assert {t: len(seq) for t, seq in got.items()} == {t: n for t, (n, _) in counts.items()}
    assert not any("Traceback" in s for s in rec.lines)


def test_publisher_that_leaves_and_comes_back_is_recorded_both_times(ros_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "bag"
    rec = _recorder(ros_env, out)
    pubs: list[Proc] = []
    try:
        rec.wait_for_line(lambda s: "recording to" in s)
        for nth, n in ((1, 25), (2, 30)):
            pub = _publisher(ros_env, rec, nth=nth)
            pubs.append(pub)
            pub.send(f"PUB {n} 200")
            pub.send("WAIT")
            pub.wait_for_line(lambda s: s == "ACKED")  # the recorder has every message
            pub.popen.stdin.close()
            assert pub.wait() == 0, "\n".join(pub.lines)
            for topic in TOPICS:  # the topic is gone from the graph before the next publisher comes
                _wait_until(lambda t=topic, k=nth: _count(rec, f"matched 0 publisher(s) on {t}") >= k,
                            f"the recorder seeing publisher {nth} leave {topic}", rec)
        rec.popen.send_signal(signal.SIGINT)
        assert rec.wait() == 0, "\n".join(rec.lines)
    finally:
        rec.kill()
        for pub in pubs:
            pub.kill()
    assert _summary(rec, "written") == {t: (55, 55) for t in TOPICS}
    assert _read_bag(out) == {t: list(range(25)) + list(range(30)) for t in TOPICS}
    assert all(_count(rec, f"subscribed to {t} [") == 1 for t in TOPICS)  # one subscription throughout


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 256 KiB tmpfs: a real full disk (needs root and permission to mount)."""
    mnt = tmp_path / "tiny_disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True,
                          text=True, timeout=30)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the disk-full test (needs root and mount permission): "
                    f"{proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=30)


def test_disk_full_is_one_error_a_diagnostic_and_exit_1_and_the_rest_recovers(ros_env: dict[str, str],
                                                                              tmp_path: Path, tiny_disk: Path) -> None:
    out = tiny_disk / "bag"
    probe = Probe(["/diagnostics:DiagnosticArray"], ros_env)
    rec = _recorder(ros_env, out, "-p", "flush_period_s:=0.1")
    pub = None
    try:
        rec.wait_for_line(lambda s: "1 subscriber(s) for status reports on /diagnostics" in s)
        pub = _publisher(ros_env, rec, "--payload", "2000")
        pub.send("PUB 100000 200")  # about 800 KB/s: the disk is full within a second
        assert rec.wait(timeout=60) == 1, "\n".join(rec.lines)
        diag = probe.wait_for(lambda m: any(s["level"] == 2 for s in m["status"]), timeout=30)
    finally:
        rec.kill()
        probe.kill()
        if pub:
            pub.kill()
    errors = [s for s in rec.lines if "[ERROR]" in s]
    assert len(errors) == 1 and f"cannot write the bag {out}: no space left on device" in errors[0], rec.lines
    assert not any("Traceback" in s for s in rec.lines)
    (status,) = diag["status"]
    assert status["name"] == "recorder_node: bag" and "no space left on device" in status["message"]
    assert status["values"]["output"] == str(out) and status["values"]["errno"] == "28"
    on_disk = {t: n for t, (_, n) in _summary(rec, "on disk").items()}
    assert set(on_disk) == set(TOPICS) and min(on_disk.values()) > 0, rec.lines
    assert int(status["values"]["messages_on_disk"]) == sum(on_disk.values())
    # The file was cut back to its last flushed byte: it ends exactly after a whole record.
    (path,) = storage_files(out)
    scanner = McapScanner(path)
    assert sum(1 for _ in scanner.messages()) == sum(on_disk.values())
    assert scanner.scan.good_bytes == scanner.scan.size and not scanner.scan.complete

    _proc, reported = _recover(out, tmp_path / "recovered")  # onto a disk with room
    got = _read_bag(tmp_path / "recovered")
    _assert_gap_free(got)
    assert reported == on_disk == {t: len(seq) for t, seq in got.items()}


def test_a_disk_error_while_declaring_a_topic_stops_the_recording_not_the_topic(ros_env: dict[str, str],
                                                                                 tmp_path: Path) -> None:
    """Declaring a topic writes to the bag (its channel record is flushed at once): a full disk then is the
    recording's write error (ERROR, exit 1), not "cannot record <topic>" while the recorder runs on."""
    import errno
    import textwrap

    script = textwrap.dedent(f"""
        import rclpy
        from pai_ros.bags.errors import BagWriteError
        from pai_ros.ros.recorder_node import RecorderNode

        rclpy.init(args=["--ros-args", "-p", "output:={tmp_path / 'bag'}"])
        node = RecorderNode()
        def full(*_args, **_kwargs):
            raise BagWriteError("cannot write the bag: no space left on device", {errno.ENOSPC})
        node.writer.add_topic = full
        node._subscribe("/joint_states", ["sensor_msgs/msg/JointState"], [])
        print("FATAL", node.ledger.fatal is not None, "REFUSED", sorted(node.ledger.refused), flush=True)
        node.destroy_node()
        rclpy.shutdown()
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ros_env, timeout=120)
    assert "FATAL True REFUSED []" in res.stdout, res.stdout + res.stderr
    assert "no space left on device" in res.stderr and "cannot record /joint_states" not in res.stderr, res.stderr
