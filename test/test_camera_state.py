"""pai_ros.sae.camera_state: do the cameras agree with the joints? Fit, threshold, files, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pai_ros.errors import UserError
from pai_ros.policy.layout import TokenLayout
from pai_ros.sae.camera_state import (
    ALL_CAMERAS,
    CAMERA_STATE_FILE,
    OUTPUT_AND_INPUT,
    POOLED_GRID,
    camera_columns,
    camera_features,
    camera_grids,
    fit_camera_state,
    load_probe,
    save_probe,
)
from pai_ros.sae.ood import auroc
from pai_ros.sae.ood_files import save_tensors
from pai_ros.sae.position_score import ScoreSettings

D_MODEL = 16
LAYOUT = TokenLayout.build(True, False, ["observation.images.front", "observation.images.wrist"], [(6, 8), (2, 3)])


def frames(rng: np.random.Generator, episodes: int, per_episode: int, mixing: np.ndarray) -> tuple[np.ndarray, ...]:
    """Synthetic encoder tokens whose camera cells encode a 3-d robot state (plus noise)."""
    n = episodes * per_episode
    state = rng.uniform(-1.0, 1.0, size=(n, 3))
    tokens = rng.normal(0.0, 0.05, size=(n, LAYOUT.num_tokens, D_MODEL))
    cells = LAYOUT.num_tokens - LAYOUT.num_1d
    tokens[:, LAYOUT.num_1d:] += (state @ mixing).reshape(n, cells, D_MODEL)
    tokens[:, 1] = 5.0  # the state token: constant, so a regression could not lean on it anyway
    return tokens.astype(np.float32), state, np.repeat(np.arange(episodes), per_episode)


def features_of(tokens: np.ndarray) -> np.ndarray:
    return np.stack([camera_features(t, LAYOUT) for t in tokens])


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(3, (LAYOUT.num_tokens - LAYOUT.num_1d) * D_MODEL))
    tokens, state, groups = frames(rng, 10, 30, mixing)
    probe, summary = fit_camera_state(features_of(tokens), state, groups, camera_grids(LAYOUT), ScoreSettings())
    test_tokens, test_state, _ = frames(rng, 4, 30, mixing)
    return probe, summary, test_tokens, test_state


def test_features_pool_each_camera_to_at_most_the_pooled_grid() -> None:
    tokens = torch.zeros(LAYOUT.num_tokens, D_MODEL)
    front = LAYOUT.cameras[0]
    tokens[front.slice] = 2.0
    tokens[front.offset] = 2.0 + 12.0  # one cell of the front camera's 6x8 grid
    feats = camera_features(tokens, LAYOUT)
    front_cells = min(6, POOLED_GRID[0]) * min(8, POOLED_GRID[1])
    assert feats.shape == ((front_cells + 2 * 3) * D_MODEL,)  # the 2x3 wrist grid is kept as it is
    front_part = feats[:front_cells * D_MODEL].reshape(D_MODEL, front_cells)
    # 6x8 -> 4x5 averages 2x2 windows at the corner: the bright cell lands in the first pooled cell only.
    np.testing.assert_allclose(front_part[:, 0], 2.0 + 12.0 / 4)
    np.testing.assert_allclose(front_part[:, 1:], 2.0)
    assert np.allclose(feats[front_cells * D_MODEL:], 0.0)
    with pytest.raises(ValueError, match="layout"):
        camera_features(tokens[:-1], LAYOUT)


def test_with_the_encoder_input_each_camera_is_one_block_of_output_then_input_cells() -> None:
    output, before = torch.zeros(LAYOUT.num_tokens, D_MODEL), torch.zeros(LAYOUT.num_tokens, D_MODEL)
    for i, cam in enumerate(LAYOUT.cameras):
        output[cam.slice], before[cam.slice] = 1.0 + 10 * i, 2.0 + 10 * i
    feats = camera_features(output, LAYOUT, before)
    front = min(6, POOLED_GRID[0]) * min(8, POOLED_GRID[1]) * D_MODEL
    wrist = 2 * 3 * D_MODEL
    assert feats.shape == (2 * (front + wrist),)
    # front output, front input, wrist output, wrist input: camera_columns' blocks stay per camera
    starts = np.cumsum([0, front, front, wrist])
    for start, width, value in zip(starts, (front, front, wrist, wrist), (1.0, 2.0, 11.0, 12.0)):
        np.testing.assert_allclose(feats[start:start + width], value)
    assert camera_columns(camera_grids(LAYOUT), feats.size) == {"front": (0, 2 * front),
                                                                 "wrist": (2 * front, 2 * (front + wrist))}
    with pytest.raises(ValueError, match="layout"):
        camera_features(output, LAYOUT, before[:-1])


def test_agreeing_frames_score_low_and_disagreeing_ones_high(fitted) -> None:
    probe, summary, tokens, state = fitted
    clean = probe.scores(features_of(tokens), state)
    shuffled = probe.scores(features_of(tokens), state[::-1])  # the joints say one thing, the cameras another
    covered = tokens.copy()
    covered[:, LAYOUT.cameras[0].slice] = 0.0  # the front camera sees nothing
    assert auroc(clean, shuffled) > 0.95 and auroc(clean, probe.scores(features_of(covered), state)) > 0.95
    assert set(summary["regressions"]) == {"front", "wrist"}
    assert min(min(r["state_explained"]) for r in summary["regressions"].values()) > 0.9
    # The threshold is a cross-fitted 99th percentile: new in-distribution frames mostly stay under it.
    assert (clean > summary["threshold"]).mean() < 0.05
    assert summary["held_out_frames"] == 300 and summary["fit_frames"] == 300 and "note" in summary  # 300 < 1,000


def test_the_probe_reads_only_camera_tokens(fitted) -> None:
    probe, _, tokens, state = fitted
    moved = tokens.copy()
    moved[:, : LAYOUT.num_1d] += 100.0  # latent and state tokens carry the state itself: never read
    np.testing.assert_allclose(probe.scores(features_of(moved), state), probe.scores(features_of(tokens), state))


def test_one_regression_per_camera_names_the_camera_that_disagrees(fitted) -> None:
    probe, summary, tokens, state = fitted
    assert probe.per_camera and list(probe.regressions) == ["front", "wrist"]
    # Each camera reads its own columns of the features, in layout order, and together all of them.
    assert probe.columns == camera_columns(camera_grids(LAYOUT), features_of(tokens[:1]).shape[1])
    assert probe.columns["front"][0] == 0 and probe.columns["front"][1] == probe.columns["wrist"][0]
    covered = tokens.copy()
    covered[:, LAYOUT.cameras[0].slice] = 0.0  # the front camera sees nothing; the wrist camera is fine
    by_camera = probe.camera_scores(features_of(covered), state)
    assert (by_camera["front"] > 1.0).mean() > 0.9 and (by_camera["wrist"] > 1.0).mean() < 0.1
    clean = probe.camera_scores(features_of(tokens), state)
    # In units of each camera's own threshold, new clean frames sit mostly under 1, and the frame's
    # score is the mean of the cameras'.
    assert all((v > 1.0).mean() < 0.05 for v in clean.values())
    np.testing.assert_allclose(probe.scores(features_of(tokens), state), (clean["front"] + clean["wrist"]) / 2)
    thresholds = {c: r["threshold"] for c, r in summary["regressions"].items()}
    assert thresholds == {c: r.threshold for c, r in probe.regressions.items()}


@pytest.fixture(scope="module")
def combined():
    """One regression over every camera (``per_camera=False``), with the frames it was fitted on."""
    rng = np.random.default_rng(1)
    mixing = rng.normal(size=(3, (LAYOUT.num_tokens - LAYOUT.num_1d) * D_MODEL))
    train, train_state, groups = frames(rng, 10, 30, mixing)
    probe, summary = fit_camera_state(features_of(train), train_state, groups, camera_grids(LAYOUT), ScoreSettings(),
                                      per_camera=False)
    return probe, summary, train, train_state


def test_a_single_regression_over_every_camera_is_still_there_when_asked(combined) -> None:
    probe, summary, train, train_state = combined
    assert not probe.per_camera and list(summary["regressions"]) == [ALL_CAMERAS]
    assert probe.read_frame(train[0], LAYOUT, train_state[0]).by_camera == {}  # nothing to name


def test_a_single_regression_round_trips_through_its_files(combined, tmp_path) -> None:
    probe, summary, train, train_state = combined
    meta = {**json.loads(json.dumps(summary)), "sha256": save_probe(probe, tmp_path, "sae-a")}
    loaded = load_probe(tmp_path, meta, "sae-a")
    assert not loaded.per_camera and loaded.columns == probe.columns
    np.testing.assert_allclose(loaded.scores(features_of(train), train_state), probe.scores(features_of(train),
                                                                                            train_state), rtol=1e-4)


def test_a_frame_with_non_finite_tokens_names_no_camera(fitted) -> None:
    """The message promises empty per-camera lists when camera_state_score is NaN."""
    probe, _, tokens, state = fitted
    broken = tokens[0].copy()
    broken[LAYOUT.cameras[1].offset] = np.nan
    reading = probe.read_frame(broken, LAYOUT, state[0])
    assert np.isnan(reading.score) and reading.by_camera == {}


def test_read_frame_refuses_other_cameras_or_state_sizes(fitted) -> None:
    probe, _, tokens, state = fitted
    reading = probe.read_frame(torch.from_numpy(tokens[0]), LAYOUT, state[0])
    assert reading.score == pytest.approx(probe.scores(features_of(tokens[:1]), state[:1])[0])
    assert set(reading.by_camera) == {"front", "wrist"}
    assert reading.score == pytest.approx(np.mean(list(reading.by_camera.values())))
    other = TokenLayout.build(True, False, ["observation.images.front", "observation.images.wrist"], [(6, 8), (3, 3)])
    with pytest.raises(ValueError, match="token grids"):
        probe.read_frame(np.zeros((other.num_tokens, D_MODEL)), other, state[0])
    with pytest.raises(ValueError, match="state has 2 values"):
        probe.read_frame(tokens[0], LAYOUT, state[0, :2])


def test_files_round_trip_and_refuse_what_was_not_calibrated(fitted, tmp_path) -> None:
    probe, summary, tokens, state = fitted
    sha = save_probe(probe, tmp_path, "sae-a")
    meta = {**json.loads(json.dumps(summary)), "sha256": sha}  # as ood.json keeps it
    loaded = load_probe(tmp_path, meta, "sae-a")
    assert loaded.cameras == probe.cameras and loaded.columns == probe.columns and loaded.per_camera
    np.testing.assert_allclose(loaded.scores(features_of(tokens), state), probe.scores(features_of(tokens), state),
                               rtol=1e-4)
    with pytest.raises(UserError, match="made for SAE sae-a, not sae-b"):
        load_probe(tmp_path, meta, "sae-b")
    with pytest.raises(UserError, match="expected"):
        load_probe(tmp_path, {**meta, "state_dim": 4}, "sae-a")
    with pytest.raises(UserError, match="incomplete"):
        load_probe(tmp_path, {k: v for k, v in meta.items() if k != "cameras"}, "sae-a")
    beyond = json.loads(json.dumps(meta))
    beyond["regressions"]["wrist"]["columns"][1] += 1  # past the features the frame gives
    with pytest.raises(UserError, match="regressions do not fit: regressions read columns"):
        load_probe(tmp_path, beyond, "sae-a")
    renamed = json.loads(json.dumps(meta))
    renamed["regressions"]["side"] = renamed["regressions"].pop("wrist")  # a camera the layout does not have
    with pytest.raises(UserError, match="regressions do not fit"):
        load_probe(tmp_path, renamed, "sae-a")
    negative = json.loads(json.dumps(meta))
    negative["regressions"]["front"]["threshold"] = -1.0
    with pytest.raises(UserError, match="camera 'front' has threshold -1.0, not a positive number"):
        load_probe(tmp_path, negative, "sae-a")
    (tmp_path / CAMERA_STATE_FILE).write_bytes((tmp_path / CAMERA_STATE_FILE).read_bytes()[:-8])
    with pytest.raises(UserError, match="is not the file"):
        load_probe(tmp_path, meta, "sae-a")
    (tmp_path / CAMERA_STATE_FILE).unlink()
    with pytest.raises(UserError, match="is missing"):
        load_probe(tmp_path, meta, "sae-a")


def test_a_policy_without_state_or_too_few_frames_is_one_clear_line() -> None:
    feats = np.zeros((4, 10))
    with pytest.raises(UserError, match="takes none"):
        fit_camera_state(feats, np.zeros((4, 0)), np.arange(4), {}, ScoreSettings())
    with pytest.raises(UserError, match="at least 2 cross-fitted"):
        fit_camera_state(feats[:1], np.zeros((1, 3)), np.zeros(1), {}, ScoreSettings())


def test_a_calibration_from_before_per_camera_regressions_still_loads_and_scores_as_it_did(combined,
                                                                                          tmp_path) -> None:
    """The layout until 2026-12-06: one regression over every camera, tensors under plain names,
    no ``regressions`` in ood.json, and its frame score the regression's own (not over a threshold)."""
    probe, _, train, train_state = combined
    reg = probe.regressions[ALL_CAMERAS]
    sha = save_tensors({n: getattr(reg, n).astype(np.float32)
                        for n in ("weights", "input_mean", "input_scale", "state_mean", "error_scale")},
                       tmp_path / CAMERA_STATE_FILE, "sae-a", "camera tokens -> robot state disagreement")
    old_meta = {"threshold": 7.5, "feature_dim": reg.weights.shape[0], "state_dim": 3, "sha256": sha,
                "cameras": {c: list(g) for c, g in camera_grids(LAYOUT).items()}}
    loaded = load_probe(tmp_path, old_meta, "sae-a")
    assert not loaded.per_camera and loaded.regressions[ALL_CAMERAS].threshold == 1.0
    raw = probe.scores(features_of(train), train_state) * reg.threshold  # what the old code published
    np.testing.assert_allclose(loaded.scores(features_of(train), train_state), raw, rtol=1e-4)
    assert loaded.read_frame(train[0], LAYOUT, train_state[0]).by_camera == {}


def test_a_calibration_on_the_encoder_input_needs_it_and_says_so(tmp_path) -> None:
    rng = np.random.default_rng(3)
    mixing = rng.normal(size=(3, (LAYOUT.num_tokens - LAYOUT.num_1d) * D_MODEL))
    tokens, state, groups = frames(rng, 10, 30, mixing)
    before = tokens + rng.normal(0.0, 0.05, size=tokens.shape).astype(np.float32)
    feats = np.stack([camera_features(t, LAYOUT, b) for t, b in zip(tokens, before)])
    probe, summary = fit_camera_state(feats, state, groups, camera_grids(LAYOUT), ScoreSettings(),
                                      inputs=OUTPUT_AND_INPUT)
    assert probe.reads_encoder_input and summary["inputs"] == ["encoder_output", "encoder_input"]
    reading = probe.read_frame(tokens[0], LAYOUT, state[0], before[0])
    assert reading.score == pytest.approx(probe.scores(feats[:1], state[:1])[0])
    with pytest.raises(ValueError, match="encoder's input tokens"):
        probe.read_frame(tokens[0], LAYOUT, state[0])
    meta = {**json.loads(json.dumps(summary)), "sha256": save_probe(probe, tmp_path, "sae-a")}
    assert load_probe(tmp_path, meta, "sae-a").inputs == OUTPUT_AND_INPUT
    with pytest.raises(UserError, match="reads tokens \\['encoder_output', 'decoder_output'\\]"):
        load_probe(tmp_path, {**meta, "inputs": ["encoder_output", "decoder_output"]}, "sae-a")


def test_a_per_camera_calibration_on_the_encoder_output_alone_still_scores_as_it_did(fitted, tmp_path) -> None:
    """ood.json from before ``inputs``: the regressions read the encoder's output only, whatever the tick gives."""
    probe, summary, tokens, state = fitted
    meta = {**json.loads(json.dumps(summary)), "sha256": save_probe(probe, tmp_path, "sae-a")}
    meta.pop("inputs")
    loaded = load_probe(tmp_path, meta, "sae-a")
    assert loaded.inputs == ("encoder_output",) and not loaded.reads_encoder_input
    before = tokens[0] + 1.0
    assert loaded.read_frame(tokens[0], LAYOUT, state[0], before).score == pytest.approx(
        probe.read_frame(tokens[0], LAYOUT, state[0]).score, rel=1e-4)


def test_a_fit_without_the_encoder_input_says_why_in_its_summary() -> None:
    """A LeRobot that hands its encoder the tokens another way gives no input cells: said, not silent."""
    from pai_ros.sae.calibrate import Pass, _fit_camera_state

    rng = np.random.default_rng(4)
    mixing = rng.normal(size=(3, (LAYOUT.num_tokens - LAYOUT.num_1d) * D_MODEL))
    tokens, state, groups = frames(rng, 6, 20, mixing)
    cal = Pass(np.zeros(0), np.zeros((0, 0)), groups, features_of(tokens), state, LAYOUT)
    calibration: dict = {}
    probe = _fit_camera_state(cal, None, ScoreSettings(), calibration)
    assert probe is not None and not probe.reads_encoder_input
    assert "gave no encoder input tokens" in calibration["camera_state"]["inputs_note"]


def test_a_joint_that_never_moved_explains_nothing_without_a_numpy_warning() -> None:
    """A constant state dimension (a gripper never used in calibration) was 0/0: numpy's RuntimeWarning on stderr
    and NaN in the summary, which strict JSON cannot hold."""
    import json
    import warnings

    rng = np.random.default_rng(5)
    mixing = rng.normal(size=(3, (LAYOUT.num_tokens - LAYOUT.num_1d) * D_MODEL))
    tokens, state, groups = frames(rng, 6, 20, mixing)
    state[:, 2] = 0.3  # not exact in binary: its mean leaves a variance of ~1e-26, not 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _, summary = fit_camera_state(features_of(tokens), state, groups, camera_grids(LAYOUT), ScoreSettings())
    for regression in summary["regressions"].values():
        assert regression["state_explained"][2] is None and regression["state_explained"][0] > 0.5
    json.dumps(summary, allow_nan=False)
