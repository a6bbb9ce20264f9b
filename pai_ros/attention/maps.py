"""One tick's attention maps: method + query selection -> token shares and per-camera grids."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pai_ros.attention.attribution import (
    GRADIENT_LIVE_METHODS,
    LIVE_METHODS,
    QuerySelection,
    token_weights,
)
from pai_ros.policy.layout import TokenLayout
from pai_ros.policy.runner import TickResult


@dataclass
class AttentionMaps:
    method: str
    queries: str  # label of the query selection, e.g. "mean", "executed", "3", "0:5"
    weights: np.ndarray  # [S] raw per-token weights, float32
    shares: dict[str, float]  # mass fraction per token type / camera
    grids: dict[str, np.ndarray]  # camera name -> (grid_h, grid_w) raw weights
    layout: TokenLayout
    fresh: bool  # computed from this tick's forward pass (False: from the chunk's earlier pass)


def maps_for_tick(result: TickResult, method: str = "cross_attention",
                  selection: QuerySelection = QuerySelection(), label: str | None = None) -> AttentionMaps | None:
    """The maps behind a tick, or None when no forward pass has happened yet.

    ``executed`` reads the forward pass that produced the executed action (in queue and chunk
    modes, an earlier tick's) at the executed query. Other selections read this tick's forward
    pass, or in chunk mode between refills, the last one (``fresh`` is then False).

    The gradient methods (``relevance``, ``relevance_cross``, ``input_gradient``) read what the
    runner's explainer computed for that forward pass; they explain the explainer's target (first
    action, chunk, one dimension), so the query selection only chooses which forward pass is
    read, and ``queries`` names the target.
    """
    if method not in LIVE_METHODS:
        raise ValueError(f"method '{method}' cannot run per tick (live methods: {', '.join(LIVE_METHODS)})")
    if selection.kind == "executed":
        capture, fresh = result.executed_capture, result.executed_capture is result.capture
    else:
        capture = result.capture if result.capture is not None else result.executed_capture
        fresh = result.capture is not None
    if capture is None or capture.cross_attention is None:
        return None
    if method in GRADIENT_LIVE_METHODS:
        if method not in capture.explanations:
            return None  # the forward pass ran before the explainer was attached
        weights = capture.explanations[method][0].float().cpu().numpy()
        shares, grids = capture.layout.split(weights)
        return AttentionMaps(method, label or selection.label(), weights, shares, grids, capture.layout, fresh)
    cross = capture.cross_attention[0]
    queries = selection.resolve(cross.shape[0], executed=result.executed_query)
    enc = [a[0] for a in capture.encoder_self_attention] if capture.encoder_self_attention else None
    weights = token_weights(method, cross, queries, enc).float().cpu().numpy()
    shares, grids = capture.layout.split(weights)
    return AttentionMaps(method, selection.label(), weights, shares, grids, capture.layout, fresh)
