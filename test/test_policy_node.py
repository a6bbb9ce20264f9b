"""policy_node as a real process: heatmaps, actions, diagnostics, and no action from bad data.

Each test starts the node (tiny random ACT, 64x80 cameras), a scripted robot or the replay
node, and an independent subscriber, all as separate processes on a domain of their own.
"""

import sys
from pathlib import Path

import pytest

from ros_processes import HELPERS, Probe, Proc

pytestmark = pytest.mark.ros
TOPICS = ["action:JointState", "attention/front/heatmap:Image", "attention/wrist/heatmap:Image",
          "attention/shares:JointState", "/diagnostics:DiagnosticArray"]


def start_node(tiny_act: Path, env: dict, *extra: str) -> Proc:
    args = [sys.executable, "-m", "pai_ros.ros.policy_node", "--ros-args", "-p", f"policy_path:={tiny_act}",
            "-p", "control_rate_hz:=10.0", "-p", "state_joint_names:=['x', 'y', 'gripper']",
            "-p", "max_observation_age_s:=0.5", "-p", "diagnostics_period_s:=0.5", *extra]
    node = Proc(args, env, "policy_node")
    node.wait_for_line(lambda line: "ready:" in line, 90)
    return node


def start_robot(env: dict, fault: str = "none", start: float = 1e9, end: float = 1e9, *extra: str) -> Proc:
    return Proc([sys.executable, str(HELPERS / "fake_robot.py"), "--fault", fault, "--fault-start", str(start),
                 "--fault-end", str(end), "--seconds", "120", *extra], env, "robot")


def diag(msg: dict) -> dict:
    return msg["status"][0]


def test_heatmaps_actions_and_diagnostics(tiny_act: Path, ros_env: dict) -> None:
    probe = Probe(TOPICS, ros_env)
    node = start_node(tiny_act, ros_env)
    robot = start_robot(ros_env)
    try:
        heatmap = probe.wait_for(lambda m: m["topic"] == "attention/front/heatmap", 60)
        probe.wait_for(lambda m: m["topic"] == "attention/wrist/heatmap", 30)
        # rgb8 overlay at camera resolution, header copied from the camera frame (RViz lines it up).
        assert (heatmap["encoding"], heatmap["height"], heatmap["width"], heatmap["step"]) == ("rgb8", 64, 80, 240)
        assert heatmap["frame_id"] == "front_camera" and heatmap["stamp_ns"] > 0
        action = probe.wait_for(lambda m: m["topic"] == "action", 30)
        assert action["name"] == ["x", "y", "gripper"] and len(action["position"]) == 3
        # Stamped with the observation time: recent, never in the future of its arrival.
        assert 0 <= action["recv_ns"] - action["stamp_ns"] < 2e9
        shares = probe.wait_for(lambda m: m["topic"] == "attention/shares", 30)
        assert set(shares["name"]) == {"latent", "state", "front", "wrist"}
        assert abs(sum(shares["position"]) - 1.0) < 1e-4
        ok = probe.wait_for(lambda m: m["topic"] == "/diagnostics" and diag(m)["level"] == 0, 30)
        values = diag(ok)["values"]
        # Beside it, whether the ticks keep up with the control rate (a slow tick is no reason not to act).
        pace = [s for s in ok["status"][1:] if s["name"] == "policy_node: pace"]
        assert len(pace) == 1 and pace[0]["message"].startswith(("keeping up: ", "falling behind: ")), ok["status"]
        for key in ("latency_mean_ms", "latency_p99_ms", "skipped_ticks", "age_front_s", "mode", "device"):
            assert key in values
        # Actions keep coming, never from an older observation than the one before. The rate itself is
        # measured in bench/, not asserted here: under a loaded CI machine ticks are skipped (and counted).
        n0 = len(probe.messages("action"))
        tenth = probe.wait_for(lambda m: m["topic"] == "action" and len(probe.messages("action")) >= n0 + 10, 60)
        stamps = [a["stamp_ns"] for a in probe.messages("action")]
        assert stamps == sorted(stamps), "an action from an older observation than its predecessor"
        # The node's own count (on /diagnostics) agrees with what arrived here.
        later = probe.wait_for(lambda m: m["topic"] == "/diagnostics" and m["recv_ns"] > tenth["recv_ns"], 30)
        assert int(diag(later)["values"]["actions_published"]) >= n0 + 10
    finally:
        for p in (robot, node, probe):
            p.stop()
    assert node.popen.returncode == 0, "\n".join(node.lines[-20:])


@pytest.mark.parametrize("fault, reason, split", [
    ("cameras_pause", "old (max_observation_age_s", False),
    ("nan_state", "NaN or inf", False),
    ("bad_encoding", "unsupported image encoding '16UC1'", False),
    # joint_states is merged by name, so a joint that stops arriving goes stale and is named;
    # the same with the gripper on its own publisher (separate arm and gripper drivers).
    ("missing_joint", "not updated: joint(s) gripper", False),
    ("missing_joint", "not updated: joint(s) gripper", True),
])
def test_no_action_from_bad_data_then_recovery(fault: str, reason: str, split: bool, tiny_act: Path,
                                               ros_env: dict) -> None:
    probe = Probe(TOPICS, ros_env)
    node = start_node(tiny_act, ros_env)
    robot = start_robot(ros_env, fault, 6.0, 11.0, *(["--split-joints"] if split else []))
    try:
        robot.wait_for_line(lambda s: s.startswith("PHASE before"), 30)
        probe.wait_for(lambda m: m["topic"] == "action", 60)  # healthy first
        fault_ns = int(robot.wait_for_line(lambda s: s.startswith("PHASE fault"), 30).split()[2])
        # Received after the fault began: a stale start-up tick's status must not stand in for it.
        bad = probe.wait_for(lambda m: m["topic"] == "/diagnostics" and m["recv_ns"] > fault_ns
                             and reason in diag(m)["message"], 20)
        assert diag(bad)["level"] == 2 and diag(bad)["message"].startswith("no action:")
        after_ns = int(robot.wait_for_line(lambda s: s.startswith("PHASE after"), 30).split()[2])
        # Recovery without restart: actions again, diagnostics OK again.
        probe.wait_for(lambda m: m["topic"] == "action" and m["stamp_ns"] > after_ns, 30)
        probe.wait_for(lambda m: m["topic"] == "/diagnostics" and diag(m)["level"] == 0 and m["recv_ns"] > after_ns, 30)
        # No action was computed from an observation taken during the fault (one tick of slack
        # for an observation stamped just before it began).
        during = [m for m in probe.messages("action") if fault_ns + 0.2e9 < m["stamp_ns"] < after_ns]
        assert not during, f"{len(during)} actions from observations made during the fault"
    finally:
        for p in (robot, node, probe):
            p.stop()


def test_bad_policy_path_exits_with_one_line(ros_env: dict, tmp_path: Path) -> None:
    node = Proc([sys.executable, "-m", "pai_ros.ros.policy_node", "--ros-args", "-p",
                 f"policy_path:={tmp_path / 'missing'}"], ros_env, "policy_node")
    assert node.popen.wait(timeout=90) == 1
    node.stop()
    errors = [line for line in node.lines if "error" in line.lower()]
    assert errors == [f"policy_node: error: policy path {tmp_path / 'missing'} does not exist"], node.lines
    assert not any("Traceback" in line for line in node.lines)


def test_observe_only_publishes_heatmaps_but_no_actions(tiny_act: Path, ros_env: dict) -> None:
    probe = Probe(TOPICS, ros_env)
    node = start_node(tiny_act, ros_env, "-p", "publish_actions:=false")
    robot = start_robot(ros_env)
    try:
        probe.wait_for(lambda m: m["topic"] == "attention/front/heatmap", 60)
        d = probe.wait_for(lambda m: m["topic"] == "/diagnostics" and diag(m)["level"] == 0, 30)
        assert "observe-only" in diag(d)["message"]
        assert not probe.messages("action")
        robot.stop()  # the inputs go stale: the log says the ticks are not interpreted (no action is ever sent)
        node.wait_for_line(lambda s: "not interpreted: " in s, 30)
        assert not [s for s in node.lines if "no action" in s], node.lines
    finally:
        for p in (robot, node, probe):
            p.stop()


def test_an_empty_list_for_a_list_parameter_is_the_nodes_own_one_line(tiny_act: Path, ros_env: dict) -> None:
    """`-p action_output:=[]` (a default that is not empty) was rclpy's ParameterUninitializedException traceback."""
    import subprocess

    res = subprocess.run([sys.executable, "-m", "pai_ros.ros.policy_node", "--ros-args", "-p",
                          f"policy_path:={tiny_act}", "-p", "action_output:=[]"],
                         capture_output=True, text=True, env=ros_env, timeout=120)
    lines = [s for s in (res.stdout + res.stderr).splitlines() if s.strip()]
    assert res.returncode == 1 and len(lines) == 1, lines
    assert lines[0].startswith("policy_node: error: action_output is empty; choose one or more of"), lines


def test_a_camera_subscribed_with_the_wrong_type_is_named_with_the_fix(tiny_act: Path, ros_env: dict) -> None:
    """Raw images on a topic configured ':compressed' match no subscription: 'no message yet' alone misleads."""
    node = start_node(tiny_act, ros_env, "-p", "cameras:=['front:camera/front/image_raw:compressed', "
                                              "'wrist:camera/wrist/image_raw']")
    robot = start_robot(ros_env)
    try:
        # The ready line says how each camera is read.
        assert "inputs front<-/camera/front/image_raw (JPEG), wrist<-/camera/wrist/image_raw," in "\n".join(node.lines)
        line = node.wait_for_line(lambda s: "carries sensor_msgs/msg/Image" in s, 60)
        assert "[WARN]" in line and "front: /camera/front/image_raw carries sensor_msgs/msg/Image, but it is " \
            "subscribed as sensor_msgs/msg/CompressedImage, so nothing arrives: drop ':compressed'" in line, line
        # The terminal also says why no action goes out (the first refusal at once).
        node.wait_for_line(lambda s: "no action: no message yet on /camera/front/image_raw" in s, 30)
    finally:
        for p in (robot, node):
            p.stop()
    assert sum("carries sensor_msgs/msg/Image" in s for s in node.lines) == 1  # said once, not every second


JPEG_CAMERA = """
import time, rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage
rclpy.init()
node = rclpy.create_node("jpeg_camera")
pub = node.create_publisher(CompressedImage, "camera/front/image_raw", qos_profile_sensor_data)
print("publishing", flush=True)
while True:
    pub.publish(CompressedImage(format="jpeg"))
    time.sleep(0.1)
"""


def test_a_camera_that_changes_type_after_its_frames_arrived_is_named(tiny_act: Path, ros_env: dict) -> None:
    """A driver restarted with JPEG output after raw frames arrived: the input only grows old, and that alone
    ("front is 6.9 s old") does not say why; the check covered only inputs that never had a message."""
    probe = Probe(["action:JointState"], ros_env)
    node = start_node(tiny_act, ros_env)
    robot = start_robot(ros_env)
    jpeg = None
    try:
        probe.wait_for(lambda m: m["topic"] == "action", 60)  # raw frames did arrive
        robot.stop()
        jpeg = Proc([sys.executable, "-c", JPEG_CAMERA], ros_env, "jpeg_camera")
        line = node.wait_for_line(lambda s: "carries sensor_msgs/msg/CompressedImage" in s, 60)
        assert "[WARN]" in line and "front: /camera/front/image_raw carries sensor_msgs/msg/CompressedImage, but it " \
            "is subscribed as sensor_msgs/msg/Image, so nothing arrives: write " \
            "'front:/camera/front/image_raw:compressed' in cameras" in line, line
    finally:
        for p in (jpeg, robot, node, probe):
            if p is not None:
                p.stop()
