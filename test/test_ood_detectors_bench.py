"""The helpers of bench/bench_ood_detectors.py whose errors would silently change its figures."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_ood_detectors import PIXEL_CELL, over_ticks, pixel_features, upper_p  # noqa: E402


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
