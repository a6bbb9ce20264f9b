"""What an attention map explains, as the user names it: the methods, ``--queries`` and ``--relevance-target``.

Torch-free, so that ``pai attention`` refuses a wrong option in a fraction of a second, before
importing torch (seconds). The maps themselves are computed in :mod:`pai_ros.attention.attribution`
and :mod:`pai_ros.attention.relevance`, which re-export these names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pai_ros.errors import UserError

if TYPE_CHECKING:
    import torch

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


RELEVANCE_METHODS = ("relevance", "relevance_cross")


@dataclass(frozen=True)
class RelevanceTarget:
    """Which output the relevance explains: ``first``, ``chunk`` or ``dim:K`` (see the module doc)."""

    kind: str = "first"
    dim: int = 0

    @classmethod
    def parse(cls, text: str) -> RelevanceTarget:
        text = text.strip()
        if text in ("first", "chunk"):
            return cls(text)
        m = re.fullmatch(r"dim:(\d+)", text)
        if m:
            return cls("dim", int(m.group(1)))
        raise ValueError(f"relevance target '{text}' is not one of: first, chunk, dim:K")

    def label(self) -> str:
        return f"dim:{self.dim}" if self.kind == "dim" else self.kind

    def scalar(self, chunk: torch.Tensor) -> torch.Tensor:
        """``F`` for a ``(B, Q, D)`` normalised chunk (summed over the batch: samples are independent)."""
        if self.kind == "dim":
            if not 0 <= self.dim < chunk.shape[-1]:
                raise UserError(f"relevance target dim:{self.dim} is outside the policy's "
                                f"{chunk.shape[-1]} action dimensions")
            return chunk[:, 0, self.dim].sum()
        y = chunk[:, :1] if self.kind == "first" else chunk
        y = y.reshape(y.shape[0], -1)
        direction = y.detach() / y.detach().norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return (y * direction).sum()

    def rows(self, num_queries: int) -> slice:
        """The decoder queries whose rows of ``R_qe`` are read."""
        return slice(0, num_queries) if self.kind == "chunk" else slice(0, 1)
