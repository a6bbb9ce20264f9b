"""sim_node: the session it runs (in-process) and the node driven by a real policy_node (processes)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import toy_demo_script
from ros_processes import Probe, Proc

from pai_ros.sim.robot import HOLD_NO_ACTION, HOLD_NOT_FINITE, SimConfig, expert_command
from pai_ros.sim.scene import SceneConfig
from pai_ros.sim.session import SimSession, action_vector

SMALL = SimConfig(scene=SceneConfig(front_hw=(32, 40), wrist_hw=(32, 40)), max_steps=30)


# ------------------------------------------------------------------ the session, without ROS

def test_action_vector_reorders_by_name_and_falls_back_to_order():
    assert action_vector(["gripper", "x", "y"], [1.0, 0.2, 0.3]).tolist() == [0.2, 0.3, 1.0]
    assert action_vector(["action_0", "action_1", "action_2"], [0.2, 0.3, 1.0]).tolist() == [0.2, 0.3, 1.0]
    assert action_vector([], [0.2, 0.3]).tolist() == [0.2, 0.3]  # the robot holds: wrong size


def test_session_settles_between_episodes_then_runs_the_expert_to_success():
    session = SimSession(SMALL, seed=3, episodes=3, settle_steps=4)
    reports = []
    shown = []
    while not session.done:
        settling_before = session._settle_left > 0
        # Nothing is shown while settling (the policy's inputs go stale and it drops its plan).
        assert session.showing == (not settling_before)
        shown.append(session.showing)
        # During settling the session ignores even a NaN action: it never reaches the robot.
        action = [np.nan] * 3 if settling_before else expert_command(session.robot)
        reports.append(session.tick(action))
        assert reports[-1].settling == settling_before
    assert shown[:5] == [False] * 4 + [True]  # the first episode settles too
    assert not session.showing  # and nothing once every episode is done
    finished = [r.finished_episode for r in reports if r.finished_episode is not None]
    assert [f.index for f in finished] == [0, 1, 2] and all(f.success for f in finished)
    assert session.counts.settling == 3 * 4 and not session.counts.held
    assert reports[-1].all_done and reports[-1].observation is None
    assert session.report().success_rate == 1.0
    level, message, values = session.diagnostics()
    assert level == 0 and message == "finished: 3/3 episodes succeeded" and values["successes"] == "3"
    assert session.tick(None).all_done  # a tick after the end does nothing


def test_session_holds_and_diagnostics_say_why():
    session = SimSession(SMALL, seed=0, episodes=1, settle_steps=0)
    start = session.observation.state.copy()
    session.tick(None)
    session.tick(np.array([np.nan, 0.5, 0.0]))
    assert np.array_equal(session.robot.state, start)
    level, message, values = session.diagnostics()
    assert level == 1
    assert "holding position" in message and f"{HOLD_NO_ACTION} (1 of 2 steps)" in message
    assert f"{HOLD_NOT_FINITE} (1 of 2 steps)" in message
    assert values["held_steps"] == "2" and values["last_hold"].startswith(HOLD_NOT_FINITE)
    # The next window starts afresh: a good step is OK again.
    session.tick(expert_command(session.robot))
    assert session.diagnostics()[0] == 0


# ------------------------------------------------------------------ the node with a real policy node

@pytest.mark.ros
@pytest.mark.slow
def test_sim_node_and_policy_node_run_closed_loop_episodes(tiny_act: Path, ros_env: dict) -> None:
    """policy_node (tiny random ACT) acts on sim_node's cameras; every episode ends with an outcome."""
    # Outcomes latched: the first episode may end before the probe has discovered the sim.
    probe = Probe(["/sim_node/episode_outcome:String:latched", "/sim_node/summary:String:latched", "action:JointState",
                   "camera/front/image_raw:Image", "/diagnostics:DiagnosticArray"], ros_env)
    policy = Proc([sys.executable, "-m", "pai_ros.ros.policy_node", "--ros-args", "-p", f"policy_path:={tiny_act}",
                   "-p", "control_rate_hz:=10.0", "-p", "state_joint_names:=['x', 'y', 'gripper']",
                   "-p", "max_observation_age_s:=1.0"], ros_env, "policy_node")
    sim = None
    try:
        policy.wait_for_line(lambda s: "ready:" in s, 90)
        # 2.5 Hz: a step window (400 ms) holds a policy tick even on a loaded 2-core machine; at
        # 5 Hz, 10 of 16 steps once saw no action during make test.
        sim = Proc([sys.executable, "-m", "pai_ros.ros.sim_node", "--ros-args", "-p", "episodes:=2", "-p", "seed:=5",
                    "-p", "rate_hz:=2.5", "-p", "max_steps:=8", "-p", "settle_s:=1.6", "-p", "start_delay_s:=0.5",
                    "-p", "wait_for_subscribers:=1", "-p", "image_height:=64", "-p", "image_width:=80"],
                   ros_env, "sim_node")
        assert sim.wait(timeout=120) == 0, "\n".join(sim.lines)
        summary = json.loads(probe.wait_for(lambda m: m["topic"] == "/sim_node/summary", 20)["data"])
    finally:
        if sim is not None:
            sim.kill()
        policy.stop()
        probe.stop()
    outcomes = [json.loads(m["data"]) for m in probe.messages("/sim_node/episode_outcome")]
    assert [o["episode"] for o in outcomes] == [0, 1]
    assert all(o["outcome"] in ("success", "missed", "timeout") and 1 <= o["steps"] <= 8 for o in outcomes)
    assert summary["episodes"] == 2 and summary["seed"] == 5
    assert summary["success_rate"] == np.mean([o["success"] for o in outcomes])
    assert np.isclose(summary["mean_final_distance"], np.mean([o["final_distance"] for o in outcomes]))
    # The policy acted on the sim's images: actions arrived and most steps executed one.
    frames = probe.messages("camera/front/image_raw")
    assert frames and (frames[0]["encoding"], frames[0]["height"], frames[0]["width"], frames[0]["frame_id"]) == \
        ("rgb8", 64, 80, "front_camera")
    actions = probe.messages("action")
    # Actions carry the stamp of the sim frame they were computed from (the probe's best-effort
    # subscription may miss a frame, so not every one is checked).
    stamped = [a for a in actions if a["stamp_ns"] in {f["stamp_ns"] for f in frames}]
    assert actions and len(stamped) >= len(actions) / 2, (len(stamped), len(actions))
    steps = sum(o["steps"] for o in outcomes)
    # Most steps had an action to act on; the random policy's are often off the table, and those
    # steps hold and say so (never an unbounded move).
    assert sum(o["hold_reasons"].get("no action", 0) for o in outcomes) < steps / 2, outcomes
    assert set().union(*(o["hold_reasons"] for o in outcomes)) <= {"no action", "out of range"}
    # Before each episode the sim is silent for settle_s (1.6 s > max_observation_age_s 1.0): the camera
    # pauses between the two episodes, and the policy node refuses the stale inputs, dropping its plan.
    stamps = sorted(f["stamp_ns"] for f in frames)
    assert max(np.diff(stamps)) >= 1.5e9, np.diff(stamps)
    # Its /diagnostics (not its log, which folds repeated refusals into one line) count every refusal.
    statuses = [s for m in probe.messages("/diagnostics") for s in m["status"]]
    refused = " ".join(s["values"].get("rejections_since_last", "") for s in statuses
                       if s["name"] == "policy_node: policy")
    assert " old (max_observation_age_s 1.0)" in refused, refused
    sims = [s for s in statuses if s["name"] == "sim_node: sim"]
    assert sims and "episodes_done" in sims[-1]["values"]
    assert any("closed loop: " in line for line in sim.lines)


@pytest.mark.ros
@pytest.mark.slow
def test_pai_demo_closed_loop_in_one_process(toy_assets, ros_env: dict, tmp_path: Path) -> None:
    """`pai demo --closed-loop` on the toy demo assets: episodes end, outcomes reach the bag and the report."""
    import subprocess

    out = tmp_path / "sim"
    code = toy_demo_script(toy_assets, (
        "from pai_ros.ros.sim_demo import run_closed_loop_demo\n"
        f"res = run_closed_loop_demo(pathlib.Path({str(out)!r}), episodes=2, seed=1, rate_hz=10.0, progress=False, "
        "assets=assets)\n"
        "print(json.dumps(res.report))\n"
    ))
    proc = subprocess.run([sys.executable, "-c", code], env=ros_env, capture_output=True, text=True, timeout=400,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    loop = report["closed_loop"]
    assert loop["episodes"] == 2 and [e["episode"] for e in loop["per_episode"]] == [0, 1]
    assert 0.0 <= loop["success_rate"] <= 1.0 and np.isfinite(loop["mean_final_distance"])
    assert report["policy_ticks"] > 0 and report["recorder_lossless"] is True
    assert json.loads((out / "report.json").read_text())["closed_loop"] == loop
    import pyarrow.parquet as pq

    assert pq.read_table(out / "parquet" / "actions.parquet").num_rows >= 1
    assert report["heatmap_frames"] >= 1 and (out / "heatmaps_contact_sheet.png").is_file()
    from rosbags.highlevel import AnyReader

    with AnyReader([out / "bag"]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts.get("/sim_node/episode_outcome") == 2 and counts.get("/sim_node/summary") == 1


def test_settling_lasts_at_least_settle_s_and_never_rounds_to_nothing() -> None:
    from pai_ros.sim.parameters import PARAMS, SimNodeConfig

    defaults = {p.name: p.default for p in PARAMS}
    for settle_s, rate_hz, steps in ((2.0, 15.0, 30), (0.1, 2.0, 1), (2.0, 0.2, 1), (0.5, 3.0, 2), (0.0, 15.0, 0)):
        config = SimNodeConfig.from_parameters({**defaults, "settle_s": settle_s, "rate_hz": rate_hz})
        assert config.settle_steps == steps, (settle_s, rate_hz)
        assert config.settle_steps / rate_hz >= settle_s  # silent at least as long as asked
