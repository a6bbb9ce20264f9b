"""The live graph as separate processes: replay -> policy (tiny ACT) -> recorder, checked from outside.

Then the recorded bag is read back by rosbags and by the independent mcap library, converted
with `pai bag2parquet`, and `pai demo` runs the same graph in one process on toy demo assets.
"""

import json
import signal
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import run_pai, toy_demo_script
from ros_processes import Probe, Proc

pytestmark = pytest.mark.ros


def _node(module: str, env: dict, *params: str) -> Proc:
    args = [sys.executable, "-m", f"pai_ros.ros.{module}", "--ros-args"]
    for p in params:
        args += ["-p", p]
    return Proc(args, env, module)


def test_replay_policy_recorder_processes(tiny_dataset, tiny_act: Path, tiny_sae: Path, tiny_scene, ros_env: dict,
                                          tmp_path: Path) -> None:
    from mcap_ros2.reader import read_ros2_messages
    from rosbags.highlevel import AnyReader

    root, _ = tiny_dataset
    bag = tmp_path / "bag"
    probe = Probe(["action:JointState", "attention/front/heatmap:Image", "recorded_action:JointState"], ros_env)
    policy = _node("policy_node", ros_env, f"policy_path:={tiny_act}", "control_rate_hz:=15.0",
                   "state_joint_names:=['x', 'y', 'gripper']", "max_observation_age_s:=0.5",
                   f"sae_path:={tiny_sae}")
    recorder = _node("recorder_node", ros_env, f"output:={bag}", "record_heatmaps:=true",
                     "topics:=['joint_states', 'action', 'recorded_action', '/diagnostics', 'attention/shares', 'features']",
                     "camera_topics:=['camera/front/image_raw', 'camera/wrist/image_raw']")
    try:
        policy.wait_for_line(lambda s: "ready:" in s, 90)
        recorder.wait_for_line(lambda s: "recording to" in s, 60)
        replay = _node("replay_node", ros_env, f"dataset_root:={root}", "episodes:=[0, 1]", "start_delay_s:=1.0",
                       "wait_for_subscribers:=2")  # recorder + (policy or probe) on every topic
        assert replay.popen.wait(timeout=120) == 0, "\n".join(replay.lines)
        probe.wait_for(lambda m: m["topic"] == "action", 30)
        heat = probe.wait_for(lambda m: m["topic"] == "attention/front/heatmap", 30)
        assert (heat["encoding"], heat["height"], heat["width"], heat["frame_id"]) == ("rgb8", 64, 80, "front_camera")
        # Every action is stamped with the stamp of a replayed frame (the observation it came from).
        replayed = {m["stamp_ns"] for m in probe.messages("recorded_action")}
        actions = probe.messages("action")
        assert actions and all(a["stamp_ns"] in replayed for a in actions)
        assert actions[0]["name"] == ["x", "y", "gripper"]
    except BaseException:
        recorder.stop()  # a failed test must not leave the recorder running
        raise
    finally:
        policy.stop()
        probe.stop()
    assert recorder.stop(signal.SIGINT, timeout=60) == 0, "\n".join(recorder.lines)
    assert any("bag closed" in line for line in recorder.lines)

    with AnyReader([bag]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts["/recorded_action"] == 2 * tiny_scene.episode_length
    assert counts["/action"] >= 1 and counts["/attention/front/heatmap"] >= 1 and counts["/diagnostics"] >= 1
    mcap_file = next(bag.glob("*.mcap"))
    mcap_topics = {m.channel.topic for m in read_ros2_messages(str(mcap_file))}
    assert {"/action", "/recorded_action", "/camera/front/image_raw", "/attention/wrist/heatmap"} <= mcap_topics

    out = tmp_path / "parquet"
    res = run_pai("bag2parquet", str(bag), str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    actions = pq.read_table(out / "actions.parquet").to_pylist()
    assert len(actions) == counts["/action"] and actions[0]["name"] == ["x", "y", "gripper"]
    frames = pq.read_table(out / "frames.parquet").to_pylist()
    assert {f["topic"] for f in frames} >= {"/camera/front/image_raw", "/attention/front/heatmap"}
    # Live SAE features go through the bag into the same table `pai features record` writes,
    # and the same analysis reads them (no thumbnails: a bag has no token-level codes).
    features = pq.read_table(out / "features.parquet").to_pylist()
    assert counts["/features"] >= 1 and len(features) == counts["/features"]
    assert {f["stamp_ns"] for f in features} <= replayed and features[0]["num_tokens"] == 14
    res = run_pai("features", "analyse", str(out), "--top-features", "3", "--quiet")
    assert res.returncode == 0, res.stderr
    analysis = json.loads((out / "analysis" / "analysis.json").read_text())
    assert analysis["frames"] == len(features) and len(analysis["features"]) == 3
    assert analysis["features"][0]["top_frames"] and analysis["cameras"] == []


@pytest.mark.slow
def test_pai_demo_in_one_process(toy_assets, ros_env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ros_env.items():
        monkeypatch.setenv(k, v)
    # run in a subprocess: rclpy.init reads the domain from the environment at start
    code = toy_demo_script(toy_assets, (
        "from pai_ros.ros.demo import run_demo\n"
        # A quarter of the recorded rate: the test checks the graph, not this (shared) machine's speed.
        f"res = run_demo(pathlib.Path({str(tmp_path / 'demo')!r}), episode=1, progress=False, assets=assets,"
        " rate_factor=0.25)\n"
        "print(json.dumps(res.report))\n"
    ))
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], env=ros_env, capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    out = tmp_path / "demo"
    assert report["frames_replayed"] == 10 and report["actions_published"] >= 5
    assert report["recorder_lossless"] is True
    assert report["action_error"]["pairs"] >= 5 and np.isfinite(report["action_error"]["mae"])
    assert (out / "bag" / "metadata.yaml").is_file()
    assert (out / "parquet" / "actions.parquet").is_file()
    # The dataset recording the feature browser opens: every held-out episode (the toy has 2), with thumbnails.
    if report["features"].get("messages"):
        analysis = json.loads((out / "features" / "analysis" / "analysis.json").read_text())
        assert report["features"]["dataset_recording"] == str(out / "features")
        assert analysis["episodes"] == [0, 1] and analysis["cameras"] == ["front", "wrist"]
        assert list((out / "features" / "analysis" / "thumbs").glob("*"))
    from pai_ros.media.video import count_frames, frame_times

    assert count_frames(out / "heatmaps_combined.mp4") == report["heatmap_frames"] >= 5
    # Each frame at its heatmaps' stamp (real-time playback even where ticks were skipped).
    from rosbags.highlevel import AnyReader

    from pai_ros.timestamps import header_ns

    with AnyReader([out / "bag"]) as reader:
        conns = [c for c in reader.connections if c.topic.endswith("front/heatmap")]
        # A set: the node may tick twice on the last observation (same stamp, one frame).
        maps = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(connections=conns)]
        stamps = sorted({header_ns(m) for m in maps})
    assert frame_times(out / "heatmaps_combined.mp4") == pytest.approx([(s - stamps[0]) / 1e9 for s in stamps], abs=1e-3)
    import cv2

    sheet = cv2.imread(str(out / "heatmaps_contact_sheet.png"))
    assert sheet is not None and sheet.shape[1] == 4 * 2 * 80
    # A title strip above the rows of ticks says what the sheet shows (the method, from the bag's diagnostics).
    assert (sheet.shape[0] - 20) % maps[0].height == 0 and sheet[:20].mean() < sheet[20:].mean() / 2
    assert json.loads((out / "report.json").read_text())["episode"] == 1
    # The demo policy runs with the demo SAE: live features, recorded, converted and ranked.
    feats = report["features"]
    assert feats["messages"] >= 5 and feats["top_features"] and feats["ood_threshold"] > 0
    # The demo SAE's calibration has the camera-state score: every live message carries one.
    assert feats["camera_state_scored"] == feats["messages"]
    assert 0 <= feats["cameras_disagree_frames"] <= feats["messages"]
    # One regression per camera: each camera's count of messages over its own threshold, by name.
    over_own = feats["camera_over_own_threshold_frames"]
    assert len(over_own) == 2 and all(0 <= n <= feats["messages"] for n in over_own.values())
    assert (out / "parquet" / "analysis" / "analysis.json").is_file()


def test_an_interrupted_demo_leaves_a_closed_bag(toy_assets, ros_env: dict, tmp_path: Path) -> None:
    """Ctrl-C during `pai demo`: the bag recorded so far is closed (readable), not one for `pai bag recover`."""
    import signal
    import subprocess
    import time

    out = tmp_path / "demo"
    code = toy_demo_script(toy_assets, (
        "from pai_ros.ros.demo import run_demo\n"
        "try:\n"
        # A twentieth of the recorded rate: the replay (10 frames) lasts long enough to be interrupted.
        f"    run_demo(pathlib.Path({str(out)!r}), episode=1, progress=False, assets=assets, rate_factor=0.05)\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(130)\n"
    ))
    proc = subprocess.Popen([sys.executable, "-c", code], env=ros_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        def recorded_bytes() -> int:
            return sum(f.stat().st_size for f in (out / "bag").glob("*/*.mcap"))

        # Polling a condition: camera frames (15 KB each) flushed into the open bag (once a second).
        deadline = time.monotonic() + 120
        while recorded_bytes() < 100_000 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert proc.poll() is None and recorded_bytes() >= 100_000, "the demo ended, or never wrote camera frames"
        proc.send_signal(signal.SIGINT)
        log, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, log[-3000:]
    assert (out / "bag" / "metadata.yaml").is_file(), log[-3000:]
    from rosbags.highlevel import AnyReader

    with AnyReader([out / "bag"]) as reader:  # a complete bag: its metadata and the MCAP footer are there
        assert {c.topic for c in reader.connections} >= {"/joint_states", "/camera/front/image_raw"}
        assert sum(c.msgcount for c in reader.connections if c.topic == "/camera/front/image_raw") >= 1
    assert not (out / "report.json").exists()  # and the demo reads as unfinished, as it is


def test_a_replay_waiting_for_subscribers_says_which_topics_lack_them(tiny_dataset, ros_env: dict) -> None:
    """It used to wait silently (ten minutes in one user's run) when nothing subscribed to recorded_action."""
    root, _ = tiny_dataset
    replay = _node("replay_node", ros_env, f"dataset_root:={root}", "start_delay_s:=0.1", "wait_for_subscribers:=3")
    try:
        line = replay.wait_for_line(lambda s: "waiting for 3 subscriber(s) on" in s, 60)
        assert "/camera/front/image_raw" in line and "/recorded_action" in line and "(wait_for_subscribers)" in line
    finally:
        replay.stop()
