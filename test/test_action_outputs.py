"""The policy node's action outputs for ros2_control and environment-state policies, as real processes.

One subscriber per output type (JointState, JointTrajectory, Float64MultiArray): same stamp,
same clamped values, and none of them from stale data. A stand-in controller (a real rclpy node
with ros2_control's ``joints`` parameter) receives the trajectory through a remap, and one with
other joint names receives nothing while /diagnostics says why. A policy with an environment
state acts on the robot's and the environment's topics, and refuses when the environment state
stops. The replay node publishes a dataset's environment state.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from ros_processes import HELPERS, Probe, Proc
from test_policy_node import diag, start_node, start_robot

pytestmark = pytest.mark.ros
OUTPUTS = "action_output:=['joint_state', 'joint_trajectory', 'float64_multi_array']"
# The trajectory reliable, as a controller subscribes: the stop sent at Ctrl-C waits for its ack
# (a best-effort reader can lose it with the exiting process).
TOPICS = ["action:JointState", "action_trajectory:JointTrajectory:reliable", "action_commands:Float64MultiArray",
          "/diagnostics:DiagnosticArray"]
PERIOD_NS = 100_000_000  # start_node runs the node at 10 Hz
MAX_AGE_S = 0.5  # the max_observation_age_s start_node sets


def test_every_output_type_carries_the_same_clamped_action(tiny_act: Path, ros_env: dict) -> None:
    probe = Probe(TOPICS, ros_env)
    node = start_node(tiny_act, ros_env, "-p", OUTPUTS, "-p", "trajectory_points:=chunk", "-p", "mode:=chunk",
                      "-p", "action_min:=[-0.05, -0.05, -0.05]", "-p", "action_max:=[0.05, 0.05, 0.05]")
    robot = start_robot(ros_env, "cameras_pause", start=8.0, end=12.0)
    try:
        traj = probe.wait_for(lambda m: m["topic"] == "action_trajectory", 60)
        action = probe.wait_for(lambda m: m["topic"] == "action" and m["stamp_ns"] == traj["stamp_ns"], 10)
        commands = probe.wait_for(lambda m: m["topic"] == "action_commands"
                                  and m["data"] == action["position"], 10)
        assert traj["joint_names"] == ["x", "y", "gripper"] and commands["dims"] == [["joints", 3]]
        # chunk mode: the first point is the action sent now, the rest what the chunk will execute,
        # one control period apart, every value inside the clamp.
        points = traj["points"]
        assert 1 <= len(points) <= 10 and points[0]["positions"] == pytest.approx(action["position"])
        # Timed from sending (the first point one period after it), so the first counts the tick's age.
        times = [p["time_from_start_ns"] for p in points]
        assert [b - a for a, b in zip(times, times[1:])] == [PERIOD_NS] * (len(times) - 1)
        assert PERIOD_NS <= times[0] <= PERIOD_NS + traj["recv_ns"] - traj["stamp_ns"], (times[0], traj)
        assert all(abs(v) <= 0.05 + 1e-6 for p in points for v in p["positions"])
        robot.wait_for_line(lambda s: s.startswith("PHASE after"), 40)
        phases = {line.split()[1]: int(line.split()[2]) for line in robot.lines if line.startswith("PHASE ")}
        start, end = phases["fault"], phases["after"]
        # Every output resumes once the cameras are fresh again (waited for, not assumed).
        for topic in ("action", "action_trajectory", "action_commands"):
            probe.wait_for(lambda m, t=topic: m["topic"] == t and m["recv_ns"] > end, 30)
        # Ctrl-C while acting: the controller is told where to stop (it would play out the plan sent
        # last). One point, stamped when sent, after every action (checked with the other stops below).
        signalled_ns = time.time_ns()
        assert node.stop() == 0
        acted = {a["stamp_ns"] for a in probe.messages("action")}
        probe.wait_for(lambda m: m["topic"] == "action_trajectory" and m["recv_ns"] > signalled_ns
                       and m["stamp_ns"] not in acted and len(m["points"]) == 1, 10)
        assert any("told the trajectory controller to stop at the point it was heading to" in line
                   for line in node.lines), node.lines[-5:]
    finally:
        for p in (robot, node, probe):
            p.stop()
    # No output of any type from stale cameras. The stamped outputs are judged by what they were
    # computed from (as in test_policy_node_faults): an output carries its observation's oldest
    # stamp, so one from a paused camera arrives older than max_observation_age_s plus a tick in
    # flight (as slow as the node reports its ticks: a loaded machine must not fail a correct
    # node). Float64MultiArray has no header: judged by arrival, with the same grace.
    p99s = [float(diag(m)["values"].get("latency_p99_ms", "nan")) for m in probe.messages("/diagnostics")]
    tick_ms = max((v for v in p99s if not math.isnan(v)), default=0.0)  # NaN: no tick timed yet
    in_flight_ns = max(0.5e9, tick_ms * 1e6 + 0.3e9) + 2 * PERIOD_NS
    for topic in ("action", "action_trajectory"):
        for m in probe.messages(topic):
            assert m["recv_ns"] - m["stamp_ns"] <= MAX_AGE_S * 1e9 + in_flight_ns, (topic, m, tick_ms)
    during = [m for m in probe.messages("action_commands") if start + MAX_AGE_S * 1e9 + in_flight_ns < m["recv_ns"] < end]
    assert not during, f"action_commands: {len(during)} messages while the cameras were stale (tick p99 {tick_ms} ms)"
    # The first refusal after acting cancels the plan sent before (the controller would go on executing
    # it, planned from the old scene): one point, stamped when sent, a point of that plan (the one the
    # arm is heading to then).
    acted = {a["stamp_ns"] for a in probe.messages("action")}
    plans = [m for m in probe.messages("action_trajectory") if m["stamp_ns"] in acted]
    stops = [m for m in probe.messages("action_trajectory") if m["stamp_ns"] not in acted]
    assert any(start < m["recv_ns"] < end for m in stops), "no stop trajectory when the cameras paused"
    for stop in stops:
        plan = [m for m in plans if m["recv_ns"] < stop["recv_ns"]][-1]
        assert len(stop["points"]) == 1
        assert any(stop["points"][0]["positions"] == pytest.approx(p["positions"]) for p in plan["points"]), \
            (stop, plan)


def test_a_controller_with_other_joints_gets_nothing_and_diagnostics_say_why(tiny_act: Path, ros_env: dict) -> None:
    good = Proc([sys.executable, str(HELPERS / "fake_controller.py"), "arm_controller", "gripper", "y", "x"],
                ros_env, "arm_controller")
    bad = Proc([sys.executable, str(HELPERS / "fake_controller.py"), "other_controller", "joint1", "joint2", "joint3"],
               ros_env, "other_controller")
    probe = Probe(["/diagnostics:DiagnosticArray"], ros_env)
    nodes = [start_robot(ros_env)]  # feeds both policy nodes
    try:
        for proc in (good, bad):
            proc.wait_for_line(lambda s: s == "READY", 30)
        # Remapped onto the controller's topic, the way a user wires it up.
        nodes.append(start_node(tiny_act, ros_env, "-p", "action_output:=['joint_trajectory']",
                                "-p", "controller:=/arm_controller",
                                "-r", "action_trajectory:=/arm_controller/joint_trajectory"))
        good.wait_for_line(lambda s: s.startswith("GOT trajectory 3"), 60)
        nodes.append(start_node(tiny_act, ros_env, "-r", "__node:=policy_b",
                                "-p", "action_output:=['joint_trajectory', 'float64_multi_array']",
                                "-p", "controller:=/other_controller",
                                "-r", "action_trajectory:=/other_controller/joint_trajectory",
                                "-r", "action_commands:=/other_controller/commands"))
        said = probe.wait_for(lambda m: m["status"][0]["name"].startswith("policy_b")
                              and "refuses trajectories" in diag(m)["message"], 60)
        assert diag(said)["level"] == 2 and "applies action_commands positionally" in diag(said)["values"]["controller"]
        # Once it ticks (the controller may answer before the first observation), every output of
        # policy_b goes to the refused controller: its status says it holds them. Not a status from
        # before the answer ("not verified yet"): the probe's search starts from its first line.
        ticking = probe.wait_for(lambda m: m["status"][0]["name"].startswith("policy_b")
                                 and diag(m)["message"].startswith("holding actions")
                                 and "not verified yet" not in diag(m)["message"], 60)
        assert diag(ticking)["level"] == 2, diag(ticking)
        assert diag(ticking)["message"].startswith("holding actions; not sending to the controller"), diag(ticking)
        assert not any(line.startswith("GOT") for line in bad.lines)
    finally:
        for p in (*nodes, good, bad, probe):
            p.stop()


def test_a_controller_that_never_answers_is_said_in_the_log_with_reminders(tiny_act: Path, ros_env: dict) -> None:
    """Only /diagnostics said it: a user watching the terminal saw the node act, and the arm never moved."""
    robot = start_robot(ros_env)
    node = start_node(tiny_act, ros_env, "-p", "action_output:=['joint_state', 'joint_trajectory']",
                      "-p", "controller:=/absent_controller")
    try:
        first = node.wait_for_line(lambda s: "not sending joint_trajectory to /absent_controller after" in s, 60)
        assert "[WARN]" in first and "not verified yet (no answer from it)" in first and "still" not in first
        # While it lasts, a reminder (every 10 s) says how long and why.
        again = node.wait_for_line(lambda s: "still not sending joint_trajectory to /absent_controller" in s, 60)
        assert "[WARN]" in again and "not verified yet (no answer from it)" in again
    finally:
        for p in (node, robot):
            p.stop()


def test_a_joint_trajectory_controller_accepts_trajectories_from_old_observations(tiny_act: Path,
                                                                                 ros_env: dict) -> None:
    """Cameras at 4 Hz make observations up to 250 ms old at a 10 Hz tick. Points timed from the
    observation (stamp + 100 ms) were already past for the controller, which dropped them."""
    ctrl = Proc([sys.executable, str(HELPERS / "fake_controller.py"), "arm_controller", "x", "y", "gripper"],
                ros_env, "arm_controller")
    robot = Proc([sys.executable, str(HELPERS / "fake_robot.py"), "--rate", "4", "--seconds", "120"], ros_env, "robot")
    node = None
    try:
        ctrl.wait_for_line(lambda s: s == "READY", 30)
        node = start_node(tiny_act, ros_env, "-p", "action_output:=['joint_trajectory']",
                          "-r", "action_trajectory:=/arm_controller/joint_trajectory")
        ctrl.wait_for_line(lambda s: s.startswith("GOT trajectory 20"), 90)
    finally:
        for p in (node, robot, ctrl):
            if p is not None:
                p.stop()
    rejected = [line for line in ctrl.lines if line.startswith("REJECTED")]
    # A loaded machine may deliver one late; points timed from the observation lost about half.
    assert len(rejected) <= 2, rejected


@pytest.fixture(scope="module")
def env_act(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pai_ros.policy.random_init import save_random_act

    return save_random_act(tmp_path_factory.mktemp("env_act"), {"front": (64, 80), "wrist": (64, 80)},
                           state_dim=3, action_dim=3, env_state_dim=2, chunk_size=10, n_action_steps=10)


@pytest.mark.parametrize("env_type", ["float32_multi_array", "joint_state"])
def test_environment_state_policy_acts_and_refuses_when_it_stops(env_act: Path, ros_env: dict, env_type: str) -> None:
    probe = Probe(["action:JointState", "/diagnostics:DiagnosticArray"], ros_env)
    node = start_node(env_act, ros_env, "-p", f"environment_state_type:={env_type}")
    robot = Proc([sys.executable, str(HELPERS / "fake_robot.py"), "--env-state", "2", "--env-type", env_type,
                  "--fault", "env_pause", "--fault-start", "8", "--fault-end", "12", "--seconds", "60"],
                 ros_env, "robot")
    try:
        assert "environment_state<-/environment_state" in "\n".join(node.lines)
        probe.wait_for(lambda m: m["topic"] == "action", 60)
        fault_ns = int(robot.wait_for_line(lambda s: s.startswith("PHASE fault"), 40).split()[2])
        said = probe.wait_for(lambda m: m["topic"] == "/diagnostics" and m["recv_ns"] > fault_ns
                              and "environment_state is" in diag(m)["message"], 20)
        assert diag(said)["level"] == 2
        robot.wait_for_line(lambda s: s.startswith("PHASE after"), 20)
        phases = {line.split()[1]: int(line.split()[2]) for line in robot.lines if line.startswith("PHASE ")}
        # Actions resume once the environment state is fresh again (waited for, not assumed).
        probe.wait_for(lambda m: m["topic"] == "action" and m["recv_ns"] > phases["after"], 30)
    finally:
        for p in (robot, node, probe):
            p.stop()
    # Grace: max_observation_age_s (0.5 s) plus a tick that may still be computing on a loaded machine.
    during = [m for m in probe.messages("action") if phases["fault"] + 1.5e9 < m["recv_ns"] < phases["after"]]
    assert not during


def test_replay_publishes_the_environment_state_of_a_dataset(tmp_path: Path, ros_env: dict) -> None:
    import numpy as np
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = tmp_path / "env_ds"
    ds = LeRobotDataset.create(repo_id="pai/env_ds", fps=10, root=root, use_videos=False, features={
        "observation.images.front": {"dtype": "image", "shape": (16, 20, 3), "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": (2,), "names": ["x", "y"]},
        "observation.environment_state": {"dtype": "float32", "shape": (3,), "names": ["bx", "by", "bz"]},
        "action": {"dtype": "float32", "shape": (2,), "names": ["x", "y"]}})
    for i in range(5):
        ds.add_frame({"observation.images.front": np.full((16, 20, 3), 40 * i, np.uint8),
                      "observation.state": np.array([i, 0], np.float32),
                      "observation.environment_state": np.array([i, 2 * i, 0.5], np.float32),
                      "action": np.array([i, 1], np.float32), "task": "t"})
    ds.save_episode()
    ds.finalize()
    for env_type, spec in (("float32_multi_array", "environment_state:Float32MultiArray"),
                           ("joint_state", "environment_state:JointState")):
        # Subscribed to every topic the replay publishes: it waits for one subscriber on each.
        probe = Probe([spec, "camera/front/image_raw:Image", "joint_states:JointState",
                       "recorded_action:JointState"], ros_env)
        replay = Proc([sys.executable, "-m", "pai_ros.ros.replay_node", "--ros-args", "-p", f"dataset_root:={root}",
                       "-p", f"environment_state_type:={env_type}", "-p", "wait_for_subscribers:=1"], ros_env, "replay")
        try:
            replay.wait_for_line(lambda s: "replay finished" in s, 60)
            probe.wait_for(lambda m: True, 10)
        finally:
            for p in (replay, probe):
                p.stop()
        got = probe.messages("environment_state")
        values = [m["data"] if env_type == "float32_multi_array" else m["position"] for m in got]
        assert values and values[-1] == [4.0, 8.0, 0.5], values
        if env_type == "joint_state":
            assert got[0]["name"] == ["bx", "by", "bz"] and got[0]["stamp_ns"] > 0


HELD_BY_THE_TICK = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory
    from pai_ros.live import TickOutput
    from pai_ros.ros.policy_node import PolicyNode

    rclpy.init()
    node = PolicyNode(parameter_overrides=[
        Parameter("policy_path", value=sys.argv[1]), Parameter("state_joint_names", value=["x", "y", "gripper"]),
        Parameter("action_output", value=["joint_trajectory", "joint_state"]),
        Parameter("controller", value="/arm_controller")])
    node.shutdown()  # no ticks of its own: only the output below is published
    got = {"action": 0, "action_trajectory": 0}
    listener = rclpy.create_node("listener")
    for topic, kind in (("action", JointState), ("action_trajectory", JointTrajectory)):
        listener.create_subscription(kind, topic, lambda m, t=topic: got.__setitem__(t, got[t] + 1), 10)
    executor = SingleThreadedExecutor()
    for n in (node, listener):
        executor.add_node(n)
    # The tick held the trajectory (joints not verified when it read the gate); the controller
    # answered before the node published.
    node.live.controller_gate.answered(None)
    action = np.zeros(3, np.float32)
    out = TickOutput(stamp_ns=node.get_clock().now().nanoseconds, action=action, action_names=("x", "y", "gripper"),
                     plan=action[None], heatmap_method="none", shares={}, heatmaps={}, camera_frame_ids={},
                     camera_stamps_ns={}, held_outputs=("joint_trajectory",))
    end = time.monotonic() + 30
    while got["action"] < 3 and time.monotonic() < end:  # until the JointState command arrived (3 sends)
        if listener.count_publishers("action") and listener.count_publishers("action_trajectory"):
            node._publish(out)
        executor.spin_once(timeout_sec=0.1)
    drain = time.monotonic() + 1.0  # every callback ready by now has its turn, the trajectory's too
    while time.monotonic() < drain:
        executor.spin_once(timeout_sec=0.1)
    print(json.dumps(got))
""")


def test_the_node_publishes_what_the_tick_decided_even_if_the_controller_answered_since(tiny_act: Path,
                                                                                        ros_env: dict) -> None:
    """The tick holds the trajectory on its one reading of the gate; an answer arriving before the
    node publishes must not let that tick's trajectory out (it was counted and reported as held)."""
    res = subprocess.run([sys.executable, "-c", HELD_BY_THE_TICK, str(tiny_act)], capture_output=True, text=True,
                         env=ros_env, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["action"] >= 3, got  # the JointState command goes out: no controller checks it
    assert got["action_trajectory"] == 0, got  # reliable, same process: had it been sent, it would be here
