"""Capture what one ACT forward pass computes, with forward hooks only (LeRobot unpatched).

LeRobot's ACT calls every ``nn.MultiheadAttention`` with PyTorch's defaults, so each call
already computes head-averaged attention weights and returns them as ``output[1]``, where
LeRobot drops them. Hooks read them at no extra cost:

* decoder cross-attention of the last decoder layer ``[B, Q, S]`` (optionally per head
  ``[B, H, Q, S]``, by asking that one call not to average: a kwargs pre-hook);
* encoder self-attention of every encoder layer ``[B, S, S]`` (for attention rollout);
* the encoder output ``[S, B, D]``: the memory the decoder reads (for sparse autoencoders);
* each camera's backbone feature-map size, from which the token layout is derived.

None of this changes the computed actions: the hooks only read, and the per-head switch only
changes how the weights are returned, not the attention output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from pai_ros.policy.layout import TokenLayout


@dataclass(frozen=True)
class CaptureConfig:
    cross_attention: bool = True
    per_head: bool = False
    encoder_self_attention: bool = False
    encoder_output: bool = True


@dataclass
class ForwardCapture:
    """Tensors of one forward pass, still on the policy's device, batch-first."""

    layout: TokenLayout
    cross_attention: torch.Tensor | None  # [B, Q, S], head-averaged, rows sum to 1
    cross_attention_heads: torch.Tensor | None  # [B, H, Q, S]
    encoder_self_attention: list[torch.Tensor] | None  # per encoder layer, [B, S, S]
    encoder_output: torch.Tensor | None  # [B, S, D]
    # [B, S, D]: the encoder's input tokens, each camera's cells straight from its backbone (no
    # positional embedding, not yet mixed with the other cameras); kept with encoder_output.
    encoder_input: torch.Tensor | None = None
    # method name -> [B, S] token weights computed by the runner's explainer (e.g. relevance)
    explanations: dict[str, torch.Tensor] = field(default_factory=dict)
    explanation_error: str | None = None  # why the explainer gave nothing this forward (the action is unaffected)

    def encoder_input_at(self, index: int) -> torch.Tensor | None:
        """Batch item ``index``'s encoder input tokens ``[S, D]``, or None when they were not captured."""
        return None if self.encoder_input is None else self.encoder_input[index]


class ActCapture:
    """Hooks on an ``ACTPolicy``; attach once, then read one :class:`ForwardCapture` per forward."""

    def __init__(self, policy: Any, config: CaptureConfig = CaptureConfig()) -> None:
        self.policy = policy
        self.config = config
        model = policy.model
        cfg = policy.config
        self._camera_keys = list(cfg.image_features)
        self._has_state = cfg.robot_state_feature is not None
        self._has_env = cfg.env_state_feature is not None
        self._model = model
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._grids: list[tuple[int, int]] = []
        self._cross: torch.Tensor | None = None
        self._enc_attn: list[torch.Tensor] = []
        self._enc_out: torch.Tensor | None = None
        self._enc_in: torch.Tensor | None = None

    # -------------------------------------------------------------- hooks

    def attach(self) -> ActCapture:
        if self._handles:
            return self
        m = self._model
        if self._camera_keys:
            self._handles.append(m.backbone.register_forward_hook(self._on_backbone))
        cross = m.decoder.layers[-1].multihead_attn
        if self.config.cross_attention or self.config.per_head:
            if self.config.per_head:
                self._handles.append(cross.register_forward_pre_hook(_per_head_pre_hook, with_kwargs=True))
            self._handles.append(cross.register_forward_hook(self._on_cross))
        if self.config.encoder_self_attention:
            for layer in m.encoder.layers:
                self._handles.append(layer.self_attn.register_forward_hook(self._on_encoder_attn))
        if self.config.encoder_output:
            self._handles.append(m.encoder.register_forward_hook(self._on_encoder_out))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __enter__(self) -> ActCapture:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def _on_backbone(self, _module: Any, _inp: Any, out: dict[str, torch.Tensor]) -> None:
        fmap = out["feature_map"]
        self._grids.append((int(fmap.shape[-2]), int(fmap.shape[-1])))

    def _on_cross(self, _module: Any, _inp: Any, out: tuple[torch.Tensor, torch.Tensor | None]) -> None:
        self._cross = out[1].detach() if out[1] is not None else None

    def _on_encoder_attn(self, _module: Any, _inp: Any, out: tuple[torch.Tensor, torch.Tensor | None]) -> None:
        weights = out[1]
        if weights is not None and weights.dim() == 4:  # per-head (asked for by an explainer): average
            weights = weights.mean(dim=1)
        self._enc_attn.append(weights.detach() if weights is not None else weights)

    def _on_encoder_out(self, _module: Any, inp: tuple[Any, ...], out: torch.Tensor) -> None:
        self._enc_out = out.detach()
        # LeRobot passes the tokens positionally (encoder(tokens, pos_embed=...)); None if it ever does not.
        tokens = inp[0] if inp else None
        self._enc_in = tokens.detach() if isinstance(tokens, torch.Tensor) and tokens.shape == out.shape else None

    # -------------------------------------------------------------- per forward

    def reset(self) -> None:
        """Forget the previous forward pass (call before each forward)."""
        self._grids = []
        self._cross = None
        self._enc_attn = []
        self._enc_out = None
        self._enc_in = None

    def collect(self) -> ForwardCapture:
        """The capture of the forward pass since the last :meth:`reset`."""
        if self._camera_keys and len(self._grids) != len(self._camera_keys):
            raise RuntimeError(f"expected {len(self._camera_keys)} backbone calls in one forward pass, "
                               f"saw {len(self._grids)}: call reset() before each forward")
        layout = TokenLayout.build(self._has_state, self._has_env, self._camera_keys, self._grids)
        cross = heads = None
        if self._cross is not None:
            if self._cross.dim() == 4:  # per-head weights were requested
                heads = self._cross
                cross = heads.mean(dim=1)
            else:
                cross = self._cross
            if cross.shape[-1] != layout.num_tokens:
                raise RuntimeError(f"cross-attention reads {cross.shape[-1]} tokens but the layout derived "
                                   f"from this forward pass has {layout.num_tokens}")
        enc_out = self._enc_out.transpose(0, 1) if self._enc_out is not None else None
        enc_in = self._enc_in.transpose(0, 1) if self._enc_in is not None else None
        return ForwardCapture(
            layout=layout, cross_attention=cross if self.config.cross_attention or heads is not None else None,
            cross_attention_heads=heads,
            encoder_self_attention=list(self._enc_attn) if self.config.encoder_self_attention else None,
            encoder_output=enc_out,
            encoder_input=enc_in,
        )


def _per_head_pre_hook(_module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    kwargs["need_weights"] = True
    kwargs["average_attn_weights"] = False
    return args, kwargs
