"""Deletion/insertion faithfulness: curve endpoints, an order that is right beats one that is wrong, CLI output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_pai

from pai_ros.attention.faithfulness import (
    FaithfulnessConfig,
    MethodCurves,
    area,
    faithfulness,
    frame_curves,
    symmetric_gain,
)
from pai_ros.policy.capture import CaptureConfig
from pai_ros.policy.loading import load_act_policy
from pai_ros.policy.observation import Observation
from pai_ros.policy.runner import PolicyRunner


def _obs(seed: int) -> Observation:
    rng = np.random.default_rng(seed)
    return Observation({c: rng.integers(0, 256, (64, 80, 3), dtype=np.uint8) for c in ("front", "wrist")},
                       rng.normal(size=3).astype(np.float32))


@pytest.fixture(scope="module")
def runner(tiny_act: Path) -> PolicyRunner:
    r = PolicyRunner(load_act_policy(tiny_act, "cpu"), "replan", CaptureConfig(encoder_self_attention=True,
                                                                                encoder_output=False))
    yield r
    r.close()


def test_area_of_known_curves() -> None:
    x = np.linspace(0, 1, 5)
    assert area(x, x) == pytest.approx(0.5)
    assert area(x, np.ones(5)) == pytest.approx(1.0)


def test_the_order_by_measured_cell_effect_beats_its_reverse(runner: PolicyRunner) -> None:
    """Rank cells by how much blurring each one alone moves the chunk: deletion and insertion
    must then rise faster than with the reverse order (this is what the metric claims to measure)."""
    obs = _obs(1)
    config = FaithfulnessConfig(steps=6)
    layout = runner.step(obs).capture.layout
    cam = layout.camera("front")
    gh, gw = cam.grid_h, cam.grid_w
    effects = np.zeros((gh, gw))
    for cell in range(gh * gw):
        one_hot = np.zeros((gh, gw))
        one_hot[np.unravel_index(cell, (gh, gw))] = 1.0
        # deleting just this cell (1 of gh*gw cells at the first step with steps = cells)
        curves = frame_curves(runner, obs, "front", {"one": one_hot}, FaithfulnessConfig(steps=gh * gw))
        effects.flat[cell] = curves["one"][0][1]
    curves = frame_curves(runner, obs, "front", {"best": effects, "worst": -effects}, config)
    assert curves is not None
    x = config.fractions
    for name in ("best", "worst"):
        d, i = curves[name]
        assert d[0] == 0 and d[-1] == 1 and i[0] == 0 and i[-1] == 1  # the curves' endpoints by definition
    assert area(x, curves["best"][0]) > area(x, curves["worst"][0])
    assert area(x, curves["best"][1]) > area(x, curves["worst"][1])


def test_symmetric_gain_is_deletion_most_important_first_minus_least_important_first(runner: PolicyRunner) -> None:
    """The gain claims that deleting the least important cells first is insertion read backwards: run
    that deletion for real (the reversed map) and compare, then check that the gain is the difference
    of the two deletion areas and that a map and its reverse have opposite gains."""
    obs = _obs(4)
    layout = runner.step(obs).capture.layout.camera("front")
    cells = layout.grid_h * layout.grid_w
    config = FaithfulnessConfig(steps=5 if cells % 2 else 4)  # cell counts round symmetrically
    grid = np.random.default_rng(0).random((layout.grid_h, layout.grid_w))
    curves = frame_curves(runner, obs, "front", {"map": grid, "reversed": -grid}, config)
    assert curves is not None
    (d, ins), (d_least_first, ins_rev) = curves["map"], curves["reversed"]
    np.testing.assert_allclose(d_least_first, 1.0 - ins[::-1], atol=1e-5)
    x = config.fractions
    gain = symmetric_gain(x, d, ins)
    assert gain == pytest.approx(area(x, d) - area(x, d_least_first), abs=1e-5)
    assert symmetric_gain(x, d_least_first, ins_rev) == pytest.approx(-gain, abs=1e-5)


def test_gain_median_is_not_moved_by_one_frame_whose_ratios_explode() -> None:
    """A frame where blurring the whole camera barely moves the prediction divides by almost 0:
    the mean of its ratios follows it, the median over frames does not."""
    x = np.linspace(0, 1, 5)
    good_d, good_i = np.array([0, 0.8, 0.9, 1.0, 1]), np.array([0, 0.7, 0.9, 1.0, 1])
    curves = MethodCurves([good_d] * 6 + [np.array([0, 40.0, 30.0, 20.0, 1])],
                          [good_i] * 6 + [np.array([0, -35.0, -25.0, -10.0, 1])])
    s = curves.summary(x)
    assert s["symmetric_gain_median"] == pytest.approx(symmetric_gain(x, good_d, good_i))
    assert abs(s["symmetric_gain"] - s["symmetric_gain_median"]) > 0.5
    assert s["symmetric_gain"] == pytest.approx(s["deletion_auc"] + s["insertion_auc"] - 1)
    q25, q75 = s["symmetric_gain_quartiles"]
    assert q25 <= s["symmetric_gain_median"] <= q75


def test_report_over_frames_has_every_method_and_camera(runner: PolicyRunner) -> None:
    methods = ("cross_attention", "relevance", "relevance_cross", "input_gradient", "random")
    report = faithfulness(runner, [_obs(2), _obs(3)], methods, FaithfulnessConfig(steps=4))
    summary = report.to_dict()
    assert summary["frames"] == 2 and summary["fractions"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    for cam in ("front", "wrist"):
        for m in methods:
            s = summary["cameras"][cam][m]
            assert s["frames"] + summary["skipped_frames"][cam] == 2
            if s["frames"]:
                assert 0.0 <= s["deletion_auc"] <= 2.0 and len(s["insertion_curve"]) == 5
    assert runner.explainer is None  # the relevance explainers were put away again
    with pytest.raises(ValueError, match="unknown method"):
        faithfulness(runner, [_obs(2)], ("gradcam",))
    with pytest.raises(ValueError, match="steps must be at least 2"):
        FaithfulnessConfig(steps=1)


def test_cli_writes_json_and_png_and_bad_options_are_one_line(tiny_dataset, tiny_act, tmp_path: Path) -> None:
    root, _ = tiny_dataset
    out, policy = tmp_path / "out", tmp_path / "policy"
    shutil.copytree(tiny_act, policy)  # its weights are damaged below, to show what is refused before loading
    base = ["attention", "--dataset-root", str(root), "--episode", "0", "--policy-path", str(policy),
            "--output-dir", str(out), "--faithfulness"]
    res = run_pai(*base, "--faithfulness-frames", "2", "--faithfulness-steps", "4", "--ig-steps", "2",
                  "--faithfulness-methods", "cross_attention", "relevance", "integrated_gradients", "random")
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "faithfulness" / "faithfulness.json").read_text())
    assert summary["frames"] == 2 and set(summary["cameras"]["front"]) == {
        "cross_attention", "relevance", "integrated_gradients", "random"}
    assert (out / "faithfulness" / "faithfulness.png").stat().st_size > 1000
    assert "deletion AUC" in res.stdout and "symmetric gain" in res.stdout
    assert "faithfulness: 100%" in res.stderr and "2/2" in res.stderr  # minutes a frame on a real policy
    for s in summary["cameras"]["front"].values():
        if s["frames"]:
            assert s["symmetric_gain"] == pytest.approx(s["deletion_auc"] + s["insertion_auc"] - 1)
    res = run_pai(*base, "--quiet", "--faithfulness-methods", "gradcam")
    assert res.returncode == 1 and "unknown method(s) gradcam" in res.stderr
    assert res.stderr.strip().count("\n") == 0
    assert summary["episodes"] == [0] and summary["frames_per_episode"] == 2 and summary["dataset_root"] == \
        str(root.resolve())
    # Checked before the work (minutes a frame on a real policy), not after it: a report of other settings is
    # not replaced without a word, and an output that is a file or more steps than cells are refused.
    before = (out / "faithfulness" / "faithfulness.json").read_bytes()
    weights = (policy / "model.safetensors").read_bytes()
    for extra, message in (
            (["--faithfulness-output", "first"], f"{out / 'faithfulness'} holds a report made with other settings "
                                                 "(output chunk; now first): write into another --output-dir"),
            (["--faithfulness-frames", "3"], "holds a report made with other settings (frames per episode 2; now 3)"),
            (["--ig-steps", "3"], "holds a report made with other settings (ig steps 2; now 3)"),
            (["--output-dir", str(out / "faithfulness" / "faithfulness.json")], "faithfulness.json is a file"),
            (["--faithfulness-steps", "5000", "--output-dir", str(tmp_path / "o2")],
             "--faithfulness-steps 5000 is more than the 6 cells of the largest camera")):
        # Damaged weights would be refused if the policy were loaded first; the cells are known only
        # once the policy has seen a frame, so the last case needs it whole.
        (policy / "model.safetensors").write_bytes(weights if "cells" in message else b"not safetensors")
        res = run_pai(*base, "--quiet", "--faithfulness-frames", "2", "--faithfulness-steps", "4", "--ig-steps", "2",
                      "--faithfulness-methods", "random", "relevance", "integrated_gradients", "cross_attention",
                      *extra)  # the methods in another order: the same report
        assert res.returncode == 1 and message in res.stderr, (extra, res.stderr)
        assert res.stderr.strip().count("\n") == 0, res.stderr
    assert (out / "faithfulness" / "faithfulness.json").read_bytes() == before and not (tmp_path / "o2").exists()


def test_sink_analysis_finds_the_cell_that_takes_mass_in_every_frame(runner: PolicyRunner, tmp_path: Path) -> None:
    import dataclasses

    import torch

    from pai_ros.attention.sinks import plot_sinks, sink_analysis

    captures = [runner.step(_obs(s)).capture for s in range(4)]
    layout = captures[0].layout
    front = layout.camera("front")
    sink = front.slice.start + 1  # the front camera's second cell
    rng = np.random.default_rng(0)
    planted = []
    for c in captures:
        q, s = c.cross_attention.shape[1:]
        w = torch.from_numpy(rng.random((1, q, s)).astype(np.float32))
        w[..., sink] = w.sum(dim=-1) * 2  # two thirds of each row's mass, every frame
        planted.append(dataclasses.replace(c, cross_attention=w / w.sum(dim=-1, keepdim=True)))
    result = sink_analysis(planted, top_k=1)
    f = result["cameras"]["front"]
    assert f["sink_cells"] == [[1 // front.grid_w, 1 % front.grid_w]]
    assert f["peak_on_a_sink_rate"] == 1.0 and f["sink_mass_share"] > 0.8
    assert set(result["token_shares"]) == {"latent", "state"}
    real = sink_analysis(captures)  # the tiny random policy: well-formed numbers
    assert 0 < real["cameras"]["wrist"]["sink_mass_share"] <= 1
    plot_sinks(real, tmp_path / "sinks.png")
    assert (tmp_path / "sinks.png").stat().st_size > 1000


def test_same_frame_picture_has_a_panel_per_method_and_refuses_mixed_grids(tmp_path: Path) -> None:
    import cv2

    from pai_ros.attention.sinks import plot_same_frame

    image = np.full((60, 80, 3), 90, np.uint8)
    grids = {m: np.random.default_rng(i).random((3, 4)) for i, m in enumerate(("cross_attention", "input_gradient"))}
    one, three = tmp_path / "one.png", tmp_path / "three.png"
    plot_same_frame(image, {"cross_attention": grids["cross_attention"]}, one, sink_cells=[[0, 3]], target_cell=(1, 2))
    plot_same_frame(image, {**grids, "rollout": grids["input_gradient"]}, three, sink_cells=[[0, 3]],
                    figures={"input_gradient": "peak hit 100%"},
                    target_cell=(1, 2), title="t")
    w_one, w_three = cv2.imread(str(one)).shape[1], cv2.imread(str(three)).shape[1]
    assert w_three == pytest.approx(w_one * 4 / 2, rel=0.02)  # image + 1 map vs image + 3 maps
    with pytest.raises(ValueError, match="one grid shape"):
        plot_same_frame(image, {**grids, "rollout": np.ones((2, 2))}, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
