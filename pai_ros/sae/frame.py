"""Encode one forward pass's encoder tokens with an SAE and reduce them to frame level.

This is what the live node publishes as ``FeatureActivations`` and what ``pai features record``
writes per frame: the features that fired on any token, strongest first, each with its maximum
activation over tokens and on how many tokens it fired; the frame's mean L0; and the fraction
of variance unexplained (FVU) of the frame's tokens, the out-of-distribution score.

The token-level codes are kept (as top-k indices and values per token) so a feature's spatial
map over each camera can be drawn without encoding again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from pai_ros.attention.layout import TokenLayout
from pai_ros.sae.model import SparseAutoencoder


@dataclass
class FrameFeatures:
    feature_indices: np.ndarray  # (n,) uint32, strongest first
    activations: np.ndarray  # (n,) float32: max over tokens
    token_counts: np.ndarray  # (n,) uint32: tokens on which the feature fired
    num_tokens: int
    mean_l0: float
    reconstruction_error: float  # FVU of this frame's tokens against the SAE's training mean
    token_codes: torch.Tensor  # [S, d_sae] dense codes on CPU (sparse in content)

    def spatial_map(self, layout: TokenLayout, feature: int) -> dict[str, np.ndarray]:
        """Per camera, the feature's activation on each cell, shaped (grid_h, grid_w)."""
        column = self.token_codes[:, feature].numpy()
        return {cam.name: column[cam.slice].reshape(cam.grid_h, cam.grid_w) for cam in layout.cameras}

    def sparse_tokens(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(token_index, feature_index, activation) of every non-zero code, token-major."""
        nz = torch.nonzero(self.token_codes, as_tuple=False)
        values = self.token_codes[nz[:, 0], nz[:, 1]]
        return (nz[:, 0].numpy().astype(np.uint16), nz[:, 1].numpy().astype(np.uint32),
                values.numpy().astype(np.float32))


@torch.inference_mode()
def encode_frame(sae: SparseAutoencoder, tokens: torch.Tensor, top_n: int | None = None) -> FrameFeatures:
    """``tokens``: ``[S, d_in]`` raw encoder outputs of one frame (any device)."""
    if tokens.dim() != 2 or tokens.shape[1] != sae.d_in:
        raise ValueError(f"expected [S, {sae.d_in}] tokens, got {list(tokens.shape)}")
    x = tokens.to(sae.W_enc.device, torch.float32)
    recon, codes = sae.reconstruct(x)
    err = float(((x - recon) ** 2).sum())
    dev = float(((x - sae.input_mean) ** 2).sum())
    fvu = err / dev if dev > 0 else (0.0 if err == 0 else math.inf)
    active = codes > 0
    counts = active.sum(dim=0)
    peak = codes.max(dim=0).values
    fired = torch.nonzero(counts, as_tuple=False).squeeze(1)
    order = torch.argsort(peak[fired], descending=True)
    fired = fired[order]
    if top_n is not None:
        fired = fired[:top_n]
    return FrameFeatures(
        feature_indices=fired.cpu().numpy().astype(np.uint32),
        activations=peak[fired].cpu().numpy().astype(np.float32),
        token_counts=counts[fired].cpu().numpy().astype(np.uint32),
        num_tokens=int(x.shape[0]),
        mean_l0=float(active.sum(dim=1).float().mean()),
        reconstruction_error=float(fvu),
        token_codes=codes.cpu(),
    )
