"""Encode one forward pass's encoder tokens with an SAE and reduce them to frame level.

This is what the live node publishes as ``FeatureActivations`` and what ``pai features record``
writes per frame: the features that fired on any token, strongest first, each with its maximum
activation over tokens and on how many tokens it fired; the frame's mean L0; and the fraction
of variance unexplained (FVU) of the frame's tokens, the frame-level out-of-distribution score
(once calibrated, ``is_ood`` follows the per-position score instead: :mod:`pai_ros.sae.ood`).

The token-level codes are kept (as top-k indices and values per token) so a feature's spatial
map over each camera can be drawn without encoding again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from pai_ros.policy.layout import TokenLayout
from pai_ros.sae.model import SparseAutoencoder


@dataclass
class FrameFeatures:
    feature_indices: np.ndarray  # (n,) uint32, strongest first
    activations: np.ndarray  # (n,) float32: max over tokens
    token_counts: np.ndarray  # (n,) uint32: tokens on which the feature fired
    num_tokens: int
    mean_l0: float
    reconstruction_error: float  # FVU of this frame's tokens against the SAE's training mean
    # Every non-zero code of the frame, token-major: (token index, feature index, activation).
    token_index: np.ndarray
    token_feature: np.ndarray
    token_activation: np.ndarray
    # Squared reconstruction error of each token (raw space), [num_tokens] float32: the input of
    # the per-position OOD score (pai_ros.sae.position_score).
    token_errors: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))

    def spatial_map(self, layout: TokenLayout, feature: int) -> dict[str, np.ndarray]:
        """Per camera, the feature's activation on each cell, shaped (grid_h, grid_w)."""
        column = np.zeros(layout.num_tokens, dtype=np.float32)
        sel = self.token_feature == feature
        column[self.token_index[sel]] = self.token_activation[sel]
        return {cam.name: column[cam.slice].reshape(cam.grid_h, cam.grid_w) for cam in layout.cameras}

    def sparse_tokens(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(token_index uint16, feature_index uint32, activation float32) of every non-zero code."""
        return (self.token_index.astype(np.uint16), self.token_feature.astype(np.uint32),
                self.token_activation.astype(np.float32))


@torch.inference_mode()
def encode_frame(sae: SparseAutoencoder, tokens: torch.Tensor, top_n: int | None = None) -> FrameFeatures:
    """``tokens``: ``[S, d_in]`` raw encoder outputs of one frame (any device)."""
    if tokens.dim() != 2 or tokens.shape[1] != sae.d_in:
        raise ValueError(f"expected [S, {sae.d_in}] tokens, got {list(tokens.shape)}")
    x = tokens.to(sae.W_enc.device, torch.float32)
    recon, values, indices = sae.reconstruct_sparse(x)
    token_err = ((x - recon) ** 2).sum(dim=1)
    err = float(token_err.sum())
    dev = float(((x - sae.input_mean) ** 2).sum())
    fvu = err / dev if dev > 0 else (0.0 if err == 0 else math.inf)
    active = values > 0
    s = x.shape[0]
    token = torch.arange(s, device=x.device).unsqueeze(1).expand_as(indices)[active]
    feature, value = indices[active], values[active]
    # Token-major order (sorted by token, then feature), for stable tables.
    order = torch.argsort(token * sae.d_sae + feature)
    token, feature, value = token[order], feature[order], value[order]
    counts = torch.bincount(feature, minlength=sae.d_sae)
    peak = torch.zeros(sae.d_sae, device=x.device).scatter_reduce_(0, feature, value, "amax")
    fired = torch.nonzero(counts, as_tuple=False).squeeze(1)
    fired = fired[torch.argsort(peak[fired], descending=True, stable=True)]
    if top_n is not None:
        fired = fired[:top_n]
    return FrameFeatures(
        feature_indices=fired.cpu().numpy().astype(np.uint32),
        activations=peak[fired].cpu().numpy().astype(np.float32),
        token_counts=counts[fired].cpu().numpy().astype(np.uint32),
        num_tokens=s,
        mean_l0=float(active.sum()) / s,
        reconstruction_error=float(fvu),
        token_index=token.cpu().numpy(),
        token_feature=feature.cpu().numpy(),
        token_activation=value.cpu().numpy().astype(np.float32),
        token_errors=token_err.cpu().numpy().astype(np.float32),
    )
