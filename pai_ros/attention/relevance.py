"""Gradient-weighted relevance propagation through ACT's transformer (live: one backward per tick).

Chefer, Gur and Wolf (ICCV 2021), "Generic Attention-model Explainability for Interpreting
Bi-Modal and Encoder-Decoder Transformers", applied to ACT's DETR-shaped transformer:

* every attention map ``A`` (per head) is weighted by the gradient of the explained output
  ``F`` with respect to it, the positive part kept and the heads averaged:
  ``Abar = mean_h (dF/dA_h * A_h)^+``;
* encoder self-attention: ``R_ee = I``, then per layer ``R_ee += Abar @ R_ee``;
* decoder self-attention: ``R_qq = I``, ``R_qe = 0``, then per layer ``R_qq += Abar @ R_qq``,
  ``R_qe += Abar @ R_qe``;
* decoder cross-attention: ``R_qe += norm(R_qq)^T @ Abar @ norm(R_ee)``, where ``norm`` removes
  the identity, normalises rows to sum 1 and adds the identity back (so the residual stream does
  not drown the attention's share);
* the explained queries' rows of ``R_qe`` are the relevance of every encoder token (latent,
  state, camera cells).

The cheaper variant ``relevance_cross`` keeps only the last decoder cross-attention's
``Abar`` (attention x gradient), so its backward pass stops at the decoder.

**No change to LeRobot and no change to the actions.** ``nn.MultiheadAttention`` does not keep
the attention map in the autograd graph in a form one can differentiate against from outside
(the weights it returns are a view taken after use), so the gradient with respect to each map
is computed exactly from what hooks can read: the attention's output ``o = W_o concat_h(A_h V_h)
+ b``, whose gradient ``dF/do`` one backward pass gives; then ``dF/dA_h = (dF/do W_o)_h V_h^T``
with ``V_h`` the head's value projection of the value input. The forward pass itself runs with
gradients enabled but computes the same numbers (tested bit for bit); the action is detached
before anything else uses it.

**What is explained** (:class:`RelevanceTarget`; ``pai attention``, the node and
``config/policy.yaml`` default to ``chunk``): ``first``: the first action of the
chunk, the one this observation decides now (in ensemble and replan modes and at every queue
refill, the action executed this tick); ``chunk``: every action of the chunk; ``dim:K``: action
dimension ``K`` of the first action. For a vector output ``F`` is its projection on its own
direction in normalised action units, i.e. its distance from the training set's mean action
(LeRobot normalises actions to zero mean), so the map shows what pushes the action away from
the average one. For ``dim:K``, ``F`` is that dimension's value (signed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from pai_ros.attention.errors import NoGradientError
from pai_ros.attention.selection import RELEVANCE_METHODS, RelevanceTarget  # torch-free: for option checks too
from pai_ros.errors import UserError


@dataclass
class _Call:
    """What one attention call computed, for the gradient with respect to its map."""

    weights: torch.Tensor  # [B, H, T, S] per-head attention
    value: torch.Tensor  # [S, B, D] value input (seq-first, as ACT calls it)
    output: torch.Tensor  # [T, B, D] attention output, in the autograd graph


@dataclass
class _Slot:
    module: Any
    calls: list[_Call] = field(default_factory=list)


def gradient_weighted(weights: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``mean_h (grad * A)^+``: ``[B, H, T, S]`` -> ``[B, T, S]``."""
    return (grad * weights).clamp_min(0).mean(dim=1)


def _without_identity(r: torch.Tensor) -> torch.Tensor:
    """Rows of ``r - I`` normalised to sum 1, then ``+ I`` (Chefer et al.'s residual handling)."""
    eye = torch.eye(r.shape[-1], dtype=r.dtype, device=r.device)
    off = r - eye
    return off / off.sum(dim=-1, keepdim=True).clamp_min(1e-12) + eye


class RelevanceExplainer:
    """Hooks on an ACTPolicy's attention layers; :meth:`explain` turns one forward's chunk into token relevance.

    Used by :class:`pai_ros.policy.runner.PolicyRunner` (its ``explainer``): the runner resets it
    before the forward pass, runs the forward with gradients, and calls :meth:`explain` with the
    chunk, still attached to the graph.
    """

    def __init__(self, policy: Any, method: str = "relevance", target: RelevanceTarget = RelevanceTarget()) -> None:
        if method not in RELEVANCE_METHODS:
            raise UserError(f"unknown relevance method '{method}' (choose from {', '.join(RELEVANCE_METHODS)})")
        self.name = method
        self.target = target
        action_dim = int(policy.config.action_feature.shape[0])
        if target.kind == "dim" and target.dim >= action_dim:
            raise UserError(f"relevance target dim:{target.dim} is outside the policy's {action_dim} action dimensions")
        model = policy.model
        last_cross = model.decoder.layers[-1].multihead_attn
        self._cross_only = method == "relevance_cross"
        self._encoder = [] if self._cross_only else [_Slot(layer.self_attn) for layer in model.encoder.layers]
        self._decoder = [] if self._cross_only else [(_Slot(layer.self_attn), _Slot(layer.multihead_attn))
                                                     for layer in model.decoder.layers]
        self._last_cross = _Slot(last_cross) if self._cross_only else self._decoder[-1][1]
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._active = False
        self._model = model
        self._grad_mode = True

    def _slots(self) -> list[_Slot]:
        if self._cross_only:
            return [self._last_cross]
        return [*self._encoder, *(s for pair in self._decoder for s in pair)]

    def attach(self) -> RelevanceExplainer:
        if self._handles:
            return self
        backbone = getattr(self._model, "backbone", None)
        if backbone is not None:
            # Relevance stops at the encoder's input tokens: the vision backbone needs no graph
            # (same numbers; less memory and time). Its grad mode is restored right after it.
            self._handles.append(backbone.register_forward_pre_hook(self._backbone_enter))
            self._handles.append(backbone.register_forward_hook(self._backbone_exit))
        for slot in self._slots():
            m = slot.module
            self._handles.append(m.register_forward_pre_hook(_per_head_weights, with_kwargs=True))
            self._handles.append(m.register_forward_hook(self._recorder(slot), with_kwargs=True))
        return self

    def _backbone_enter(self, _module: Any, _args: tuple) -> None:
        self._grad_mode = torch.is_grad_enabled()
        torch.set_grad_enabled(False)

    def _backbone_exit(self, _module: Any, _args: tuple, _out: Any) -> None:
        torch.set_grad_enabled(self._grad_mode)

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def check_gradients(self) -> None:
        """Raise :class:`NoGradientError` unless every hooked attention layer's projections take gradients.

        Without them the attention outputs are not in any autograd graph (a frozen policy) and
        there is nothing to differentiate: say so before switching, not as a failing tick.
        """
        frozen = [n for slot in self._slots() for n, p in slot.module.named_parameters() if not p.requires_grad]
        if frozen:
            raise NoGradientError(f"this policy's graph gives no gradient to its attention maps (parameters "
                                  f"{', '.join(sorted(set(frozen)))} do not require grad): relevance needs them")

    def _recorder(self, slot: _Slot):
        def hook(_module: Any, args: tuple, kwargs: dict, out: tuple[torch.Tensor, torch.Tensor | None]) -> None:
            if not self._active:
                return
            value = kwargs.get("value", args[2] if len(args) > 2 else None)
            if out[1] is None or value is None or out[1].dim() != 4:
                raise RuntimeError("relevance needs the per-head attention weights and the value input of "
                                   f"{type(_module).__name__}; this policy calls attention differently")
            slot.calls.append(_Call(out[1], value, out[0]))
        return hook

    def begin(self) -> None:
        """Before a forward pass: forget the previous one and start recording."""
        for slot in self._slots():
            slot.calls.clear()
        self._active = True

    def explain(self, chunk: torch.Tensor) -> torch.Tensor:
        """Token relevance ``[B, S]`` of the forward pass since :meth:`begin`, from its ``(B, Q, D)`` chunk."""
        self._active = False
        slots = self._slots()
        if any(len(s.calls) != 1 for s in slots):
            raise RuntimeError(f"expected one call per attention layer in one forward pass, saw "
                               f"{[len(s.calls) for s in slots]}: call begin() before each forward")
        calls = [s.calls[0] for s in slots]
        if not chunk.requires_grad or any(not c.output.requires_grad for c in calls):
            raise NoGradientError("this policy's graph gives no gradient to its attention maps (run the forward "
                                  "pass with gradients enabled, on parameters that require grad)")
        f = self.target.scalar(chunk)
        grads = torch.autograd.grad(f, [c.output for c in calls], allow_unused=True)
        cams = []
        for slot, call, g in zip(slots, calls, grads):
            if g is None:  # this layer does not reach the output: it contributes nothing
                cams.append(torch.zeros_like(call.weights[:, 0]))
                continue
            cams.append(gradient_weighted(call.weights.detach(), _map_gradient(slot.module, call, g)))
        for slot in slots:
            slot.calls.clear()  # release the graph's tensors
        rows = self.target.rows(chunk.shape[1])
        if self._cross_only:
            return cams[0][:, rows].mean(dim=1)
        n_enc = len(self._encoder)
        return _propagate(cams[:n_enc], list(zip(cams[n_enc::2], cams[n_enc + 1::2])))[:, rows].mean(dim=1)


def _propagate(encoder: list[torch.Tensor], decoder: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """The rules of the module docstring: encoder maps ``[B, S, S]``, decoder (self ``[B, Q, Q]``, cross ``[B, Q, S]``)."""
    b, q, s = decoder[0][1].shape
    dtype, device = decoder[0][1].dtype, decoder[0][1].device
    r_ee = torch.eye(s, dtype=dtype, device=device).expand(b, s, s).clone()
    for a in encoder:
        r_ee = r_ee + a @ r_ee
    r_qq = torch.eye(q, dtype=dtype, device=device).expand(b, q, q).clone()
    r_qe = torch.zeros(b, q, s, dtype=dtype, device=device)
    for self_a, cross_a in decoder:
        r_qq = r_qq + self_a @ r_qq
        r_qe = r_qe + self_a @ r_qe
        r_qe = r_qe + _without_identity(r_qq).transpose(1, 2) @ cross_a @ _without_identity(r_ee)
    return r_qe


def _map_gradient(module: torch.nn.MultiheadAttention, call: _Call, grad_out: torch.Tensor) -> torch.Tensor:
    """``dF/dA`` per head ``[B, H, T, S]`` from ``dF/do`` (see the module docstring)."""
    h = module.num_heads
    t, b, d = grad_out.shape
    hd = d // h
    g_concat = grad_out.detach() @ module.out_proj.weight  # [T, B, D]: o = concat @ W_o^T + b
    if module._qkv_same_embed_dim:
        w_v, b_v = module.in_proj_weight[2 * d:], module.in_proj_bias
        b_v = b_v[2 * d:] if b_v is not None else None
    else:
        w_v, b_v = module.v_proj_weight, module.in_proj_bias[2 * d:] if module.in_proj_bias is not None else None
    v = torch.nn.functional.linear(call.value.detach(), w_v.detach(), None if b_v is None else b_v.detach())
    s = v.shape[0]
    g_h = g_concat.reshape(t, b, h, hd).permute(1, 2, 0, 3)  # [B, H, T, hd]
    v_h = v.reshape(s, b, h, hd).permute(1, 2, 0, 3)  # [B, H, S, hd]
    return g_h @ v_h.transpose(-1, -2)


def _per_head_weights(_module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    # Only how the weights are returned changes (per head instead of their mean); the attention
    # output is computed by the same code path either way.
    kwargs["need_weights"] = True
    kwargs["average_attn_weights"] = False
    return args, kwargs


def available_memory_bytes(device: str) -> int | None:
    """Free memory where the policy runs (CUDA: the device's free memory; CPU: MemAvailable), None if unknown."""
    if device.startswith("cuda"):
        try:
            return int(torch.cuda.mem_get_info(torch.device(device))[0])
        except (RuntimeError, AssertionError):
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def estimated_memory_bytes(policy: Any, layout_tokens: int, method: str = "relevance") -> int:
    """A generous estimate of the extra memory one relevance tick needs (graph + maps), in bytes.

    Used before switching a live node to relevance: the forward pass then keeps its activations
    for the backward pass (roughly another copy of the model's working set per token), and the
    per-head maps, their gradients and the propagated matrices are ``S x S`` per layer.
    """
    model = policy.model
    cfg = policy.config
    s, q, d = layout_tokens, int(cfg.chunk_size), int(cfg.dim_model)
    heads = int(cfg.n_heads)
    layers = 1 if method == "relevance_cross" else len(model.encoder.layers) + 2 * len(model.decoder.layers)
    maps = 4 * layers * heads * max(s, q) * s * 4  # weights, gradient, product, propagation; float32
    activations = 16 * (s + q) * max(d, int(cfg.dim_feedforward)) * 4 * layers
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return int(maps + activations + params // 4)
