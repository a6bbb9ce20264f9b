"""From captured attention to one weight per source token: query selection and attribution.

Methods (each gives a weight vector over the encoder's source tokens, ``[S]``, that
:meth:`TokenLayout.split` turns into token-type shares and per-camera grids):

* ``cross_attention``: the last decoder layer's cross-attention, reduced over the selected
  decoder queries. Cheap and live, but it reads tokens that the encoder layers have already
  mixed, so a camera cell's weight is not only about that cell.
* ``rollout``: attention rollout (Abnar & Zuidema 2020) through the encoder: each layer's
  self-attention averaged with the identity for the residual stream, rows renormalised, the
  layers composed, then read through the cross-attention. Attributes decoder attention back
  to the *input* tokens. Also live: the weights are computed by the forward pass anyway.
* ``relevance``: gradient-weighted relevance propagation (Chefer et al. 2021) through the
  encoder self-attention and the decoder, one backward pass per forward; ``relevance_cross``:
  only the last cross-attention times its gradient (cheaper). See
  :mod:`pai_ros.attention.relevance`. Live: the runner computes them during the tick.
* ``input_gradient``: gradient x (input - blurred input) down to the camera pixels, summed per
  token cell: integrated gradients with one step, one backward pass through the backbone too.
  See :mod:`pai_ros.attention.input_gradient`. Live, like relevance.
* ``integrated_gradients``: see :mod:`pai_ros.attention.integrated_gradients` (offline).
"""

from __future__ import annotations

import torch

# The method names and the query selection need no torch (option checks import them from there);
# re-exported here, where they are used and where they used to live.
from pai_ros.attention.selection import GRADIENT_LIVE_METHODS, LIVE_METHODS, METHODS, QuerySelection

__all__ = ["GRADIENT_LIVE_METHODS", "LIVE_METHODS", "METHODS", "QuerySelection", "reduce_queries", "rollout_matrix",
           "token_weights"]


def reduce_queries(cross: torch.Tensor, queries: slice) -> torch.Tensor:
    """``[Q, S]`` (or ``[H, Q, S]``) cross-attention -> ``[S]``: mean over heads and selected queries."""
    if cross.dim() == 3:
        cross = cross.mean(dim=0)
    return cross[queries].mean(dim=0)


def rollout_matrix(self_attentions: list[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """Compose encoder self-attention layers into ``R [S, S]``: output token i draws R[i, j] from input j.

    Each layer is ``residual * I + (1 - residual) * A``, rows renormalised (the residual stream
    carries each token through unchanged with equal weight, as in Abnar & Zuidema). The product
    is row-stochastic, so mass is preserved.
    """
    if not self_attentions:
        raise ValueError("rollout needs the encoder self-attention of every layer (capture them)")
    s = self_attentions[0].shape[-1]
    eye = torch.eye(s, dtype=self_attentions[0].dtype, device=self_attentions[0].device)
    result = eye
    for attn in self_attentions:  # first layer first
        a = residual * eye + (1.0 - residual) * attn
        a = a / a.sum(dim=-1, keepdim=True)
        result = a @ result
    return result


def token_weights(method: str, cross: torch.Tensor, queries: slice,
                  self_attentions: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Per-source-token weights ``[S]`` for one sample (no batch dimension)."""
    w = reduce_queries(cross, queries)
    if method == "cross_attention":
        return w
    if method == "rollout":
        return w @ rollout_matrix(self_attentions or [])
    if method == "integrated_gradients":
        raise ValueError("integrated_gradients needs gradients: use pai_ros.attention.integrated_gradients")
    if method in GRADIENT_LIVE_METHODS:
        raise ValueError(f"{method} is computed inside the forward pass: attach its explainer to the runner")
    raise ValueError(f"unknown attribution method '{method}' (choose from {', '.join(METHODS)})")
