"""The closed-loop simulator core: reproducible episodes, the expert's motion limits, held bad actions."""

from __future__ import annotations

import numpy as np
import pytest

from pai_ros.errors import UserError
from pai_ros.sim.evaluate import evaluate_closed_loop
from pai_ros.sim.robot import (
    HOLD_NO_ACTION,
    HOLD_NOT_FINITE,
    HOLD_OUT_OF_RANGE,
    HOLD_WRONG_SIZE,
    OUTCOME_MISSED,
    OUTCOME_SUCCESS,
    OUTCOME_TIMEOUT,
    SimConfig,
    SimRobot,
    expert_command,
)
from pai_ros.sim.scene import SceneConfig

SMALL = SimConfig(scene=SceneConfig(front_hw=(32, 40), wrist_hw=(32, 40)))


def test_episodes_are_reproducible_from_the_seed_and_differ_between_indices():
    a, b = SimRobot(SMALL), SimRobot(SMALL)
    obs_a, obs_b = a.reset(5, 3), b.reset(5, 3)
    assert np.array_equal(a.episode.target, b.episode.target)
    assert np.array_equal(obs_a.images["front"], obs_b.images["front"])
    for _ in range(5):
        cmd = [0.5, 0.5, 0.0]
        assert np.array_equal(a.step(cmd).state, b.step(cmd).state)
    assert np.array_equal(a.observe().images["wrist"], b.observe().images["wrist"])
    other = SimRobot(SMALL)
    other.reset(5, 4)
    assert not np.array_equal(other.episode.target, a.episode.target)
    # An episode's layout does not depend on which episodes ran before it.
    c = SimRobot(SMALL)
    c.reset(5, 0)
    c.reset(5, 3)
    assert np.array_equal(c.episode.target, a.episode.target)


def test_observation_has_the_dataset_cameras_and_state():
    robot = SimRobot(SMALL)
    obs = robot.reset(0, 0)
    assert set(obs.images) == {"front", "wrist"}
    assert obs.images["front"].shape == (32, 40, 3) and obs.images["front"].dtype == np.uint8
    assert obs.state.shape == (3,) and obs.state[2] == 0.0
    assert np.allclose(obs.state[:2], robot.episode.start)


def test_the_expert_succeeds_on_every_episode():
    """The dataset's expert, acting through the simulator's limits, reaches and closes every time."""
    robot = SimRobot(SMALL)
    report = evaluate_closed_loop(lambda obs: expert_command(robot), 25, seed=11, robot=robot)
    assert report.success_rate == 1.0, [e.as_dict() for e in report.episodes if not e.success]
    assert report.counts() == {OUTCOME_SUCCESS: 25}
    assert report.mean_final_distance < 0.03
    assert max(e.steps for e in report.episodes) <= SMALL.scene.episode_length
    assert [e.index for e in report.episodes] == list(range(25))
    assert sum(e.held_steps for e in report.episodes) == 0


def test_motion_is_limited_to_the_expert_step():
    robot = SimRobot(SMALL)
    robot.reset(1, 0)
    before = robot.state
    after = robot.step([before[0] + 0.9 if before[0] < 0.5 else 0.0, before[1], 0.0]).state
    moved = float(np.linalg.norm(after[:2] - before[:2]))
    limit = SMALL.scene.max_step + 5 * SMALL.scene.motion_noise * np.sqrt(2)
    assert moved <= limit
    assert moved > SMALL.scene.max_step / 2  # it did move, towards the command
    for _ in range(60):
        if robot.done:
            break
        prev = robot.state
        cur = robot.step([1.1, -0.1, 0.0]).state  # just outside the table: clipped onto it
        assert np.linalg.norm(cur[:2] - prev[:2]) <= limit
        assert 0.0 <= cur[0] <= 1.0 and 0.0 <= cur[1] <= 1.0


@pytest.mark.parametrize("action, reason", [
    (None, HOLD_NO_ACTION),
    ([np.nan, 0.5, 0.0], HOLD_NOT_FINITE),
    ([0.5, np.inf, 0.0], HOLD_NOT_FINITE),
    ([0.5, 0.5], HOLD_WRONG_SIZE),
    ("fast", HOLD_WRONG_SIZE),
    ([5.0, 0.5, 0.0], HOLD_OUT_OF_RANGE),
    ([0.5, -1e9, 0.0], HOLD_OUT_OF_RANGE),
    ([0.5, 0.5, 7.0], HOLD_OUT_OF_RANGE),
])
def test_bad_actions_hold_position_and_say_why(action, reason):
    robot = SimRobot(SMALL)
    robot.reset(2, 0)
    before = robot.state
    result = robot.step(action)
    assert result.held == reason and result.detail
    assert np.array_equal(result.state, before)


def test_no_action_times_out_with_the_holds_counted():
    cfg = SimConfig(scene=SMALL.scene, max_steps=7)
    report = evaluate_closed_loop(lambda obs: None, 2, seed=0, config=cfg)
    assert report.counts() == {OUTCOME_TIMEOUT: 2}
    first = report.episodes[0]
    assert first.steps == 7 and first.held_steps == 7 and first.hold_reasons == {HOLD_NO_ACTION: 7}
    assert first.final_distance >= 0.35  # the start is drawn at least this far from the target
    assert report.success_rate == 0.0


def test_closing_away_from_the_target_is_a_miss():
    robot = SimRobot(SMALL)
    robot.reset(4, 0)
    robot.step([*robot.state[:2], 1.0])
    assert robot.done and robot.outcome.outcome == OUTCOME_MISSED
    with pytest.raises(RuntimeError):
        robot.step([0.5, 0.5, 0.0])


def test_bad_settings_are_one_line_errors():
    with pytest.raises(UserError, match="max_steps"):
        SimConfig(max_steps=0)
    with pytest.raises(UserError, match="success_radius"):
        SimConfig(success_radius=float("nan"))
    with pytest.raises(UserError, match="episodes"):
        evaluate_closed_loop(lambda obs: None, 0, seed=0)


def test_a_policy_runner_drives_the_robot(tiny_act):
    """The real runner on a tiny random policy: it acts every step (no holds) and episodes end."""
    from pai_ros.policy.loading import load_act_policy
    from pai_ros.policy.runner import PolicyRunner

    cfg = SimConfig(scene=SceneConfig(front_hw=(64, 80), wrist_hw=(64, 80)), max_steps=6)
    runner = PolicyRunner(load_act_policy(tiny_act, "cpu"), "replan")
    try:
        report = evaluate_closed_loop(runner, 2, seed=0, config=cfg)
    finally:
        runner.close()
    assert len(report.episodes) == 2
    assert all(e.steps <= 6 for e in report.episodes)
    assert runner.stats.forwards == sum(e.steps for e in report.episodes)
    assert all(set(e.hold_reasons) <= {HOLD_OUT_OF_RANGE} for e in report.episodes)


def test_a_policy_whose_action_is_not_finite_holds_the_robot_as_the_live_node_does(tiny_act):
    """The in-process evaluation must match the live loop: a refused tick is a step without an action."""
    import torch

    from pai_ros.policy.loading import load_act_policy
    from pai_ros.policy.runner import PolicyRunner

    cfg = SimConfig(scene=SceneConfig(front_hw=(64, 80), wrist_hw=(64, 80)), max_steps=4)
    runner = PolicyRunner(load_act_policy(tiny_act, "cpu"), "replan")
    try:
        with torch.no_grad():
            runner.policy.model.action_head.weight.fill_(float("nan"))
        report = evaluate_closed_loop(runner, 1, seed=0, config=cfg)
    finally:
        runner.close()
    (episode,) = report.episodes
    assert episode.outcome == "timeout" and episode.hold_reasons == {HOLD_NO_ACTION: 4}
