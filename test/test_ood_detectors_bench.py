"""The helpers of bench/bench_ood_detectors.py whose errors would silently change its figures."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_ood_detectors import (  # noqa: E402
    PIXEL_CELL,
    given_state,
    moved_state,
    over_ticks,
    pixel_features,
    state_leak,
    upper_p,
)

from pai_ros.policy.observation import Observation  # noqa: E402
from pai_ros.sae.camera_state import fit_camera_state  # noqa: E402
from pai_ros.sae.position_score import ScoreSettings  # noqa: E402


def test_pixel_features_are_per_camera_cells_in_name_order() -> None:
    h, w = 2 * PIXEL_CELL, 3 * PIXEL_CELL
    flat = np.full((h, w, 3), 128, np.uint8)
    busy = flat.copy()
    busy[:PIXEL_CELL, :PIXEL_CELL] = np.arange(PIXEL_CELL * PIXEL_CELL * 3).reshape(PIXEL_CELL, PIXEL_CELL, 3) % 256
    cells, small = pixel_features({"wrist": flat, "front": busy})
    assert cells.shape == (2 * 6, 6) and small.shape == (2 * 6 * 3,)
    # "front" comes first; only its first cell has any spread, and a flat cell's mean is its grey.
    assert cells[0, 3:].min() > 0 and np.all(cells[1:, 3:] == 0)
    np.testing.assert_allclose(cells[6:, :3], 128.0)


def test_over_ticks_never_averages_across_episodes() -> None:
    scores = np.array([1.0, 3.0, 5.0, 100.0, 0.0])
    episode = np.array([0, 0, 0, 1, 1])
    np.testing.assert_allclose(over_ticks(scores, episode, 2), [1.0, 2.0, 4.0, 100.0, 50.0])


def test_upper_p_is_never_zero_and_keeps_nan() -> None:
    p = upper_p(np.array([1.0, 2.0, 3.0]), np.array([0.0, 2.0, 10.0, np.nan]))
    np.testing.assert_allclose(p[:3], [1.0, 0.75, 0.25])
    assert np.isnan(p[3])


def test_state_leak_is_the_share_of_a_state_move_the_prediction_follows() -> None:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(400, 6))
    step = np.array([0.5, 2.0])

    def frames(seen_by_cameras, given):  # camera features = what the images show + 0.4 x the state given
        return {"camera_features": np.hstack([seen_by_cameras, 0.4 * given])}
    truth = images[:, :2]
    probe, _ = fit_camera_state(np.hstack([images, 0.4 * truth]), truth, np.arange(400) // 20, {}, ScoreSettings())
    clean, moved = frames(images, truth), frames(images, truth + step)
    leak = state_leak(probe, clean, moved, step)
    assert 0.0 < min(leak) and max(leak) < 1.0  # it reads the state from both the images and the leak
    cameras_only, _ = fit_camera_state(images, truth, np.arange(400) // 20, {}, ScoreSettings())
    blind = {"camera_features": images}
    assert state_leak(cameras_only, blind, blind, step) == [0.0, 0.0]


def test_the_state_given_is_replaced_or_moved_and_the_images_kept() -> None:
    images = {"front": np.zeros((2, 2, 3), np.uint8)}
    obs = Observation(images, np.array([1.0, 2.0], np.float32), None)
    pool = np.array([[7.0, 8.0], [9.0, 10.0]])
    replaced = given_state(pool)(None, obs)
    assert replaced.images is images and any(np.array_equal(replaced.state, row) for row in pool)
    moved = moved_state(np.array([0.5, -1.0]))(None, obs)
    np.testing.assert_allclose(moved.state, [1.5, 1.0])
    np.testing.assert_array_equal(obs.state, [1.0, 2.0])  # the frame's own observation is left alone


def test_every_keeps_frames_0_s_2s_of_each_episode() -> None:
    """bench_camera_state_fit compares a fit on every 2nd frame with one on every frame: the thinned
    set must be each episode's frames 0, 2, 4, ... as `pai sae calibrate` would run them."""
    from bench_camera_state_fit import every

    frames = {"index": np.array([0, 1, 2, 0, 1, 0]), "episode": np.array([3, 3, 3, 4, 4, 5]),
              "state": np.arange(6.0)}
    kept = every(frames, 2)
    assert kept["episode"].tolist() == [3, 3, 4, 5] and kept["state"].tolist() == [0.0, 2.0, 3.0, 5.0]
    assert every(frames, 1)["state"].tolist() == frames["state"].tolist()
