"""The per-position OOD score: its statistics and cross-fitted threshold, calibration on a tiny
policy, the live SAE and tick that fill ``ood_score``, and the files it reads going wrong."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import one_torch_thread

from pai_ros.errors import UserError
from pai_ros.sae.errors import CannotFit, SaeMismatch
from pai_ros.sae.position_score import (
    MEAN,
    POSITIONS_FILE,
    STD,
    ScoreSettings,
    calibrate_positions,
    cross_fitted_scores,
    fit_stats,
    fold_of_groups,
    frame_scores,
    threshold_note,
)


def synthetic_errors(frames: int, tokens: int, seed: int) -> np.ndarray:
    """Log-normal token errors whose typical size differs 100x between positions."""
    rng = np.random.default_rng(seed)
    return np.exp(rng.normal(0.0, 0.5, (frames, tokens))) * np.logspace(-2, 0, tokens)


def test_too_few_frames_is_a_cannot_fit_that_calibration_records() -> None:
    # pai sae calibrate skips a score only for CannotFit (recorded in ood.json); every other error stops it.
    with pytest.raises(CannotFit, match="need at least 2 cross-fitted calibration frames"):
        calibrate_positions(synthetic_errors(2, 5, 0), np.zeros(2, dtype=int), ScoreSettings())
    with pytest.raises(CannotFit, match="frames >= 2"):
        fit_stats(synthetic_errors(1, 5, 0))
    assert issubclass(CannotFit, UserError)  # a user error all the same: one line where it does stop


def test_a_local_corruption_scores_above_the_cross_fitted_threshold() -> None:
    settings = ScoreSettings(top_fraction=0.1, target_fpr=0.05)
    errors = synthetic_errors(200, 50, 0)
    stats, summary = calibrate_positions(errors, np.repeat(np.arange(10), 20), settings)
    clean = frame_scores(stats, synthetic_errors(200, 50, 1), settings)
    # Five of fifty positions, the ones whose error is normally smallest, go 20x worse: the
    # frame's total error barely moves (the big positions dominate it), the score does.
    bad = synthetic_errors(200, 50, 2)
    bad[:, :5] *= 20.0
    corrupted = frame_scores(stats, bad, settings)
    assert (corrupted > summary["threshold"]).mean() > 0.95
    assert (clean > summary["threshold"]).mean() < 0.15  # target 5%, on fresh frames
    assert summary["num_tokens"] == 50 and summary["held_out_frames"] == 200


def test_a_threshold_on_too_few_frames_says_so() -> None:
    settings = ScoreSettings(target_fpr=0.01)
    errors = synthetic_errors(120, 20, 6)  # the demo's calibration: 120 frames, a 1% threshold
    _, summary = calibrate_positions(errors, np.repeat(np.arange(8), 15), settings)
    assert "top 1 of 120 calibration frames" in summary["note"] and "1,000 frames" in summary["note"]
    assert threshold_note(1000, 0.01) is None and threshold_note(999, 0.01) is not None
    assert threshold_note(200, 0.05) is None  # 10 frames above a 5% threshold


def test_two_sided_catches_errors_that_are_too_small() -> None:
    errors = synthetic_errors(100, 40, 3)
    stats = fit_stats(errors)
    easy = synthetic_errors(20, 40, 4)
    easy[:, :8] *= 1e-3  # a flat grey patch reconstructs far better than any real cell did
    one = frame_scores(stats, easy, ScoreSettings(two_sided=False)).mean()
    two = frame_scores(stats, easy, ScoreSettings(two_sided=True)).mean()
    assert two > 3.0 * max(one, 1.0)


def test_folds_keep_episodes_whole_and_held_out_scores_exceed_in_sample_ones() -> None:
    groups = np.repeat([4, 7, 9], 5)
    fold = fold_of_groups(groups, 2)
    for g in (4, 7, 9):
        assert len(set(fold[groups == g])) == 1
    assert fold_of_groups(np.zeros(10), 2).tolist() == [0] * 5 + [1] * 5
    errors = synthetic_errors(40, 30, 5)
    groups = np.repeat(np.arange(4), 10)
    held = cross_fitted_scores(errors, groups, ScoreSettings())
    in_sample = frame_scores(fit_stats(errors), errors, ScoreSettings())
    assert np.isfinite(held).all() and held.mean() > in_sample.mean()


def test_settings_and_shapes_are_checked() -> None:
    with pytest.raises(UserError, match="top_fraction"):
        ScoreSettings(top_fraction=0.0)
    with pytest.raises(UserError, match="target_fpr"):
        ScoreSettings(target_fpr=1.0)
    stats = fit_stats(synthetic_errors(10, 6, 6))
    with pytest.raises(ValueError, match="7 tokens"):
        frame_scores(stats, np.ones(7), ScoreSettings())
    with pytest.raises(UserError, match="at least 2"):
        calibrate_positions(synthetic_errors(2, 6, 7), np.zeros(2), ScoreSettings())


def test_covered_camera_blacks_out_that_camera_only() -> None:
    from pai_ros.policy.observation import Observation
    from pai_ros.sae.ood import corruptions

    rng = np.random.default_rng(0)
    images = {c: rng.integers(1, 256, size=(8, 10, 3), dtype=np.uint8) for c in ("front", "wrist")}
    obs = Observation(images, np.zeros(3, np.float32))
    kinds = corruptions(["front", "wrist"], {c: im.shape for c, im in images.items()})
    assert {"covered_front", "covered_wrist"} <= set(kinds)
    out = kinds["covered_wrist"](None, obs)
    assert not out.images["wrist"].any() and out.images["wrist"].shape == images["wrist"].shape
    assert np.array_equal(out.images["front"], images["front"]) and images["wrist"].all()  # input untouched


# ----------------------------------------------------------- the tiny policy, end to end


def occlude(obs):
    from pai_ros.sae.ood import corruptions

    return corruptions(list(obs.images), {c: im.shape for c, im in obs.images.items()})["occlusion"](None, obs)


def occlude_frame(_frame, obs):
    return occlude(obs)


@pytest.fixture(scope="module")
def calibrated(tiny_act: Path, tiny_dataset, tiny_sae: Path, tmp_path_factory: pytest.TempPathFactory):
    """A copy of the tiny SAE calibrated on episodes 0-1, evaluated on episode 2."""
    from pai_ros.policy.runner import activations_runner
    from pai_ros.sae.calibrate import calibrate, write_calibration
    from pai_ros.sae.model import load_sae

    root, _ = tiny_dataset
    sae_dir = tmp_path_factory.mktemp("calibrated") / "sae"
    shutil.copytree(tiny_sae, sae_dir)
    runner = activations_runner(tiny_act, "cpu")
    loaded = load_sae(sae_dir)
    with one_torch_thread():
        result = calibrate(runner, loaded, root, [0, 1], evaluate=[2], progress=False,
                           score=ScoreSettings(top_fraction=0.2, two_sided=False, target_fpr=0.1))
    written = write_calibration(loaded, result)
    yield sae_dir, result, written, runner
    runner.close()


def test_calibration_writes_the_statistics_and_an_occluded_camera_scores_above_the_threshold(calibrated) -> None:
    sae_dir, result, written, _ = calibrated
    assert sae_dir / POSITIONS_FILE in written
    cal = json.loads((sae_dir / "ood.json").read_text())
    pos = cal["position_score"]
    assert pos["num_tokens"] == 14 and pos["file"] == POSITIONS_FILE and len(pos["sha256"]) == 64
    report = json.loads((sae_dir / "ood_report.json").read_text())
    occl = report["corruptions"]["occlusion"]
    # 14 tokens of a random-weight policy, 24 calibration and 12 evaluation frames: the score's
    # AUROC on this toy moved between 0.77 and 0.98 from one suite to the next (an unexplained
    # dependence on what ran before; the fixtures are seeded and single-threaded). The claim
    # tested is separation; the figure is measured on the trained demo policy by bench_ood.py (0.947).
    assert occl["score_auroc"] >= 0.7
    assert occl["score_flagged_fraction"] > report["clean"]["score_flagged_fraction"]
    assert report["clean"]["score_flagged_fraction"] <= 0.35
    assert result.clean_scores is not None and result.clean_scores.shape == result.clean.shape


def test_the_live_sae_fills_the_score_and_flags_by_it(calibrated, tiny_dataset) -> None:
    from pai_ros.data.episodes import iter_episode, read_info
    from pai_ros.live.sae import LiveSae
    from pai_ros.policy.observation import Observation

    sae_dir, _, _, runner = calibrated
    root, _ = tiny_dataset
    live, why = LiveSae.load(str(sae_dir), runner)
    assert why is None and "per-position OOD score threshold" in live.describe()
    clean, bad = [], []
    with one_torch_thread():  # the figures below are for the single-thread numbers (see the fixture)
        for frame in iter_episode(root, 2, read_info(root)):  # not a calibration episode
            obs = Observation(frame.images, frame.state, frame.env_state)
            for out, o in ((clean, obs), (bad, occlude(obs))):
                runner.reset()
                out.append(live.encode(runner.step(o).capture.encoder_output[0], 5))
    for f in clean + bad:
        assert f.ood_score is not None and f.is_ood == (f.ood_score > f.ood_score_threshold)
    assert sum(f.is_ood for f in bad) > sum(f.is_ood for f in clean)  # see the AUROC note above
    assert np.mean([f.ood_score for f in bad]) > np.mean([f.ood_score for f in clean])
    flagged = next(f for f in bad if f.is_ood)
    assert "per-position OOD score" in flagged.ood_reason()
    d = live.diagnostics()
    assert float(d["ood_score"]) == pytest.approx(bad[-1].ood_score, rel=1e-4) and "ood_score_problem" not in d


def test_a_calibration_interrupted_at_its_plot_leaves_no_old_report_beside_the_new_threshold(
        calibrated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    import pai_ros.sae.calibrate as calibrate_module
    from pai_ros.sae.model import load_sae

    sae_dir, result, _, _ = calibrated
    copy = tmp_path / "sae"
    shutil.copytree(sae_dir, copy)
    assert (copy / "ood_report.json").is_file() and (copy / "ood_errors.png").is_file()
    again = dataclasses.replace(result, calibration={**result.calibration, "threshold": 123.0})

    def crash(*_args, **_kwargs):
        raise KeyboardInterrupt  # the user's Ctrl-C while the plot is drawn

    monkeypatch.setattr(calibrate_module, "plot_ood", crash)
    with pytest.raises(KeyboardInterrupt):
        calibrate_module.write_calibration(load_sae(copy), again)
    assert json.loads((copy / "ood.json").read_text())["threshold"] == 123.0
    # The old report and plot judged the old threshold: neither may sit beside the new one.
    assert not (copy / "ood_report.json").exists() and not (copy / "ood_errors.png").exists()


def test_an_sae_without_statistics_keeps_the_old_flag(calibrated, tiny_sae: Path, tmp_path: Path) -> None:
    from pai_ros.live.sae import LiveSae
    from pai_ros.sae.model import content_id

    _, _, _, runner = calibrated
    plain, _ = LiveSae.load(str(tiny_sae), runner)  # no ood.json at all
    old = tmp_path / "old"
    shutil.copytree(tiny_sae, old)
    (old / "ood.json").write_text(json.dumps({"sae_id": content_id(old), "threshold": 1e-9, "rule": "p99"}))
    legacy, _ = LiveSae.load(str(old), runner)
    runner.reset()
    tokens = runner.step(random_obs()).capture.encoder_output[0]
    a, b = plain.encode(tokens, 5), legacy.encode(tokens, 5)
    assert a.ood_score is None and a.ood_score_threshold is None and not a.is_ood
    assert b.ood_score is None and b.is_ood and "reconstruction error" in b.ood_reason()
    assert legacy.diagnostics()["ood_score_threshold"] == "none"


def random_obs():
    from pai_ros.policy.observation import Observation

    rng = np.random.default_rng(0)
    return Observation({c: rng.integers(0, 255, (64, 80, 3), dtype=np.uint8) for c in ("front", "wrist")},
                       np.zeros(3, dtype=np.float32), None)


def _rewrite_stats(sae_dir: Path, tensors: dict[str, np.ndarray]) -> None:
    """Replace the statistics and re-sign them in ood.json (so the shape check, not the hash, speaks)."""
    import hashlib

    from safetensors.numpy import save_file

    save_file(tensors, str(sae_dir / POSITIONS_FILE))
    cal = json.loads((sae_dir / "ood.json").read_text())
    cal["position_score"]["sha256"] = hashlib.sha256((sae_dir / POSITIONS_FILE).read_bytes()).hexdigest()
    (sae_dir / "ood.json").write_text(json.dumps(cal))


def test_bad_statistics_files_are_one_clear_error(calibrated, tmp_path: Path) -> None:
    from pai_ros.live.sae import LiveSae

    sae_dir, _, _, runner = calibrated
    bad = tmp_path / "bad"
    shutil.copytree(sae_dir, bad)
    _rewrite_stats(bad, {MEAN: np.zeros(13, np.float32), STD: np.ones(13, np.float32)})
    with pytest.raises(UserError, match=r"'log_error_mean' has shape \[13\], expected \[14\]"):
        LiveSae.load(str(bad), runner)
    _rewrite_stats(bad, {MEAN: np.zeros(14, np.float32), STD: np.zeros(14, np.float32)})
    with pytest.raises(UserError, match="must be positive"):
        LiveSae.load(str(bad), runner)
    (bad / POSITIONS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="is not the file"):  # the hash in ood.json no longer matches
        LiveSae.load(str(bad), runner)
    (bad / POSITIONS_FILE).unlink()
    with pytest.raises(UserError, match="is missing"):
        LiveSae.load(str(bad), runner)


def test_a_camera_state_threshold_that_is_not_a_positive_number_is_one_clear_error(calibrated,
                                                                                   tmp_path: Path) -> None:
    """A NaN threshold would never flag: refused at load, as the per-camera thresholds are."""
    from pai_ros.live.sae import LiveSae

    sae_dir, _, _, runner = calibrated
    bad = tmp_path / "bad"
    shutil.copytree(sae_dir, bad)
    cal = json.loads((bad / "ood.json").read_text())
    cal["camera_state"]["threshold"] = -2.0
    (bad / "ood.json").write_text(json.dumps(cal))
    with pytest.raises(UserError, match="camera_state threshold is -2.0, not a positive number"):
        LiveSae.load(str(bad), runner)


def test_statistics_for_another_token_count_fall_back_with_a_diagnostic(calibrated, tmp_path: Path) -> None:
    """Consistent files, but calibrated with other camera sizes: no crash, the error decides, WARN says why."""
    from pai_ros.live.sae import LiveSae

    sae_dir, _, _, runner = calibrated
    other = tmp_path / "other"
    shutil.copytree(sae_dir, other)
    cal = json.loads((other / "ood.json").read_text())
    cal["position_score"]["num_tokens"] = 20
    (other / "ood.json").write_text(json.dumps(cal))
    _rewrite_stats(other, {MEAN: np.zeros(20, np.float32), STD: np.ones(20, np.float32)})
    live, _ = LiveSae.load(str(other), runner)
    runner.reset()
    out = live.encode(runner.step(random_obs()).capture.encoder_output[0], 5)
    assert out.ood_score is None and out.ood_score_threshold is None
    assert out.is_ood == (out.frame.reconstruction_error > out.threshold)
    assert "14 tokens" in live.diagnostics()["ood_score_problem"]


def test_the_tick_reports_the_score(calibrated, tiny_act: Path) -> None:
    from test_live_tick import (  # the same fake inputs as the tick's own tests
        T0,
        inputs,
    )

    from pai_ros.live import LiveConfig, LiveTick

    sae_dir, _, _, _ = calibrated
    live, notes = LiveTick.create(LiveConfig.defaults(str(tiny_act), sae_path=str(sae_dir)))
    try:
        assert notes == []
        out = live.step(inputs(T0), T0)
        f = out.features
        assert f.ood_score is not None and np.isfinite(f.ood_score) and f.ood_score_threshold > 0
        assert f.is_ood == (f.ood_score > f.ood_score_threshold)
        if f.is_ood:
            assert "per-position OOD score" in live.health.report().message
        assert live.diagnostics(T0).values["ood_score_threshold"] != "none"
        # The tiny policy takes the robot state, so the calibration has the camera-state score too.
        assert f.camera_state_score is not None and np.isfinite(f.camera_state_score)
        assert f.camera_state_threshold == pytest.approx(json.loads((sae_dir / "ood.json").read_text())
                                                         ["camera_state"]["threshold"])
        if f.cameras_disagree:
            assert "cameras disagree with the joints" in live.health.report().message
        assert live.diagnostics(T0).values["camera_state_threshold"] != "none"
    finally:
        live.close()


def test_the_message_carries_the_score_and_the_verdict() -> None:
    pytest.importorskip("pai_ros.msg")
    from builtin_interfaces.msg import Time

    from pai_ros.ros.messages import feature_activations
    from pai_ros.sae.frame import FrameFeatures

    ff = FrameFeatures(np.array([2], np.uint32), np.array([1.5], np.float32), np.array([3], np.uint32), 4, 1.0, 0.5,
                       np.zeros(0), np.zeros(0), np.zeros(0))
    msg = feature_activations(ff, "abc", 8, Time(), 10.0, ood_score=7.0, ood_score_threshold=5.0, is_ood=True,
                              camera_state_score=0.5, camera_state_threshold=3.0,
                              camera_state_by_camera={"front": 0.75, "wrist": 0.25})
    assert (msg.ood_score, msg.ood_score_threshold, msg.is_ood) == (7.0, 5.0, True)
    assert (msg.camera_state_score, msg.camera_state_threshold) == (0.5, 3.0)
    assert list(msg.camera_state_cameras) == ["front", "wrist"]
    assert list(msg.camera_state_camera_scores) == [0.75, 0.25]
    legacy = feature_activations(ff, "abc", 8, Time(), 0.25)
    assert np.isnan(legacy.ood_score) and np.isnan(legacy.ood_score_threshold) and legacy.is_ood
    assert np.isnan(legacy.camera_state_score) and np.isnan(legacy.camera_state_threshold)
    assert list(legacy.camera_state_cameras) == [] and len(legacy.camera_state_camera_scores) == 0


def test_recorded_features_carry_the_score_as_the_live_message_does(calibrated, tiny_dataset, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from pai_ros.features.record import record_episode
    from pai_ros.sae.model import load_sae
    from pai_ros.sae.ood import load_calibration

    sae_dir, _, _, runner = calibrated
    root, _ = tiny_dataset
    loaded = load_sae(sae_dir)
    cal, _ = load_calibration(sae_dir, loaded.sae_id)
    rec, _ = record_episode(runner, loaded, root, 2, tmp_path / "rec", calibration=cal, progress=False)
    rows = pq.read_table(rec.directory / "features.parquet").to_pylist()
    assert len(rows) == 12
    for r in rows:
        assert np.isfinite(r["ood_score"]) and r["ood_score_threshold"] == pytest.approx(cal.score_threshold)
        assert r["is_ood"] == (r["ood_score"] > r["ood_score_threshold"])
        assert np.isfinite(r["camera_state_score"])
        assert r["camera_state_threshold"] == pytest.approx(cal.camera_state_threshold)
        assert r["camera_state_cameras"] == list(cal.camera_state.regressions)
        assert r["camera_state_score"] == pytest.approx(np.mean(r["camera_state_camera_scores"]), rel=1e-5)


# ------------------------------------------------------ do the cameras agree with the joints?


def test_calibration_fits_the_camera_state_score_beside_the_others(calibrated) -> None:
    from pai_ros.sae.camera_state import CAMERA_STATE_FILE
    from pai_ros.sae.model import load_sae
    from pai_ros.sae.ood import load_calibration

    sae_dir, result, written, _ = calibrated
    cs = json.loads((sae_dir / "ood.json").read_text())["camera_state"]
    assert sae_dir / CAMERA_STATE_FILE in written and cs["file"] == CAMERA_STATE_FILE
    # Episodes 0-1 of the tiny dataset alone: too few for a steady regression, and ood.json says so.
    assert cs["episodes"] == 2 and "fewer than 20" in cs["episodes_note"] and cs["state_dim"] == 3
    assert cs["episodes_note"].endswith("add the policy's training episodes (--state-fit-dataset-root)")
    assert set(result.report["corruptions"]["occlusion"]) >= {"camera_state_auroc", "camera_state_flagged_fraction"}
    cal, why = load_calibration(sae_dir, load_sae(sae_dir).sae_id)
    assert cal.camera_state is not None and cal.camera_state_threshold == pytest.approx(cs["threshold"])
    # One regression per camera, each with its own threshold, and the report says which camera disagreed.
    cameras = list(cal.camera_state.cameras)
    assert list(cs["regressions"]) == cameras == list(cal.camera_state.regressions) and len(cameras) >= 2
    for name, entry in cs["regressions"].items():
        assert cal.camera_state.regressions[name].threshold == pytest.approx(entry["threshold"])
    for r in (result.report["clean"], *result.report["corruptions"].values()):
        assert list(r["camera_state_over_own_threshold"]) == cameras
    assert "camera-state threshold" in why


def test_an_evaluation_pass_keeps_camera_state_scores_not_features(calibrated, tiny_dataset) -> None:
    """What the evaluation passes hold per frame is the score (features are ~80 KB a frame of real cameras)."""
    from pai_ros.sae.calibrate import _pass

    _, result, _, runner = calibrated
    root, _ = tiny_dataset
    kept = _pass(runner, None, root, [2], False, "features", occlude_frame)
    scored = _pass(runner, None, root, [2], False, "scores", occlude_frame, probe=result.camera_state)
    assert kept.features.shape[0] == 12 and kept.camera_state_scores is None
    assert scored.features.size == 0 and scored.camera_state_scores.shape == (12,)
    np.testing.assert_allclose(scored.camera_state_scores, result.camera_state.scores(kept.features, kept.states),
                               rtol=1e-6)
    by_camera = result.camera_state.camera_scores(kept.features, kept.states)
    assert list(scored.camera_scores) == list(by_camera)
    for camera, values in by_camera.items():
        np.testing.assert_allclose(scored.camera_scores[camera], values, rtol=1e-6)
    np.testing.assert_array_equal(scored.states, kept.states)


def test_the_live_sae_scores_the_cameras_against_the_joints(calibrated) -> None:
    from pai_ros.live.sae import LiveSae

    sae_dir, _, _, runner = calibrated
    live, _ = LiveSae.load(str(sae_dir), runner)
    probe = live.calibration.camera_state
    obs = random_obs()
    runner.reset()
    tick = runner.step(obs)
    tokens, layout, enc_in = tick.capture.encoder_output[0], tick.capture.layout, tick.capture.encoder_input[0]
    # The calibration reads each camera's tokens before the encoder too (its backbone cells alone).
    assert probe.inputs == ("encoder_output", "encoder_input") and not torch.equal(enc_in, tokens)
    out = live.encode(tokens, 5, layout, obs.state, enc_in)
    reading = probe.read_frame(tokens, layout, obs.state, enc_in)
    assert out.camera_state_score == pytest.approx(reading.score)
    assert out.camera_state_by_camera == pytest.approx(reading.by_camera) and len(reading.by_camera) >= 2
    assert out.camera_state_threshold == live.camera_state_threshold
    assert out.cameras_disagree == (out.camera_state_score > out.camera_state_threshold)
    values = live.diagnostics()
    for camera, ratio in reading.by_camera.items():
        assert float(values[f"camera_state_score_{camera}"]) == pytest.approx(ratio, rel=1e-4)
    # The joints report a state far from what the cameras show: the score rises past the threshold,
    # every camera's past its own, and the status words name them.
    error = np.max([r.error_scale for r in probe.regressions.values()], axis=0)
    far = live.encode(tokens, 5, layout, obs.state + 20.0 * error.astype(np.float32), enc_in)
    assert far.camera_state_score > out.camera_state_score and far.cameras_disagree
    assert all(r > 1.0 for r in far.camera_state_by_camera.values())
    assert all(f"{camera} " in far.disagreement() for camera in far.camera_state_by_camera)
    # A tick without the robot state has no score, and the diagnostics say why (is_ood is untouched).
    none = live.encode(tokens, 5)
    assert none.camera_state_score is None and none.camera_state_threshold is None and not none.cameras_disagree
    assert none.camera_state_by_camera == {}
    assert "no robot state" in live.diagnostics()["camera_state_problem"]
    assert none.is_ood == out.is_ood
    # Without the encoder's input tokens the calibration cannot read the frame: off, and said.
    blind = live.encode(tokens, 5, layout, obs.state)
    assert blind.camera_state_score is None and "encoder's input tokens" in live.diagnostics()["camera_state_problem"]


def test_a_policy_without_robot_state_gets_no_camera_state_score(tiny_dataset, tiny_sae: Path,
                                                                 tmp_path: Path) -> None:
    """Nothing to compare the cameras with: ood.json says why, no file, and the other scores stand."""
    from pai_ros.policy.random_init import save_random_act
    from pai_ros.policy.runner import activations_runner
    from pai_ros.sae.calibrate import StateFit, calibrate, write_calibration
    from pai_ros.sae.camera_state import CAMERA_STATE_FILE
    from pai_ros.sae.model import load_sae

    policy = save_random_act(tmp_path / "act", {"front": (64, 80), "wrist": (64, 80)}, state_dim=None)
    sae_dir = tmp_path / "sae"
    shutil.copytree(tiny_sae, sae_dir)
    # tiny_sae is tiny_act's; for this policy of the same width it stands in as an SAE from before
    # policy ids were recorded (checked by width alone), so that calibrate runs at all.
    cfg = json.loads((sae_dir / "cfg.json").read_text())
    cfg["source"].pop("policy_id", None)
    (sae_dir / "cfg.json").write_text(json.dumps(cfg))
    runner = activations_runner(policy, "cpu")
    loaded = load_sae(sae_dir)
    root = tiny_dataset[0]
    with one_torch_thread():
        result = calibrate(runner, loaded, root, [0, 1], progress=False, state_fit=StateFit(root, [2]))
    runner.close()
    written = write_calibration(loaded, result)
    cal = json.loads((sae_dir / "ood.json").read_text())
    assert "takes no robot state" in cal["camera_state_skipped"] and "camera_state" not in cal
    assert "camera_state_fit" not in cal  # the training episodes were not even run
    assert result.camera_state is None and not (sae_dir / CAMERA_STATE_FILE).exists()
    assert sae_dir / POSITIONS_FILE in written


def test_the_state_fit_runs_no_more_frames_than_the_regression_keeps(tiny_dataset, tiny_act: Path, tiny_sae: Path,
                                                                      monkeypatch) -> None:
    """A stride finer than the fit can use is coarsened before the policy runs, and ood.json says so."""
    import pai_ros.sae.calibrate as calibrate_module
    from pai_ros.policy.runner import activations_runner
    from pai_ros.sae.calibrate import StateFit, calibrate
    from pai_ros.sae.model import load_sae

    root, _ = tiny_dataset  # 3 episodes of 12 frames
    assert StateFit(root, [1, 2]).frame_stride == 1  # by default every frame the fit's budget allows
    fit = StateFit(root, [1, 2], frame_stride=1)
    assert fit.stride_within(100) == 1  # room for all 24 frames: the stride asked
    assert fit.stride_within(12) == 2 and fit.stride_within(8) == 3  # 2 x 6 and 2 x 4 frames
    assert fit.stride_within(1) == 12  # one frame per episode is as coarse as it goes
    # 24 frames at most, 12 of them the calibration episode's: the 24 training frames thin to 12.
    monkeypatch.setattr(calibrate_module, "MAX_FIT_FRAMES", 24)
    runner = activations_runner(tiny_act, "cpu")
    try:
        with one_torch_thread():
            result = calibrate(runner, load_sae(tiny_sae), root, [0], progress=False, state_fit=fit)
    finally:
        runner.close()
    c = result.calibration
    assert c["camera_state_fit"]["frame_stride"] == 2
    assert "frame stride of 2 instead of 1" in c["camera_state_fit"]["note"]
    assert c["camera_state"]["fit_frames"] == 12 + 12
    # The training episodes were given: the note asks for more of them, not for the option given already.
    assert c["camera_state"]["episodes_note"].endswith("more of the policy's training episodes make it steadier "
                                                       "(--state-fit-episode; all by default)")


@pytest.mark.parametrize("episodes, evaluate, fit, needle", [
    ([0, 1], [1, 2], None, "--evaluate-episode overlaps --episode"),
    ([0], [2], [2, 3], "shares episode(s) [2]"),
    ([0], None, [0, 3], "shares episode(s) [0]"),
])
def test_calibrate_itself_refuses_shared_episodes_before_any_work(tmp_path: Path, episodes, evaluate, fit,
                                                                   needle) -> None:
    """The library checks, not only the command: demo assets call calibrate() directly."""
    from pai_ros.sae.calibrate import StateFit, calibrate

    state_fit = StateFit(tmp_path, fit) if fit is not None else None
    with pytest.raises(UserError, match=re.escape(needle)):
        calibrate(None, None, tmp_path, episodes, evaluate=evaluate, state_fit=state_fit)  # type: ignore[arg-type]


def test_episodes_of_another_dataset_may_share_numbers(tmp_path: Path) -> None:
    from pai_ros.sae.calibrate import StateFit, check_episodes_apart

    check_episodes_apart(tmp_path / "heldout", [0, 1], [2], StateFit(tmp_path / "train", [0, 1, 2]))


def test_an_sae_is_refused_for_another_policy_of_the_same_width(tiny_act: Path, tiny_sae: Path,
                                                                 tmp_path: Path) -> None:
    """Only the width was checked: features, OOD flags and a rewritten calibration of another policy."""
    from pai_ros.policy.random_init import save_random_act
    from pai_ros.policy.runner import activations_runner
    from pai_ros.sae.model import check_dimensions, load_sae

    loaded = load_sae(tiny_sae)
    copy = tmp_path / "copied_act"
    shutil.copytree(tiny_act, copy)  # the same policy elsewhere: the same content, accepted
    other = save_random_act(tmp_path / "other_act", {"front": (64, 80), "wrist": (64, 80)}, state_dim=3,
                            chunk_size=10, n_action_steps=10, seed=1)
    for policy, accepted in ((tiny_act, True), (copy, True), (other, False)):
        runner = activations_runner(policy, "cpu")
        try:
            if accepted:
                check_dimensions(runner, loaded)
            else:
                with pytest.raises(SaeMismatch, match="was trained on another policy's tokens"):
                    check_dimensions(runner, loaded)
        finally:
            runner.close()
