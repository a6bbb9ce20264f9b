"""Gradient x (input - blurred input): a pixel-level attribution cheap enough to run every tick.

Integrated gradients (:mod:`pai_ros.attention.integrated_gradients`) is the only method measured
faithful on the demo policy (bench_faithfulness), and the token-level methods are not: the
ResNet backbone spreads a small object's evidence over many feature cells, so only attribution
down to the pixels finds it. ``input_gradient`` is integrated gradients with a single step taken
at the input itself: ``(x - x') * dF/dx`` with the same blurred baseline ``x'``, one backward pass
through the whole policy, backbone included. It gives up IG's completeness (the path integral)
for the cost of one backward pass, which the runner runs inside the tick.

Per pixel, the attribution's positive part (evidence that pushes ``F`` up; see
:data:`REDUCTIONS`) is summed over colour channels, then per encoder token cell (the heatmaps'
grid), and the cells are normalised to sum 1 over the whole frame. ``F`` is the relevance
target's scalar (:class:`~pai_ros.attention.relevance.RelevanceTarget`: first action, chunk or
one dimension), so ``input_gradient`` and ``relevance`` explain the same output.

**The action is unchanged.** A forward pre-hook on the backbone swaps each camera image for a
detached copy that requires grad: the same numbers, so the forward pass computes the same chunk
(tested bit for bit), and the runner takes the action from the detached chunk. The gradient is
taken with respect to the images after the policy's normalisation; since the normalisation is
an affine map per channel and the Gaussian blur is linear with weights summing to one, blurring
the normalised image equals normalising the blurred one, and ``(x - x') * dF/dx`` is the same in
either space. The parameters need not require grad (frozen policies work): only the path to the
pixels is differentiated.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pai_ros.attention.integrated_gradients import baseline_image, cell_sums
from pai_ros.attention.relevance import RelevanceTarget
from pai_ros.errors import UserError

NAME = "input_gradient"
# How a pixel's signed attribution becomes a weight: ``positive`` keeps what pushes F up (measured
# on the demo with bench_faithfulness: see bench/RESULTS.md), ``absolute`` keeps both signs as IG's
# maps do.
REDUCTIONS = ("positive", "absolute")
# Floats the backbone keeps for its backward pass per input pixel, generously: the demo's ResNet-18
# keeps about 61 (saved-tensor hooks, deduplicated storages; 64 channels at 1/2 and 1/4 resolution
# dominate); deeper or wider backbones keep more. test/test_input_gradient.py checks the estimate
# covers what a forward pass saves.
BACKBONE_FLOATS_PER_PIXEL = 256


class InputGradientExplainer:
    """Hooks on an ACTPolicy's backbone; :meth:`explain` turns one forward's chunk into cell weights ``[B, S]``.

    The same protocol as :class:`~pai_ros.attention.relevance.RelevanceExplainer` (the runner's
    ``explainer``): :meth:`begin` before the forward pass, the forward with gradients enabled,
    :meth:`explain` with the chunk still attached to the graph.
    """

    def __init__(self, policy: Any, target: RelevanceTarget = RelevanceTarget(), reduction: str = "positive") -> None:
        if reduction not in REDUCTIONS:
            raise UserError(f"unknown input_gradient reduction '{reduction}' (choose from {', '.join(REDUCTIONS)})")
        cfg = policy.config
        action_dim = int(cfg.action_feature.shape[0])
        if target.kind == "dim" and target.dim >= action_dim:
            raise UserError(f"relevance target dim:{target.dim} is outside the policy's {action_dim} action dimensions")
        self.name = NAME
        self.target = target
        self.reduction = reduction
        self._backbone = getattr(policy.model, "backbone", None)
        # Token layout facts (as ActCapture derives them): the 1-D tokens come first, then each
        # camera's cells in the order the backbone is called.
        self._num_1d = 1 + int(cfg.robot_state_feature is not None) + int(cfg.env_state_feature is not None)
        self._images: list[torch.Tensor] = []
        self._grids: list[tuple[int, int]] = []
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._active = False

    def check_gradients(self) -> None:
        """Raise :class:`UserError` when there is no image to differentiate (a policy without cameras)."""
        if self._backbone is None:
            raise UserError("input_gradient attributes camera pixels: this policy has no vision backbone")

    def attach(self) -> InputGradientExplainer:
        if not self._handles and self._backbone is not None:
            self._handles.append(self._backbone.register_forward_pre_hook(self._on_input))
            self._handles.append(self._backbone.register_forward_hook(self._on_output))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _on_input(self, _module: Any, args: tuple) -> tuple | None:
        if not self._active or not torch.is_grad_enabled():
            return None
        leaf = args[0].detach().requires_grad_(True)  # same values: the forward computes the same numbers
        self._images.append(leaf)
        return (leaf, *args[1:])

    def _on_output(self, _module: Any, _args: tuple, out: dict[str, torch.Tensor]) -> None:
        if self._active:
            fmap = out["feature_map"]
            self._grids.append((int(fmap.shape[-2]), int(fmap.shape[-1])))

    def begin(self) -> None:
        """Before a forward pass: forget the previous one and start recording."""
        self._images.clear()
        self._grids.clear()
        self._active = True

    def explain(self, chunk: torch.Tensor) -> torch.Tensor:
        """Cell weights ``[B, S]`` (1-D tokens 0, cameras' cells summing to 1) of the forward since :meth:`begin`."""
        self._active = False
        images, grids = list(self._images), list(self._grids)
        self._images.clear()
        self._grids.clear()  # release the graph's tensors whatever happens below
        if not images or len(images) != len(grids):
            raise RuntimeError(f"expected the backbone to see each camera image once with gradients, saw "
                               f"{len(images)} image(s) and {len(grids)} feature map(s): call begin() before each "
                               "forward and run it with gradients enabled")
        if not chunk.requires_grad:
            raise RuntimeError("the chunk is not attached to the images' graph (run the forward with gradients)")
        f = self.target.scalar(chunk)
        grads = torch.autograd.grad(f, images, allow_unused=True)
        b = chunk.shape[0]
        cams = []
        for img, g, (gh, gw) in zip(images, grads, grids):
            if g is None:  # this camera does not reach the output
                cams.append(np.zeros((b, gh * gw), dtype=np.float32))
                continue
            x = img.detach()
            base = torch.stack([baseline_image(x[i], "blur") for i in range(b)])
            attr = (x - base) * g
            attr = attr.clamp_min(0) if self.reduction == "positive" else attr.abs()
            pixel = attr.sum(dim=1).float().cpu().numpy()  # (B, H, W)
            cams.append(np.stack([cell_sums(pixel[i], gh, gw).reshape(-1) for i in range(b)]))
        cells = np.concatenate(cams, axis=1)
        cells = cells / np.maximum(cells.sum(axis=1, keepdims=True), 1e-30)
        weights = np.concatenate([np.zeros((b, self._num_1d), dtype=np.float32), cells.astype(np.float32)], axis=1)
        return torch.from_numpy(weights).to(chunk.device)


def estimated_memory_bytes(policy: Any, image_sizes: list[tuple[int, int]], layout_tokens: int) -> int:
    """A generous estimate of the extra memory one input_gradient tick needs, in bytes.

    The whole forward pass keeps its activations for the backward pass: the backbone's, which
    dominate (:data:`BACKBONE_FLOATS_PER_PIXEL` per camera pixel), and the transformer's (as
    relevance's estimate counts them, without its attention maps); plus the image gradients and
    baselines.
    """
    from pai_ros.attention.relevance import estimated_memory_bytes as transformer_bytes

    pixels = sum(h * w for h, w in image_sizes)
    backbone = BACKBONE_FLOATS_PER_PIXEL * pixels * 4
    images = 4 * 3 * pixels * 4  # leaf copy, gradient, baseline, product
    return int(backbone + images + transformer_bytes(policy, layout_tokens, "relevance"))
