"""What several benchmarks build: the default LeRobot ACT with random weights, its inputs, a random SAE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pai_ros.policy.observation import Observation
from pai_ros.policy.random_init import save_random_act
from pai_ros.sae.model import SaeConfig, SparseAutoencoder

# LeRobot's ACTConfig defaults (ResNet-18, dim_model 512, 4 encoder layers, chunk 100) ...
DEFAULT_ACT = dict(dim_model=512, n_heads=8, n_encoder_layers=4, chunk_size=100, n_action_steps=100)
# ... and the sizes save_random_act shrinks unless told otherwise.
FULL_SIZE = dict(dim_feedforward=3200, n_vae_encoder_layers=4, latent_dim=32)
CAMERAS_480P = {"front": (480, 640), "wrist": (480, 640)}


def default_act_checkpoint(directory: Path, cameras: dict[str, tuple[int, int]] = CAMERAS_480P,
                           dof: int = 6) -> Path:
    """A checkpoint directory of the default ACT (``dof``-dimensional state and action), random weights."""
    return save_random_act(directory, cameras, state_dim=dof, action_dim=dof, **DEFAULT_ACT, **FULL_SIZE)


def random_observation(cameras: dict[str, tuple[int, int]] = CAMERAS_480P, seed: int = 0, dof: int = 6) -> Observation:
    rng = np.random.default_rng(seed)
    return Observation({c: rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for c, hw in cameras.items()},
                       rng.normal(size=dof).astype(np.float32))


def random_topk_sae(d_in: int, d_sae: int, k: int, seed: int = 0, architecture: str = "topk") -> SparseAutoencoder:
    """Random unit-norm decoder, encoder = its transpose (the training initialisation); frozen, in eval mode."""
    sae = SparseAutoencoder(SaeConfig(d_in=d_in, d_sae=d_sae, k=k, architecture=architecture,
                                      input_mean=[0.0] * d_in))
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(d_sae, d_in, generator=gen)
    w /= w.norm(dim=1, keepdim=True)
    with torch.no_grad():
        sae.W_dec.copy_(w)
        sae.W_enc.copy_(w.t())
    return sae.eval().requires_grad_(False)
