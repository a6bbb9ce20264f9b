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

import re
from dataclasses import dataclass

import torch

from pai_ros.errors import UserError

METHODS = ("cross_attention", "rollout", "relevance", "relevance_cross", "input_gradient", "integrated_gradients")
LIVE_METHODS = ("cross_attention", "rollout", "relevance", "relevance_cross", "input_gradient")
# Methods that need the runner's explainer (a backward pass inside the tick).
GRADIENT_LIVE_METHODS = ("relevance", "relevance_cross", "input_gradient")


@dataclass(frozen=True)
class QuerySelection:
    """Which decoder queries (= which future actions of the chunk) a map explains.

    ``mean`` averages all queries; ``index`` one query ``k``; ``range`` queries
    ``start..stop-1``; ``executed`` the query whose action is executed this tick (resolved by
    the runner: in queue mode, tick t executes query t - t0 of the chunk predicted at t0).
    """

    kind: str = "mean"
    start: int = 0
    stop: int | None = None

    @classmethod
    def parse(cls, text: str) -> QuerySelection:
        text = text.strip()
        if text in ("mean", "all"):
            return cls("mean")
        if text == "executed":
            return cls("executed")
        if re.fullmatch(r"\d+", text):
            return cls("index", int(text), int(text) + 1)
        m = re.fullmatch(r"(\d+):(\d+)", text)
        if m and int(m.group(1)) < int(m.group(2)):
            return cls("range", int(m.group(1)), int(m.group(2)))
        raise ValueError(f"query selection '{text}' is not one of: mean, executed, K, A:B (A < B)")

    def check(self, num_queries: int, option: str) -> None:
        """A fixed query (K or A:B) past the policy's chunk is a set-up error: one line, before any work."""
        if self.kind in ("index", "range") and not self.stop <= num_queries:
            raise UserError(f"{option} {self.label()}: the policy predicts chunks of {num_queries} actions "
                            f"(queries 0..{num_queries - 1})")

    def resolve(self, num_queries: int, executed: int | None = None) -> slice:
        if self.kind == "mean":
            return slice(0, num_queries)
        if self.kind == "executed":
            if executed is None:
                raise ValueError("the executed query is only known inside the runner")
            start, stop = executed, executed + 1
        else:
            start, stop = self.start, self.stop if self.stop is not None else self.start + 1
        if not (0 <= start < stop <= num_queries):
            raise ValueError(f"query selection {start}:{stop} is outside the chunk of {num_queries} queries")
        return slice(start, stop)

    def label(self) -> str:
        return {"mean": "mean", "executed": "executed"}.get(
            self.kind, str(self.start) if self.kind == "index" else f"{self.start}:{self.stop}")


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
