"""Capture from an unmodified LeRobot ACT: recomputed independently, layout derived, no side effects."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pai_ros.attention.attribution import QuerySelection, rollout_matrix, token_weights
from pai_ros.policy.capture import ActCapture, CaptureConfig
from pai_ros.policy.layout import CAMERA, LATENT, STATE, TokenLayout
from pai_ros.policy.loading import load_act_policy
from pai_ros.policy.observation import Observation
from pai_ros.policy.random_init import save_random_act
from pai_ros.policy.runner import PolicyRunner


def _obs(cameras: dict[str, tuple[int, int]], state_dim: int | None, seed: int = 0) -> Observation:
    rng = np.random.default_rng(seed)
    images = {n: rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for n, (h, w) in cameras.items()}
    state = rng.normal(size=state_dim).astype(np.float32) if state_dim else None
    return Observation(images, state)


def _recompute_cross_attention(policy, batch) -> torch.Tensor:
    """Softmax(QK^T / sqrt(d_head)) per head from the layer's own weights and call inputs."""
    mha = policy.model.decoder.layers[-1].multihead_attn
    seen = {}

    def grab(_m, args, kwargs):
        seen["query"] = kwargs.get("query", args[0] if args else None)
        seen["key"] = kwargs.get("key", args[1] if len(args) > 1 else None)

    h = mha.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.inference_mode():
            policy.predict_action_chunk(batch)
    finally:
        h.remove()
    d, heads = mha.embed_dim, mha.num_heads
    torch.set_grad_enabled(False)
    wq, wk, _ = mha.in_proj_weight.split(d)
    bq, bk, _ = mha.in_proj_bias.split(d)
    q = seen["query"][:, 0] @ wq.T + bq  # (Q, D), batch 0
    k = seen["key"][:, 0] @ wk.T + bk  # (S, D)
    dh = d // heads
    q = q.reshape(-1, heads, dh).transpose(0, 1)  # (H, Q, dh)
    k = k.reshape(-1, heads, dh).transpose(0, 1)  # (H, S, dh)
    out = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(dh), dim=-1)  # (H, Q, S)
    torch.set_grad_enabled(True)
    return out


CASES = {
    "one camera, state": ({"front": (64, 96)}, 3, None),
    "two cameras of different sizes, state": ({"front": (64, 80), "wrist": (96, 128)}, 4, None),
    "three cameras, no state, env state": ({"a": (32, 32), "b": (64, 64), "c": (96, 160)}, None, 5),
}


@pytest.mark.parametrize("case", CASES)
def test_capture_matches_independent_recomputation(case: str, tmp_path: Path) -> None:
    cameras, state_dim, env_dim = CASES[case]
    ckpt = save_random_act(tmp_path / "act", cameras, state_dim=state_dim, env_state_dim=env_dim,
                           chunk_size=6, n_action_steps=6, n_heads=4)
    loaded = load_act_policy(ckpt, "cpu")
    runner = PolicyRunner(loaded, "replan", CaptureConfig(per_head=True))
    obs = _obs(cameras, state_dim, seed=1)
    obs.env_state = np.ones(env_dim, dtype=np.float32) if env_dim else None
    res = runner.step(obs)
    cap = res.capture

    expected_heads = _recompute_cross_attention(loaded.policy, runner.preprocess(obs))
    torch.testing.assert_close(cap.cross_attention_heads[0], expected_heads, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(cap.cross_attention[0], expected_heads.mean(0), rtol=1e-4, atol=1e-6)

    # Layout from the observed backbone shapes: stride-32 grids, cameras in config order.
    layout = cap.layout
    assert [c.name for c in layout.cameras] == list(cameras)
    for cam, (h, w) in zip(layout.cameras, cameras.values()):
        assert (cam.grid_h, cam.grid_w) == (math.ceil(h / 32), math.ceil(w / 32))
    assert layout.has_state == (state_dim is not None) and layout.has_env_state == (env_dim is not None)
    assert layout.num_tokens == cap.cross_attention.shape[-1]
    assert torch.allclose(cap.cross_attention[0].sum(-1), torch.ones(6))


def test_dilated_final_stride_is_derived_not_assumed(tmp_path: Path) -> None:
    # resnet18 rejects replace_final_stride_with_dilation; resnet50 takes it (stride 16).
    ckpt = save_random_act(tmp_path / "act", {"front": (64, 96)}, vision_backbone="resnet50",
                           replace_final_stride_with_dilation=True, chunk_size=4, n_action_steps=4)
    runner = PolicyRunner(load_act_policy(ckpt, "cpu"), "replan")
    layout = runner.step(_obs({"front": (64, 96)}, 3)).capture.layout
    assert (layout.cameras[0].grid_h, layout.cameras[0].grid_w) == (4, 6)


def test_layout_describes_every_token() -> None:
    layout = TokenLayout.build(True, False, ["observation.images.front", "observation.images.wrist"], [(2, 3), (1, 2)])
    assert layout.num_tokens == 2 + 6 + 2
    assert layout.describe(0) == {"kind": LATENT} and layout.describe(1) == {"kind": STATE}
    assert layout.describe(2 + 4) == {"kind": CAMERA, "camera": "front", "row": 1, "col": 1}
    assert layout.describe(9) == {"kind": CAMERA, "camera": "wrist", "row": 0, "col": 1}
    table = layout.token_table()
    assert list(table["camera_index"]) == [-1, -1, 0, 0, 0, 0, 0, 0, 1, 1]
    shares, grids = layout.split(np.arange(10, dtype=np.float32))
    assert shares["front"] == pytest.approx(sum(range(2, 8)) / 45)
    assert np.array_equal(grids["front"], np.arange(2, 8).reshape(2, 3))
    assert sum(shares.values()) == pytest.approx(1.0)


def _step_seeing(tiny_act: Path, module: str, arg: int) -> tuple:
    """One replanning step of the tiny policy, and positional argument ``arg`` of ``model.<module>`` in it."""
    loaded = load_act_policy(tiny_act, "cpu")
    runner = PolicyRunner(loaded, "replan")
    seen = {}

    def grab(_module, args) -> None:
        seen["arg"] = args[arg].clone()

    h = getattr(loaded.policy.model, module).register_forward_pre_hook(grab)
    try:
        res = runner.step(_obs({"front": (64, 80), "wrist": (64, 80)}, 3))
    finally:
        h.remove()
    return res, seen["arg"]


def test_encoder_output_is_what_the_decoder_reads(tiny_act: Path) -> None:
    res, memory = _step_seeing(tiny_act, "decoder", 1)
    torch.testing.assert_close(res.capture.encoder_output[0], memory[:, 0])


def test_encoder_input_is_what_the_encoder_reads(tiny_act: Path) -> None:
    """The camera-state score reads each camera's cells before the encoder mixes them: the encoder's own input."""
    res, tokens = _step_seeing(tiny_act, "encoder", 0)
    cap = res.capture
    assert cap.encoder_input.shape == cap.encoder_output.shape
    torch.testing.assert_close(cap.encoder_input[0], tokens[:, 0])
    assert not torch.allclose(cap.encoder_input, cap.encoder_output)


def test_capture_does_not_change_actions(tiny_act: Path) -> None:
    plain, hooked = load_act_policy(tiny_act, "cpu"), load_act_policy(tiny_act, "cpu")
    runner = PolicyRunner(hooked, "replan", CaptureConfig(per_head=True, encoder_self_attention=True))
    obs = _obs({"front": (64, 80), "wrist": (64, 80)}, 3, seed=4)
    with torch.inference_mode():
        ref = plain.policy.predict_action_chunk(runner.preprocess(obs))
    res = runner.step(obs)
    assert np.array_equal(res.chunk, plain.postprocessor(ref.reshape(-1, 3)).numpy())


def test_rollout_preserves_mass_and_reduces_to_cross_attention_without_mixing() -> None:
    s = 5
    eye = torch.eye(s)
    assert torch.equal(rollout_matrix([eye, eye]), eye)
    attn = torch.softmax(torch.randn(3, s, s), dim=-1)
    r = rollout_matrix(list(attn))
    assert torch.allclose(r.sum(-1), torch.ones(s))
    cross = torch.softmax(torch.randn(4, s), dim=-1)
    q = QuerySelection.parse("1:3").resolve(4)
    assert torch.allclose(token_weights("cross_attention", cross, q), cross[1:3].mean(0))
    w = token_weights("rollout", cross, q, list(attn))
    assert torch.isclose(w.sum(), torch.tensor(1.0))
    assert torch.allclose(token_weights("rollout", cross, q, [eye]), cross[1:3].mean(0))


def test_query_selection_parsing() -> None:
    assert QuerySelection.parse("mean").resolve(10) == slice(0, 10)
    assert QuerySelection.parse("3").resolve(10) == slice(3, 4)
    assert QuerySelection.parse("2:5").resolve(10) == slice(2, 5)
    assert QuerySelection.parse("executed").resolve(10, executed=7) == slice(7, 8)
    for bad in ("5:2", "x", "-1"):
        with pytest.raises(ValueError):
            QuerySelection.parse(bad)
    with pytest.raises(ValueError, match="outside the chunk"):
        QuerySelection.parse("12").resolve(10)


def test_hooks_are_removed_on_detach(tiny_act: Path) -> None:
    loaded = load_act_policy(tiny_act, "cpu")
    mha = loaded.policy.model.decoder.layers[-1].multihead_attn
    before = len(mha._forward_hooks) + len(mha._forward_pre_hooks)
    with ActCapture(loaded.policy, CaptureConfig(per_head=True)):
        assert len(mha._forward_hooks) + len(mha._forward_pre_hooks) == before + 2
    assert len(mha._forward_hooks) + len(mha._forward_pre_hooks) == before
