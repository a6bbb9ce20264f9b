"""recorder_node records real DDS traffic from another process into a bag rosbags and mcap read.

Two real processes (the recorder and test/helpers/ros_talker.py) over Fast DDS on a domain of
this test's own; every wait is on a log line or an exit, with a timeout.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from ros_processes import Probe, Proc

pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parents[1]
TALKER = Path(__file__).parent / "helpers" / "ros_talker.py"
N = 20


def _recorder(env: dict[str, str], out: Path, *extra: str) -> Proc:
    return Proc([sys.executable, "-m", "pai_ros.ros.recorder_node", "--ros-args", "-p", f"output:={out}",
                  "-p", "discovery_period_s:=0.1", *extra], env)


def _read_rosbags(bag: Path) -> dict[str, list]:
    from rosbags.rosbag2 import Reader

    from pai_ros.bags.typestore import typestore

    store = typestore()
    out: dict[str, list] = {}
    with Reader(bag) as reader:
        for conn, _t, raw in reader.messages():
            out.setdefault(conn.topic, []).append(store.deserialize_cdr(raw, conn.msgtype))
    return out


def _read_mcap(bag: Path) -> Counter:
    """Messages per topic as the independent mcap + mcap_ros2 decoder sees them (decoding each)."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    counts: Counter = Counter()
    for f in sorted(bag.glob("*.mcap")):
        with f.open("rb") as stream:
            for _s, channel, _m, _decoded in make_reader(stream, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
                counts[channel.topic] += 1
    return counts


def _record_session(ros_env: dict[str, str], tmp_path: Path, sig: int, ns: str = "") -> tuple[Proc, Path, dict]:
    """Recorder + talker: N messages on every topic, `features` appearing only later; stop with sig."""
    out = tmp_path / "bag"
    remap = ["-r", f"__ns:={ns}"] if ns else []
    rec = _recorder(ros_env, out, "-p", "camera_topics:=[camera/front/image_raw]", "-p", "record_heatmaps:=true",
                    *remap)
    talker = None
    prefix = ns or ""
    try:
        rec.wait_for_line(lambda s: "recording to" in s)
        talker = Proc([sys.executable, str(TALKER), "--count", str(N), "--delayed", "features",
                        "--camera", "camera/front/image_raw", "--heatmap", "attention/front/heatmap",
                        "--ros-args", *remap], ros_env, stdin=True)
        talker.wait_for_line(lambda s: s.startswith("READY"))
        first = [f"{prefix}/joint_states", f"{prefix}/action", "/diagnostics", f"{prefix}/camera/front/image_raw",
                 f"{prefix}/attention/front/heatmap"]
        for topic in first:
            rec.wait_for_line(lambda s, t=topic: f"subscribed to {t} [" in s)
            rec.wait_for_line(lambda s, t=topic: f"matched 1 publisher(s) on {t}" in s)
        talker.send("GO")
        talker.wait_for_line(lambda s: s.startswith("READY") and "features" in s)
        rec.wait_for_line(lambda s: f"subscribed to {prefix}/features [pai_ros/msg/FeatureActivations]" in s)
        rec.wait_for_line(lambda s: f"matched 1 publisher(s) on {prefix}/features" in s)
        talker.send("GO")
        assert talker.wait() == 0, "\n".join(talker.lines)
        published = json.loads(talker.lines[-1])
        rec.popen.send_signal(sig)
        assert rec.wait() == 0, "\n".join(rec.lines)
    finally:
        rec.kill()
        if talker:
            talker.kill()
    return rec, out, published


def _check_bag(rec: Proc, out: Path, published: dict, prefix: str = "") -> None:
    topics = {f"{prefix}/joint_states", f"{prefix}/action", f"{prefix}/features", "/diagnostics",
              f"{prefix}/camera/front/image_raw", f"{prefix}/attention/front/heatmap"}
    assert set(published) == topics and set(published.values()) == {N}
    msgs = _read_rosbags(out)
    assert _read_mcap(out) == Counter({t: len(m) for t, m in msgs.items()})
    # The recorder's own status reports are on /diagnostics too (recorded once the talker published there).
    status = f"{prefix.lstrip('/')}/recorder_node: bag" if prefix else "recorder_node: bag"  # the namespace too
    own = [m for m in msgs["/diagnostics"] if m.status[0].name == status]
    msgs["/diagnostics"] = [m for m in msgs["/diagnostics"] if m.status[0].name != status]
    assert all(m.status[0].message.startswith("recording ") for m in own), [m.status[0].message for m in own]
    counts = {t: len(m) for t, m in msgs.items()}
    # Reliable topics must be complete. Camera and heatmap topics are best effort: on localhost we
    # expect every message too, and a loss fails here with the counts rather than being hidden.
    assert counts == {t: N for t in topics}, counts
    assert [m.header.stamp.sec for m in msgs[f"{prefix}/action"]] == list(range(1000, 1000 + N))
    assert [list(m.position) for m in msgs[f"{prefix}/joint_states"]][3] == [3.0, 3.5, -3.0]
    assert [int(m.feature_indices[0]) for m in msgs[f"{prefix}/features"]] == list(range(N))
    assert msgs["/diagnostics"][5].status[0].name == "pai/test5"
    img = msgs[f"{prefix}/camera/front/image_raw"][0]
    assert (img.height, img.width, img.encoding, int(img.data[0])) == (48, 64, "rgb8", 7)
    for topic in topics:
        line = rec.wait_for_line(lambda s, t=topic: f"summary {t} [" in s, timeout=1)
        n = N + len(own) if topic == "/diagnostics" else N
        assert f"received {n}, written {n}" in line and "[INFO]" in line, line
    rec.wait_for_line(lambda s: f"summary {prefix}/attention/shares: never published" in s and "[WARN]" in s, timeout=1)
    rec.wait_for_line(lambda s: "bag closed:" in s, timeout=1)
    assert not any("Traceback" in s or "DeprecationWarning" in s for s in rec.lines)
    # The bag's metadata is what ros2 bag play reads: v8, mcap, cdr, QoS of the publishers.
    meta = (out / "metadata.yaml").read_text()
    assert "storage_identifier: mcap" in meta and "version: 8" in meta and "serialization_format: cdr" in meta


def test_records_every_topic_including_late_ones_and_stops_on_sigint(ros_env: dict[str, str], tmp_path: Path) -> None:
    rec, out, published = _record_session(ros_env, tmp_path, signal.SIGINT)
    _check_bag(rec, out, published)
    from rosbags.rosbag2 import Reader

    with Reader(out) as reader:
        qos = {c.topic: c.ext.offered_qos_profiles for c in reader.connections}
    assert qos["/joint_states"][0].reliability.name == "RELIABLE"
    assert qos["/camera/front/image_raw"][0].reliability.name == "BEST_EFFORT"
    # The recorded bag converts: recorder -> bag2parquet end to end.
    from pai_ros.bags.to_parquet import bag_to_parquet

    summary = bag_to_parquet(out, tmp_path / "parquet", progress=False)
    diagnostics = summary.tables.pop("diagnostics.parquet")
    assert summary.tables == {"features.parquet": N, "actions.parquet": N, "joint_states.parquet": N,
                              "frames.parquet": 2 * N}
    assert diagnostics >= N  # the talker's N, and the recorder's own reports
    assert {t: v.frames for t, v in summary.videos.items()} == {"/camera/front/image_raw": N,
                                                                 "/attention/front/heatmap": N}


def test_sigterm_closes_the_bag_too_and_namespacing_applies(ros_env: dict[str, str], tmp_path: Path) -> None:
    rec, out, published = _record_session(ros_env, tmp_path, signal.SIGTERM, ns="/robot1")
    _check_bag(rec, out, published, prefix="/robot1")


def test_existing_output_is_refused_with_one_line(ros_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "bag"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rec = _recorder(ros_env, out)
    try:
        rc = rec.wait(timeout=60)
    finally:
        rec.kill()
    assert rc == 1
    lines = [s for s in rec.lines if s.strip()]
    assert len(lines) == 1 and lines[0].startswith("recorder_node: error: ") and "already exists" in lines[0], lines
    assert (out / "keep.txt").read_text() == "mine" and sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_missing_output_parameter_is_one_line(ros_env: dict[str, str]) -> None:
    proc = subprocess.run([str(REPO / "scripts" / "ros" / "recorder_node")], env=ros_env, capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 1
    lines = [s for s in (proc.stdout + proc.stderr).splitlines() if s.strip()]
    assert len(lines) == 1 and "parameter 'output' is required" in lines[0], lines


@pytest.mark.parametrize("topics, expected", [
    # `-p topics:=[]` left the parameter uninitialised in rclpy: a traceback at start.
    ("[]", "nothing to record: topics and camera_topics are empty"),
    ("['joint_states', 'bad topic']", "'bad topic' is not a valid ROS topic name"),
])
def test_a_topics_list_it_cannot_record_is_one_line_and_no_bag(topics: str, expected: str, ros_env: dict[str, str],
                                                                 tmp_path: Path) -> None:
    rec = _recorder(ros_env, tmp_path / "bag", "-p", f"topics:={topics}")
    try:
        rc = rec.wait(timeout=60)
    finally:
        rec.kill()
    lines = [s for s in rec.lines if s.strip()]
    assert rc == 1 and len(lines) == 1 and lines[0].startswith("recorder_node: error: ") and expected in lines[0], lines
    assert not (tmp_path / "bag").exists()


def test_a_topic_nobody_publishes_is_said_while_recording(ros_env: dict[str, str], tmp_path: Path) -> None:
    """A typo in topics used to record nothing of it for the whole session, and say so at shutdown only.

    /diagnostics says it too: OK while the grace period runs, then WARN naming the topic, and the
    last word after SIGINT is the closed bag, WARN because the topic never came.
    """
    probe = Probe(["/diagnostics:DiagnosticArray"], ros_env)
    rec = _recorder(ros_env, tmp_path / "bag", "-p", "topics:=['joint_state']")
    try:
        def own(level: int | None, text: str):
            return lambda m: any(s["name"] == "recorder_node: bag" and level in (None, s["level"])
                                 and text in s["message"] for s in m["status"])

        first = probe.wait_for(own(None, "recording 0 messages on 0 topic(s)"), 60)
        assert first["status"][0]["values"]["output"] == str(tmp_path / "bag")
        said = rec.wait_for_line(lambda s: "no publisher on /joint_state after 5 s" in s, 60)
        assert "[WARN]" in said and "a typo in topics?" in said
        probe.wait_for(own(1, "no publisher on /joint_state"), 30)
        rec.popen.send_signal(signal.SIGINT)
        assert rec.wait(timeout=60) == 0
        last = probe.wait_for(own(1, "bag closed:"), 30)
        assert "never published: /joint_state" in last["status"][0]["message"]
    finally:
        rec.kill()
        probe.kill()
