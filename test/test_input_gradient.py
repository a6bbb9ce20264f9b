"""input_gradient: unchanged actions, normalised cell maps, planted evidence, its memory estimate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pai_ros.attention.explainers import explaining, make_explainer
from pai_ros.attention.input_gradient import (
    InputGradientExplainer,
    estimated_memory_bytes,
)
from pai_ros.attention.maps import maps_for_tick
from pai_ros.attention.relevance import RelevanceTarget
from pai_ros.errors import UserError
from pai_ros.policy.capture import CaptureConfig
from pai_ros.policy.loading import load_act_policy
from pai_ros.policy.observation import Observation
from pai_ros.policy.runner import PolicyRunner


def _observations(n: int, seed: int = 0) -> list[Observation]:
    rng = np.random.default_rng(seed)
    return [Observation({c: rng.integers(0, 256, (64, 80, 3), dtype=np.uint8) for c in ("front", "wrist")},
                        rng.normal(size=3).astype(np.float32)) for _ in range(n)]


@pytest.mark.parametrize("mode", ["replan", "ensemble", "queue"])
def test_actions_are_bit_identical_and_the_map_is_normalised_cells(tiny_act: Path, mode: str) -> None:
    loaded = load_act_policy(tiny_act, "cpu")
    obs = _observations(4)
    runner = PolicyRunner(loaded, mode, CaptureConfig(encoder_self_attention=True, encoder_output=False))
    plain = [runner.step(o) for o in obs]
    runner.reset()
    with explaining(runner, "input_gradient") as explainer:
        assert isinstance(explainer, InputGradientExplainer)
        explained = [runner.step(o) for o in obs]
    assert runner.explainer is None
    for a, b in zip(plain, explained):
        assert torch.equal(torch.from_numpy(a.action), torch.from_numpy(b.action))
        assert torch.equal(torch.from_numpy(a.chunk), torch.from_numpy(b.chunk))
        assert torch.equal(a.capture.cross_attention, b.capture.cross_attention)
    for result in explained:
        maps = maps_for_tick(result, "input_gradient", label="first")
        assert maps is not None and maps.weights.shape == (maps.layout.num_tokens,)
        assert np.all(maps.weights >= 0)
        n1 = maps.layout.num_1d
        assert np.all(maps.weights[:n1] == 0)  # latent and state carry no pixels
        assert abs(float(maps.weights.sum()) - 1.0) < 1e-5
        assert {k: g.shape for k, g in maps.grids.items()} == {"front": (2, 3), "wrist": (2, 3)}
    runner.close()


def test_planted_evidence_lands_in_its_cell_only(tiny_act: Path) -> None:
    """Flat cameras with one textured patch inside front cell (0, 0): only that cell differs from its blur."""
    loaded = load_act_policy(tiny_act, "cpu")
    runner = PolicyRunner(loaded, "replan", CaptureConfig(encoder_output=False))
    rng = np.random.default_rng(5)
    front = np.full((64, 80, 3), 120, dtype=np.uint8)
    front[10:18, 10:18] = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)  # blur reach 4 px: rows/cols 6..21
    wrist = np.full((64, 80, 3), 90, dtype=np.uint8)
    obs = Observation({"front": front, "wrist": wrist}, np.zeros(3, dtype=np.float32))
    for reduction in ("positive", "absolute"):
        explainer = InputGradientExplainer(loaded.policy, RelevanceTarget("chunk"), reduction).attach()
        runner.explainer = explainer
        maps = maps_for_tick(runner.step(obs), "input_gradient")
        runner.explainer = None
        explainer.detach()
        assert maps is not None
        front_grid = maps.grids["front"]
        assert front_grid[0, 0] > 0.999, (reduction, front_grid)
        assert front_grid.sum() - front_grid[0, 0] < 1e-3 and maps.grids["wrist"].sum() < 1e-3
    runner.close()


def test_a_frozen_policy_still_gives_pixel_gradients_and_bad_input_is_one_line(tiny_act: Path) -> None:
    loaded = load_act_policy(tiny_act, "cpu")
    for p in loaded.policy.parameters():
        p.requires_grad_(False)
    runner = PolicyRunner(loaded, "replan", CaptureConfig(encoder_output=False))
    with explaining(runner, "input_gradient", RelevanceTarget.parse("dim:1")):
        result = runner.step(_observations(1)[0])
    assert result.capture.explanation_error is None
    assert maps_for_tick(result, "input_gradient").weights.sum() > 0.99
    runner.close()
    with pytest.raises(UserError, match="dim:3 is outside the policy's 3 action dimensions"):
        make_explainer(loaded.policy, "input_gradient", RelevanceTarget.parse("dim:3"))
    with pytest.raises(UserError, match="unknown input_gradient reduction 'square'"):
        InputGradientExplainer(loaded.policy, reduction="square")


def test_memory_estimate_covers_what_the_backward_pass_keeps(tiny_act: Path) -> None:
    """The bytes autograd saves in one explained forward (deduplicated storages) stay under the estimate."""
    loaded = load_act_policy(tiny_act, "cpu")
    runner = PolicyRunner(loaded, "replan", CaptureConfig(encoder_output=False))
    obs = _observations(1)[0]
    storages: dict[int, int] = {}

    def keep(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    explainer = make_explainer(loaded.policy, "input_gradient").attach()
    runner.explainer = explainer
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        runner.step(obs)
    explainer.detach()
    params = {p.untyped_storage().data_ptr() for p in loaded.policy.parameters()}
    saved = sum(n for ptr, n in storages.items() if ptr not in params)
    sizes = [(64, 80), (64, 80)]
    tokens = runner.step(obs).capture.layout.num_tokens
    estimate = estimated_memory_bytes(loaded.policy, sizes, tokens)
    assert saved > 0 and saved < estimate, (saved, estimate)
    runner.close()
