"""The synthetic reaching task: the ground truth it records must be true (no ROS, no LeRobot)."""

import numpy as np
import pytest

from pai_ros.sim.scene import (
    NOT_VISIBLE,
    TARGET_RGB,
    SceneConfig,
    expert_action,
    render_front,
    render_wrist,
    rollout,
    sample_episode,
    target_pixels,
)

CFG = SceneConfig(pixel_noise=0.0)


@pytest.mark.parametrize("seed", range(5))
def test_target_pixel_is_the_red_block_in_both_cameras(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ep = sample_episode(rng, CFG)
    state = np.array([*ep.start, 0.0], dtype=np.float32)
    front_px, _ = target_pixels(ep, state, CFG)
    front = render_front(ep, state, CFG)
    u, v = front_px.astype(int)
    assert tuple(front[v, u]) == TARGET_RGB
    # Near the target the wrist camera sees it too, at the recorded pixel.
    near = np.array([ep.target[0] + 0.05, ep.target[1] - 0.05, 0.0], dtype=np.float32)
    _, wrist_px = target_pixels(ep, near, CFG)
    assert tuple(wrist_px) != NOT_VISIBLE
    wu, wv = wrist_px.astype(int)
    assert tuple(render_wrist(ep, near, CFG)[wv, wu]) == TARGET_RGB


def test_red_appears_only_at_the_target() -> None:
    ep = sample_episode(np.random.default_rng(3), CFG)
    state = np.array([*ep.start, 0.0], dtype=np.float32)
    front = render_front(ep, state, CFG)
    red = np.all(front == TARGET_RGB, axis=-1)
    vs, us = np.nonzero(red)
    h, w = CFG.front_hw
    assert abs(us.mean() - ep.target[0] * w) < 1.5 and abs(vs.mean() - ep.target[1] * h) < 1.5


def test_far_target_is_not_visible_in_wrist_camera() -> None:
    ep = sample_episode(np.random.default_rng(0), CFG)
    far = np.array([ep.target[0] + 0.6, ep.target[1], 0.0], dtype=np.float32)
    _, wrist_px = target_pixels(ep, far, CFG)
    assert tuple(wrist_px) == NOT_VISIBLE


def test_expert_reaches_and_closes() -> None:
    rng = np.random.default_rng(11)
    ep = sample_episode(rng, CFG)
    frames = rollout(ep, rng, SceneConfig(episode_length=60, pixel_noise=0.0))
    assert np.linalg.norm(frames[-1].state[:2] - ep.target) < 0.03
    assert frames[-1].action[2] == 1.0 and frames[0].action[2] == 0.0
    steps = [np.linalg.norm(f.action[:2] - f.state[:2]) for f in frames]
    assert max(steps) <= CFG.max_step + 1e-6


def test_episodes_end_a_few_frames_after_the_close() -> None:
    cfg = SceneConfig(frames_after_close=3, pixel_noise=0.0)
    rng = np.random.default_rng(5)
    for _ in range(10):
        frames = rollout(sample_episode(rng, cfg), rng, cfg)
        closing = [f.action[2] for f in frames].index(1.0)
        assert len(frames) == closing + 1 + 3 < cfg.episode_length
        assert all(f.action[2] == 1.0 for f in frames[closing:])


def test_expert_action_depends_on_target_not_only_state() -> None:
    state = np.array([0.5, 0.5, 0.0], dtype=np.float32)
    a = expert_action(state, np.array([0.1, 0.5]), CFG)
    b = expert_action(state, np.array([0.9, 0.5]), CFG)
    assert a[0] < 0.5 < b[0]


def test_blocks_do_not_overlap_and_episodes_are_reproducible() -> None:
    for seed in range(20):
        ep = sample_episode(np.random.default_rng(seed), CFG)
        centres = np.vstack([ep.target, ep.distractors])
        d = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.eye(len(centres))
        assert d.min() >= CFG.block_size
    a = sample_episode(np.random.default_rng(5), CFG)
    b = sample_episode(np.random.default_rng(5), CFG)
    assert np.array_equal(a.target, b.target) and np.array_equal(a.start, b.start)
