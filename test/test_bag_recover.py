"""pai bag recover on real MCAP files that are unfinished, truncated or damaged (no ROS needed).

The "killed" bags are what BagWriter leaves on disk while it is still writing (a copy of the
bag folder taken between writes is byte for byte what a SIGKILL at that moment leaves: every
flushed byte is in the file). test_recorder_faults.py does the same with a real recorder process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pai_ros.bags.mcap_scan import McapScanner
from pai_ros.bags.recover import recover_bag, storage_files
from pai_ros.bags.typestore import typestore
from pai_ros.bags.writer import BagWriter
from pai_ros.errors import UserError

REPO = Path(__file__).resolve().parents[1]
STORE = typestore()
T = STORE.types
JS = "sensor_msgs/msg/JointState"
TOPICS = ("/joint_states", "/action")


def joint_state(i: int) -> bytes:
    """Message i carries its sequence number in stamp.sec and position[0]."""
    msg = T[JS](header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=i, nanosec=0), frame_id=""),
                name=["x"], position=np.array([float(i)]), velocity=np.array([], float), effort=np.array([], float))
    return STORE.serialize_cdr(msg, JS)


def write(w: BagWriter, i: int) -> None:
    for topic in TOPICS:
        w.write(topic, JS, joint_state(i), 1_000_000 + i)


def read_bag(bag: Path) -> dict[str, list[int]]:
    """Sequence numbers per topic, read back by rosbags (a complete bag is required for that)."""
    from rosbags.rosbag2 import Reader

    out: dict[str, list[int]] = {}
    with Reader(bag) as reader:
        for conn, t, raw in reader.messages():
            msg = STORE.deserialize_cdr(raw, conn.msgtype)
            assert t == 1_000_000 + msg.header.stamp.sec  # bag time kept
            out.setdefault(conn.topic, []).append(msg.header.stamp.sec)
    return out


def killed_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def killed_recording(tmp_path: Path, messages: int = 5, silent: tuple[str, ...] = ()) -> Path:
    """What a recorder killed after flushing ``messages`` per topic leaves; ``silent``: topics subscribed
    (declared) that received nothing."""
    w = BagWriter(tmp_path / "bag", flush_period_s=0)
    for topic in silent:
        w.add_topic(topic, "std_msgs/msg/String")
    for i in range(messages):
        write(w, i)
    w.flush()
    killed = killed_copy(tmp_path / "bag", tmp_path / "killed")
    w.close()
    return killed


def test_a_killed_recover_leaves_nothing_behind_after_the_next(tmp_path: Path) -> None:
    """The hidden staging folder of a recover that was killed goes when the same output is recovered again."""
    killed = killed_recording(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    left = tmp_path / f".killed_recovered.partial-{int(dead.stdout)}"  # a pid whose process has exited
    (left / "killed_recovered_0").mkdir(parents=True)
    (left / "killed_recovered_0" / "killed_recovered_0.mcap").write_bytes(b"half")
    report = recover_bag(killed)
    assert read_bag(report.output) == {t: list(range(5)) for t in TOPICS}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag", "killed", "killed_recovered"]


def test_a_recorded_topic_with_no_message_is_in_the_recovered_bag(tmp_path: Path) -> None:
    from rosbags.rosbag2 import Reader

    killed = killed_recording(tmp_path, silent=("/silent",))
    report = recover_bag(killed)
    assert {t: r.messages for t, r in report.topics.items()} == {"/silent": 0, **{t: 5 for t in TOPICS}}
    with Reader(report.output) as reader:
        assert {c.topic: c.msgcount for c in reader.connections} == {"/silent": 0, **{t: 5 for t in TOPICS}}
        assert next(c for c in reader.connections if c.topic == "/silent").msgtype == "std_msgs/msg/String"


def test_a_topic_declared_before_a_kill_with_nothing_flushed_since_is_in_the_recovered_bag(tmp_path: Path) -> None:
    """Its channel record waited in memory for the next chunk: a recorder killed before that chunk left
    no trace of the topic it had subscribed to."""
    w = BagWriter(tmp_path / "bag", flush_period_s=0)
    write(w, 0)
    w.flush()
    w.add_topic("/silent", "std_msgs/msg/String")
    write(w, 1)  # not flushed: lost on a kill
    killed = killed_copy(tmp_path / "bag", tmp_path / "killed")
    w.close()
    report = recover_bag(killed)
    assert {t: r.messages for t, r in report.topics.items()} == {"/silent": 0, **{t: 1 for t in TOPICS}}


def test_unfinished_bag_recovers_exactly_what_was_flushed(tmp_path: Path) -> None:
    w = BagWriter(tmp_path / "bag", flush_period_s=0)  # flush only when told: the test decides
    for i in range(30):
        write(w, i)
        if i in (9, 19):
            w.flush()
    assert w.durable_counts == {t: 20 for t in TOPICS}
    killed = killed_copy(tmp_path / "bag", tmp_path / "killed")  # messages 20..29 never left memory
    w.close()
    assert not (killed / "metadata.yaml").exists() and [p.relative_to(killed) for p in storage_files(killed)] == [
        Path("bag_0/bag_0.mcap")]

    report = recover_bag(killed)
    assert report.output == tmp_path / "killed_recovered"
    assert {t: r.messages for t, r in report.topics.items()} == {t: 20 for t in TOPICS}
    assert report.complete_until_ns == 1_000_000 + 19
    assert [(f.complete, f.good_bytes == f.size) for f in report.files] == [(False, True)]
    assert read_bag(report.output) == {t: list(range(20)) for t in TOPICS}
    # The original is untouched, and the recovered bag is a complete bag like any other.
    assert sorted(p.name for p in killed.rglob("*")) == ["bag_0", "bag_0.mcap"]
    assert sorted(p.name for p in report.output.iterdir()) == ["killed_recovered_0.mcap", "metadata.yaml"]


def test_flush_period_bounds_what_a_kill_loses(tmp_path: Path) -> None:
    # A period shorter than any gap between writes: every write is flushed at once.
    w = BagWriter(tmp_path / "eager", flush_period_s=1e-9)
    for i in range(5):
        write(w, i)
        assert w.durable_counts == {t: i + 1 for t in TOPICS}
    report = recover_bag(killed_copy(tmp_path / "eager", tmp_path / "eager_killed"))
    assert read_bag(report.output) == {t: list(range(5)) for t in TOPICS}
    w.close()
    # An hour-long period and small messages: nothing reaches the file before close.
    w = BagWriter(tmp_path / "lazy", flush_period_s=3600)
    for i in range(5):
        write(w, i)
    assert w.durable_counts == {}
    with pytest.raises(UserError, match="no readable message"):
        recover_bag(killed_copy(tmp_path / "lazy", tmp_path / "lazy_killed"))
    assert not (tmp_path / "lazy_killed_recovered").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind
    w.close()


def test_every_truncation_point_gives_a_prefix(tmp_path: Path) -> None:
    w = BagWriter(tmp_path / "bag", flush_period_s=1e-9)  # one chunk per message
    for i in range(12):
        write(w, i)
    w.close()
    (path,) = w.files
    data = path.read_bytes()
    chunks = _chunk_offsets(path)
    assert len(chunks) == 24  # one chunk per message, in writing order
    last_chunk_end = _chunk_offsets(path, ends=True)[-1]
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data)
    following = 24
    in_order = [(topic, joint_state(i)) for i in range(12) for topic in TOPICS]
    # Every length from the whole file down to nothing (truncating one copy step by step).
    for size in range(len(data), -1, -1):
        os.truncate(cut, size)
        scanner = McapScanner(cut)
        got = [(ch.topic, raw) for ch, _t, raw in scanner.messages()]
        # Exactly the first len(got) messages in writing order, never anything else.
        assert got == in_order[:len(got)], size
        assert len(got) <= following and scanner.scan.good_bytes <= size
        assert scanner.scan.complete == (size == len(data))
        assert (len(got) == 24) == (size >= last_chunk_end)  # all of them once the last chunk is whole
        following = len(got)
    assert following == 0
    # One of them end to end, through the command line: report lines match what a reader reads.
    cut.write_bytes(data[: chunks[7] + 20])  # inside the 8th chunk: 7 whole messages before it
    proc = subprocess.run([sys.executable, "-m", "pai_ros.cli", "bag", "recover", str(cut), "-o",
                           str(tmp_path / "rec")], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    got = read_bag(tmp_path / "rec")
    assert got == {"/joint_states": [0, 1, 2, 3], "/action": [0, 1, 2]}
    for topic, seq in got.items():
        assert f"{topic} [{JS}]: {len(seq)} messages recovered" in proc.stdout
    assert f"readable up to byte {chunks[7]} of {chunks[7] + 20}, then record 0x06" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith(
        f"pai bag recover: 7 messages on 2 topics up to bag time {1_000_000 + 3} ns")


def _chunk_offsets(path: Path, ends: bool = False) -> list[int]:
    """Byte offsets where the chunk records start (or end), from the file's own summary (mcap library)."""
    from mcap.reader import make_reader

    with path.open("rb") as f:
        summary = make_reader(f).get_summary()
    return sorted(ci.chunk_start_offset + (ci.chunk_length if ends else 0) for ci in summary.chunk_indexes)


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_damage_in_the_middle_stops_before_it(tmp_path: Path, compression: str) -> None:
    w = BagWriter(tmp_path / "bag", flush_period_s=1e-9, compression=compression)
    for i in range(10):
        write(w, i)
    w.close()
    (path,) = w.files
    chunks = _chunk_offsets(path)
    assert len(chunks) == 20  # every message is flushed in a chunk of its own, in writing order
    data = bytearray(path.read_bytes())
    at = chunks[12]  # message 6 of the first topic
    # Corrupt the chunk's records_length (compressed size) field: 9 (record header) + 8+8+8+4
    # + 4+len(compression) bytes into the record.
    field = at + 9 + 28 + 4 + (0 if compression == "none" else 4)
    data[field:field + 8] = (10**6).to_bytes(8, "little")
    damaged = tmp_path / "damaged.mcap"
    damaged.write_bytes(bytes(data))
    report = recover_bag(damaged, tmp_path / "rec")
    assert read_bag(tmp_path / "rec") == {t: list(range(6)) for t in TOPICS}
    assert report.files[0].good_bytes == at and not report.files[0].complete
    assert {t: r.messages for t, r in report.topics.items()} == {t: 6 for t in TOPICS}


def test_crc_mismatch_rejects_the_chunk(tmp_path: Path) -> None:
    """A file from another writer (the mcap library, which stores chunk CRCs) with one payload byte flipped."""
    from mcap.writer import CompressionType, Writer

    msgdef, _ = STORE.generate_msgdef(JS, ros_version=2)
    path = tmp_path / "other.mcap"
    with path.open("wb") as f:
        writer = Writer(f, chunk_size=200, compression=CompressionType.NONE)  # small chunks: several messages per chunk, several chunks
        writer.start(profile="ros2", library="test")
        sid = writer.register_schema(JS, "ros2msg", msgdef.encode())
        cid = writer.register_channel("/joint_states", "cdr", sid)
        payloads = [joint_state(i) for i in range(20)]
        for i, raw in enumerate(payloads):
            writer.add_message(cid, log_time=1_000_000 + i, data=raw, publish_time=1_000_000 + i)
        writer.finish()
    whole = recover_bag(path, tmp_path / "whole", force=True)
    assert whole.files[0].complete and read_bag(tmp_path / "whole") == {"/joint_states": list(range(20))}
    chunks = _chunk_offsets(path)
    assert len(chunks) >= 3
    data = bytearray(path.read_bytes())
    # The last payload byte of message 12 is inside one of the middle chunks; flip it.
    target = data.find(payloads[12], chunks[1]) + len(payloads[12]) - 1
    assert target > chunks[1]
    data[target] ^= 0xFF
    damaged = tmp_path / "flipped.mcap"
    damaged.write_bytes(bytes(data))
    report = recover_bag(damaged, tmp_path / "rec")
    seq = read_bag(tmp_path / "rec")["/joint_states"]
    bad_chunk = max(c for c in chunks if c < target)
    assert report.files[0].good_bytes == bad_chunk and "CRC" in report.files[0].problem
    assert seq == list(range(len(seq))) and len(seq) <= 12


def test_split_bag_keeps_complete_files_and_the_flushed_part_of_the_last(tmp_path: Path) -> None:
    w = BagWriter(tmp_path / "bag", flush_period_s=0, max_bag_size_mb=0.0005)  # ~520 bytes per file
    for i in range(40):
        write(w, i)
    w.flush()
    write(w, 40)  # not flushed: lost on a kill
    killed = killed_copy(tmp_path / "bag", tmp_path / "killed")
    w.close()
    files = storage_files(killed)
    assert len(files) >= 3 and files[-1].parent.name == files[-1].stem  # complete files, then the working one
    report = recover_bag(killed, tmp_path / "rec")
    assert [f.complete for f in report.files] == [True] * (len(files) - 1) + [False]
    assert read_bag(tmp_path / "rec") == {t: list(range(40)) for t in TOPICS}
    assert {t: r.messages for t, r in report.topics.items()} == {t: 40 for t in TOPICS}


def test_an_earlier_split_damaged_mid_way_ends_what_is_complete(tmp_path: Path) -> None:
    """The messages of later files are kept, but the recording is complete only up to the damage: the
    report said "up to" the newest message of all, hiding the gap. A file cut after its data section
    (only its index lost) lost no message: no gap."""
    w = BagWriter(tmp_path / "bag", flush_period_s=1e-9, max_bag_size_mb=0.001)  # a chunk per message, 4 files
    for i in range(40):
        write(w, i)
    w.close()
    first, *later = storage_files(tmp_path / "bag")
    chunk_ends = _chunk_offsets(first, ends=True)
    data = first.read_bytes()
    summary_start = int.from_bytes(data[-28:-20], "little")  # the footer's first field, after the data end
    assert later and len(chunk_ends) >= 4
    in_first = len(chunk_ends) // 2  # whole messages of both topics, in writing order

    def recover(cut_at: int, out: str) -> tuple[dict[str, list[int]], str]:
        shutil.copytree(tmp_path / "bag", tmp_path / f"{out}_bag")
        os.truncate(tmp_path / f"{out}_bag" / first.name, cut_at)
        proc = subprocess.run([sys.executable, "-m", "pai_ros.cli", "bag", "recover", str(tmp_path / f"{out}_bag"),
                               "-o", str(tmp_path / out)], capture_output=True, text=True, timeout=120, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        return read_bag(tmp_path / out), proc.stdout.strip().splitlines()[-1]

    got, line = recover(chunk_ends[2 * (in_first // 2) - 1] + 3, "mid")
    firsts = list(range(in_first // 2))  # the first file's messages up to the damage
    assert got["/joint_states"][:len(firsts)] == firsts and got["/joint_states"][len(firsts)] > len(firsts)
    later_messages = sum(sum(1 for _ in McapScanner(p).messages()) for p in later)
    assert f"up to bag time {1_000_000 + firsts[-1]} ns" in line, line
    assert f", then a gap; {later_messages} of them from later files -> " in line, line
    assert summary_start > chunk_ends[-1]
    got, line = recover(summary_start + 5, "index")
    assert got == {t: list(range(40)) for t in TOPICS}
    assert f"up to bag time {1_000_000 + 39} ns" in line and "gap" not in line, line
    report = recover_bag(tmp_path / "index_bag", tmp_path / "index_again")
    assert report.lines()[0].endswith(f"every message readable; its index is damaged at byte {summary_start} of "
                                      f"{summary_start + 5} (ends inside a record header at byte {summary_start})")


def test_bag2parquet_refuses_the_unfinished_bag_and_converts_the_recovered_one(tmp_path: Path) -> None:
    w = BagWriter(tmp_path / "bag", flush_period_s=1e-9)
    for i in range(8):
        w.write("/action", JS, joint_state(i), 1_000_000 + i)
    killed = killed_copy(tmp_path / "bag", tmp_path / "killed")
    w.close()
    for bag in (killed, killed / "bag_0" / "bag_0.mcap"):
        proc = subprocess.run([sys.executable, "-m", "pai_ros.cli", "bag2parquet", str(bag), str(tmp_path / "pq")],
                              capture_output=True, text=True, timeout=120, cwd=REPO)
        lines = [s for s in proc.stderr.splitlines() if s.strip()]
        assert proc.returncode == 1 and len(lines) == 1 and "pai bag recover" in lines[0], proc.stderr
        assert not (tmp_path / "pq").exists()
    report = recover_bag(killed)
    from pai_ros.bags.to_parquet import bag_to_parquet

    summary = bag_to_parquet(report.output, tmp_path / "pq", progress=False)
    assert summary.tables == {"actions.parquet": 8}


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    w = BagWriter(tmp_path / "bag")
    write(w, 0)
    w.close()
    (tmp_path / "exists").mkdir()
    (tmp_path / "not_a_bag").mkdir()
    (tmp_path / "garbage.mcap").write_bytes(b"hello, not an mcap file")

    def pai(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pai_ros.cli", "bag", "recover", *args], capture_output=True,
                              text=True, timeout=120, cwd=REPO)

    complete = pai(str(tmp_path / "bag"))
    assert complete.returncode == 0 and "nothing to recover" in complete.stdout
    assert not (tmp_path / "bag_recovered").exists()
    cases = [
        ((str(tmp_path / "missing"),), "bag not found"),
        ((str(tmp_path / "not_a_bag"),), "holds no .mcap file"),
        ((str(tmp_path / "garbage.mcap"), "-o", str(tmp_path / "g")), "no readable message"),
        ((str(tmp_path / "bag"), "--force", "-o", str(tmp_path / "exists")), "already exists"),
        ((str(tmp_path / "bag"), "--force", "-o", str(tmp_path / "bag" / "inside")), "is inside the bag"),
    ]
    for args, text in cases:
        proc = pai(*args)
        lines = [s for s in proc.stderr.splitlines() if s.strip()]
        assert proc.returncode == 1 and len(lines) == 1 and text in lines[0], (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag", "exists", "garbage.mcap", "not_a_bag"]
    forced = pai(str(tmp_path / "bag"), "--force")
    assert forced.returncode == 0 and read_bag(tmp_path / "bag_recovered") == {t: [0] for t in TOPICS}
    # A metadata.yaml that does not parse makes the bag unreadable (bag2parquet sends the user here):
    # not "complete, nothing to recover", which would send them round in a circle.
    shutil.rmtree(tmp_path / "bag_recovered")
    (tmp_path / "bag" / "metadata.yaml").write_text("rosbag2_bagfile_information: [")
    broken = pai(str(tmp_path / "bag"))
    assert broken.returncode == 0 and "nothing to recover" not in broken.stdout, broken.stdout
    assert read_bag(tmp_path / "bag_recovered") == {t: [0] for t in TOPICS}


def test_progress_bar_counts_every_byte_and_stays_silent_on_quick_work(tmp_path: Path, monkeypatch, capsys) -> None:
    from tqdm import tqdm

    import pai_ros.bags.recover as recover_module

    w = BagWriter(tmp_path / "bag", flush_period_s=1e-9)
    for i in range(20):
        w.write("/action", JS, joint_state(i), 1_000_000 + i)
    killed = killed_copy(tmp_path / "bag", tmp_path / "killed")
    w.close()
    size = sum(p.stat().st_size for p in storage_files(killed))
    recover_bag(killed, tmp_path / "quick", progress=True)  # well under the delay: no bar
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(recover_module, "PROGRESS_DELAY_S", 0.0)
    report = recover_bag(killed, tmp_path / "shown", progress=True)
    err = capsys.readouterr().err
    assert report.messages == 20 and "pai bag recover: 100%" in err, err
    shown = tqdm.format_sizeof(size)
    assert f"{shown}/{shown}" in err, (size, err)  # every byte of the storage files, damaged rest included
