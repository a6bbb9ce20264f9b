"""Relevance propagation: exact map gradients, the propagation rules, unchanged actions, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pai_ros.attention.errors import NoGradientError
from pai_ros.attention.maps import maps_for_tick
from pai_ros.attention.relevance import (
    RelevanceExplainer,
    RelevanceTarget,
    _Call,
    _map_gradient,
    _propagate,
    _without_identity,
    gradient_weighted,
)
from pai_ros.errors import UserError
from pai_ros.policy.capture import CaptureConfig
from pai_ros.policy.loading import load_act_policy
from pai_ros.policy.observation import Observation
from pai_ros.policy.runner import PolicyRunner


def _observations(n: int, seed: int = 0) -> list[Observation]:
    rng = np.random.default_rng(seed)
    return [Observation({c: rng.integers(0, 256, (64, 80, 3), dtype=np.uint8) for c in ("front", "wrist")},
                        rng.normal(size=3).astype(np.float32)) for _ in range(n)]


def test_map_gradient_equals_autograd_through_an_explicit_attention_map() -> None:
    """dF/dA from the output's gradient and the value projection == autograd on a leaf A."""
    torch.manual_seed(0)
    d, heads, t, s, b = 16, 4, 5, 7, 2
    mha = torch.nn.MultiheadAttention(d, heads).eval()
    q, k, v = torch.randn(t, b, d), torch.randn(s, b, d), torch.randn(s, b, d)
    out, weights = mha(q, k, value=v, need_weights=True, average_attn_weights=False)
    r = torch.randn(t, b, d)

    # Reference: the same attention written out with the map as a leaf tensor.
    a = weights.detach().clone().requires_grad_(True)  # [B, H, T, S]
    hd = d // heads
    v_proj = torch.nn.functional.linear(v, mha.in_proj_weight[2 * d:], mha.in_proj_bias[2 * d:])
    v_h = v_proj.reshape(s, b, heads, hd).permute(1, 2, 0, 3)  # [B, H, S, hd]
    heads_out = (a @ v_h).permute(2, 0, 1, 3).reshape(t, b, d)
    o = mha.out_proj(heads_out)
    assert torch.allclose(o, out, atol=1e-5)  # the reference is the module's own computation
    (ref,) = torch.autograd.grad((o * r).sum(), a)

    ours = _map_gradient(mha, _Call(weights, v, out), r)
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()


def test_propagation_rules_by_hand() -> None:
    """Without encoder mixing, relevance is the cross-attention's Abar; with it, Abar @ norm(I + E)."""
    torch.manual_seed(1)
    b, q, s = 1, 3, 4
    cross = torch.rand(b, q, s)
    zero_self = torch.zeros(b, q, q)
    assert torch.allclose(_propagate([], [(zero_self, cross)]), cross)
    enc = torch.rand(b, s, s)
    r_ee = torch.eye(s) + enc[0]
    expected = cross[0] @ _without_identity(r_ee)
    assert torch.allclose(_propagate([enc], [(zero_self, cross)])[0], expected, atol=1e-6)
    # norm(): rows of (R - I) sum to one, the identity added back
    assert torch.allclose((_without_identity(r_ee) - torch.eye(s)).sum(-1), torch.ones(s), atol=1e-6)
    # gradient weighting keeps only positive evidence and averages the heads
    w = torch.tensor([[[[0.5, 0.5]], [[1.0, 0.0]]]])
    g = torch.tensor([[[[2.0, -2.0]], [[1.0, 1.0]]]])
    assert torch.allclose(gradient_weighted(w, g), torch.tensor([[[1.0, 0.0]]]))


@pytest.mark.parametrize("mode", ["replan", "ensemble", "queue"])
def test_actions_are_bit_identical_with_and_without_relevance(tiny_act: Path, mode: str) -> None:
    loaded = load_act_policy(tiny_act, "cpu")
    obs = _observations(4)
    runner = PolicyRunner(loaded, mode, CaptureConfig(encoder_self_attention=True, encoder_output=False))
    plain = [runner.step(o) for o in obs]
    for method in ("relevance", "relevance_cross"):
        explainer = RelevanceExplainer(loaded.policy, method).attach()
        runner.explainer = explainer
        runner.reset()
        explained = [runner.step(o) for o in obs]
        runner.explainer = None
        explainer.detach()
        for a, b in zip(plain, explained):
            assert torch.equal(torch.from_numpy(a.action), torch.from_numpy(b.action))
            assert torch.equal(torch.from_numpy(a.chunk), torch.from_numpy(b.chunk))
            # the other maps are unchanged too, although the heads were asked for separately
            assert torch.equal(a.capture.cross_attention, b.capture.cross_attention)
            for x, y in zip(a.capture.encoder_self_attention, b.capture.encoder_self_attention):
                assert torch.equal(x, y)
        maps = maps_for_tick(explained[0], method, label=explainer.target.label())
        assert maps is not None and maps.weights.shape == (maps.layout.num_tokens,)
        assert np.all(maps.weights >= 0) and maps.weights.sum() > 0
        assert maps.queries == "first" and set(maps.grids) == {"front", "wrist"}
    runner.close()


def test_targets_explain_different_outputs_and_a_bad_dimension_is_one_line(tiny_act: Path) -> None:
    loaded = load_act_policy(tiny_act, "cpu")
    runner = PolicyRunner(loaded, "replan", CaptureConfig(encoder_output=False))
    obs = _observations(1, seed=3)[0]
    maps = {}
    for text in ("first", "chunk", "dim:0", "dim:2"):
        explainer = RelevanceExplainer(loaded.policy, "relevance", RelevanceTarget.parse(text)).attach()
        runner.explainer = explainer
        maps[text] = runner.step(obs).capture.explanations["relevance"][0]
        explainer.detach()
    assert not torch.allclose(maps["first"], maps["chunk"])
    assert not torch.allclose(maps["dim:0"], maps["dim:2"])
    with pytest.raises(UserError, match="dim:3 is outside the policy's 3 action dimensions"):
        RelevanceExplainer(loaded.policy, "relevance", RelevanceTarget.parse("dim:3"))
    runner.close()
    for bad in ("last", "dim:", "dim:-1"):
        with pytest.raises(ValueError, match="is not one of: first, chunk, dim:K"):
            RelevanceTarget.parse(bad)
    with pytest.raises(UserError, match="unknown relevance method 'gradcam'"):
        RelevanceExplainer(loaded.policy, "gradcam")


def test_a_frozen_policy_is_a_clear_error_not_a_silent_map(tiny_act: Path) -> None:
    loaded = load_act_policy(tiny_act, "cpu")
    for p in loaded.policy.parameters():
        p.requires_grad_(False)
    explainer = RelevanceExplainer(loaded.policy, "relevance").attach()
    with pytest.raises(NoGradientError, match="gives no gradient to its attention maps"):
        explainer.check_gradients()
    runner = PolicyRunner(loaded, "replan", CaptureConfig(encoder_output=False))
    runner.explainer = explainer
    plain = PolicyRunner(load_act_policy(tiny_act, "cpu"), "replan", CaptureConfig(encoder_output=False))
    obs = _observations(1)[0]
    result = runner.step(obs)  # a robot keeps acting: the action comes, the map does not
    assert np.array_equal(result.action, plain.step(obs).action)
    assert "relevance" not in result.capture.explanations
    assert "gives no gradient to its attention maps" in result.capture.explanation_error
    assert maps_for_tick(result, "relevance") is None
    runner.close()
    plain.close()
