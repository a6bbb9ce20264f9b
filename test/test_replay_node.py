"""replay_node as a real process: a dataset episode becomes camera and joint topics at its fps."""

import sys

import numpy as np
import pytest

from ros_processes import HELPERS, Probe, Proc

pytestmark = pytest.mark.ros
TOPICS = ["camera/front/image_raw:Image", "camera/wrist/image_raw:Image", "joint_states:JointState",
          "recorded_action:JointState"]


def replay(env: dict, *params: str) -> Proc:
    args = [sys.executable, "-m", "pai_ros.ros.replay_node", "--ros-args"]
    for p in params:
        args += ["-p", p]
    return Proc(args, env, "replay_node")


def test_replays_one_episode_then_exits(tiny_dataset, tiny_scene, ros_env: dict) -> None:
    from pai_ros.data.episodes import iter_episode

    root, _ = tiny_dataset
    probe = Probe([*TOPICS, "/diagnostics:DiagnosticArray"], ros_env)
    node = replay(ros_env, f"dataset_root:={root}", "episodes:=[1]", "start_delay_s:=3.0")
    try:
        assert node.popen.wait(timeout=90) == 0, "\n".join(node.lines)
        n = tiny_scene.episode_length
        # Reliable joint topics must all arrive; images are best effort (sensor QoS) on loopback.
        probe.wait_for_line(lambda s: len(probe.messages("recorded_action")) >= n, 20)
        actions = probe.messages("recorded_action")
        # Its last /diagnostics word: finished, with the count (sent before the node exits).
        last = probe.wait_for(lambda m: m["topic"] == "/diagnostics" and "replay finished" in str(m), 20)
        assert f"replay finished: {n} frames published" in str(last) and "replay_node: replay" in str(last)
    finally:
        probe.stop()
    assert len(actions) == n
    frames = list(iter_episode(root, 1))
    assert np.allclose([a["position"] for a in actions], [f.action for f in frames], atol=1e-6)
    states = probe.messages("joint_states")
    assert len(states) == n and states[0]["name"] == ["x", "y", "gripper"]
    front = probe.messages("camera/front/image_raw")
    assert len(front) >= n - 1 and front[0]["encoding"] == "rgb8" and front[0]["frame_id"] == "front_camera"
    assert (front[0]["height"], front[0]["width"]) == tiny_scene.front_hw
    # One stamp per frame, shared by every topic of that frame; frames spaced at the dataset's fps.
    assert {m["stamp_ns"] for m in front} <= {m["stamp_ns"] for m in states}
    gaps = np.diff([m["stamp_ns"] for m in states]) / 1e9
    assert abs(np.median(gaps) - 1 / tiny_scene.fps) < 0.3 / tiny_scene.fps
    assert any("replay finished: 12 frames published" in line for line in node.lines)


@pytest.mark.parametrize("params, message", [
    (["dataset_root:=/nonexistent/ds"], "dataset root /nonexistent/ds does not exist"),
    (["episodes:=[9]"], "episode 9 is out of range"),
])
def test_bad_input_is_one_line(params, message, tiny_dataset, ros_env: dict) -> None:
    root, _ = tiny_dataset
    args = [p for p in params]
    if not any(p.startswith("dataset_root") for p in args):
        args.append(f"dataset_root:={root}")
    node = replay(ros_env, *args)
    assert node.popen.wait(timeout=90) == 1
    node.stop()
    errors = [line for line in node.lines if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("replay_node: error: ") and message in errors[0], node.lines
    assert not any("Traceback" in line for line in node.lines)


def test_a_dataset_that_cannot_be_decoded_ends_with_one_line_and_exit_1(tiny_dataset, ros_env: dict,
                                                                         tmp_path) -> None:
    """Not "replay finished" and exit 0: a launch file or a script must see that the replay failed."""
    import shutil

    root, _ = tiny_dataset
    damaged = tmp_path / "damaged"
    shutil.copytree(root, damaged)
    for video in (damaged / "videos").rglob("*.mp4"):
        video.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    probe = Probe(["/diagnostics:DiagnosticArray"], ros_env)
    node = replay(ros_env, f"dataset_root:={damaged}", "rate_factor:=10.0", "start_delay_s:=3.0")
    try:
        assert node.popen.wait(timeout=90) == 1, node.lines
        failed = probe.wait_for(lambda m: m["topic"] == "/diagnostics" and m["status"][0]["level"] == 2, 20)
        assert failed["status"][0]["message"].startswith("replay failed after ")
    finally:
        probe.stop()
        node.stop()
    errors = [line for line in node.lines if line.startswith("replay_node: error: ")]
    assert len(errors) == 1 and "replay failed after" in errors[0] and str(damaged) in errors[0], node.lines
    assert not any("replay finished" in line or "Traceback" in line for line in node.lines), node.lines


def test_use_sim_time_without_a_clock_is_said_and_the_replay_runs_once_time_starts(tiny_dataset, ros_env: dict) -> None:
    """With use_sim_time and no /clock every timer waits: it used to look like a hang, /diagnostics silent."""
    root, _ = tiny_dataset
    probe = Probe(["/diagnostics:DiagnosticArray"], ros_env)
    node = replay(ros_env, f"dataset_root:={root}", "episodes:=[1]", "use_sim_time:=true")
    clock = None
    try:
        said = node.wait_for_line(lambda s: "no /clock message has arrived" in s, 60)
        assert "[WARN]" in said and "use_sim_time is true" in said and "set use_sim_time:=false" in said
        diag = probe.wait_for(lambda m: any(s["name"] == "replay_node: clock" and s["level"] == 1
                                            for s in m["status"]), 30)
        assert "start the simulator" in diag["status"][0]["message"]
        assert not any("replay finished" in line for line in node.lines)  # nothing ran without time
        started = probe.mark()
        clock = Proc([sys.executable, str(HELPERS / "clock_publisher.py")], ros_env, "clock")
        clock.wait_for_line(lambda s: s == "READY", 30)
        node.wait_for_line(lambda s: "simulated time has started" in s, 60)
        # ... and /diagnostics clears the WARN under the same name.
        probe.wait_for(lambda m: any(s["name"] == "replay_node: clock" and s["level"] == 0 for s in m["status"]), 30,
                       since=started)
        assert node.popen.wait(timeout=90) == 0, "\n".join(node.lines)
        assert any("replay finished: 12 frames published" in line for line in node.lines)
        # Its last status is stamped in simulated time (the publisher's clock starts at 1000 s).
        last = probe.wait_for(lambda m: "replay finished" in str(m), 20)
        assert last["stamp_ns"] >= 1000 * 10**9
    finally:
        probe.stop()
        node.kill()
        if clock:
            clock.kill()
