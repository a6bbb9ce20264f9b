"""How good an SAE is: reconstruction on held-out tokens, and what it does to the policy's actions.

Reconstruction metrics (SAELens / dictionary_learning vocabulary):

* ``fvu``: fraction of variance unexplained, sum of squared error over the sum of squared
  deviation from the held-out mean (``explained_variance = 1 - fvu``);
* ``l0``: mean number of active features per token;
* ``dead_fraction_heldout`` / ``dense_fraction``: features that never fire on the held-out
  tokens / fire on more than 10% of them;
* ``cos_sim``: mean cosine similarity of input and reconstruction;
* ``l2_ratio``: mean ``|x_hat| / |x|`` (below 1 means shrinkage, the L1 failure mode).

The robot analogue of "loss recovered" (:func:`action_recovery`): splice the SAE's
reconstruction into the encoder output the decoder reads, and compare the predicted action
chunk's change with the change when the encoder output is zero-ablated::

    recovered = 1 - mean|chunk_spliced - chunk|^2 / mean|chunk_zero - chunk|^2

1.0 means the policy acts exactly as without the SAE; 0.0 means the reconstruction is as
useless to the policy as no encoder output at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from pai_ros.sae.model import SparseAutoencoder

DENSE_RATE = 0.1


@torch.no_grad()
def reconstruction_metrics(sae: SparseAutoencoder, x: torch.Tensor, batch: int = 8192) -> dict[str, Any]:
    """Metrics of ``sae`` on raw activations ``x [N, d_in]``."""
    n = x.shape[0]
    err_sq = dev_sq = 0.0
    mean = x.mean(dim=0)
    fires = torch.zeros(sae.d_sae, dtype=torch.long, device=x.device)
    l0 = cos = ratio = 0.0
    for i in range(0, n, batch):
        xb = x[i:i + batch]
        recon, codes = sae.reconstruct(xb)
        err_sq += float(((xb - recon) ** 2).sum())
        dev_sq += float(((xb - mean) ** 2).sum())
        active = codes > 0
        fires += active.sum(dim=0)
        l0 += float(active.sum())
        cos += float(torch.nn.functional.cosine_similarity(xb, recon, dim=1).sum())
        ratio += float((recon.norm(dim=1) / xb.norm(dim=1).clamp_min(1e-12)).sum())
    rate = fires.float() / max(n, 1)
    fvu = err_sq / dev_sq if dev_sq > 0 else float("nan")
    return {
        "fvu": fvu,
        "explained_variance": 1.0 - fvu,
        "l0": l0 / n,
        "dead_fraction_heldout": float((fires == 0).float().mean()),
        "dense_fraction": float((rate > DENSE_RATE).float().mean()),
        "cos_sim": cos / n,
        "l2_ratio": ratio / n,
        "mse": err_sq / (n * sae.d_in),
        "feature_density_log10": np.log10(rate.clamp_min(1e-10).cpu().numpy()).round(3).tolist(),
    }


@contextlib.contextmanager
def replaced_encoder_output(policy: Any, replace: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """While active, ACT's decoder reads ``replace(encoder_output)`` (tokens seq-first, ``[S, B, D]``)."""
    handle = policy.model.encoder.register_forward_hook(lambda _m, _i, out: replace(out))
    try:
        yield
    finally:
        handle.remove()


@torch.inference_mode()
def action_recovery(policy: Any, sae: SparseAutoencoder, batches: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """Splice ``sae``'s reconstruction into the policy; see the module docstring."""
    spliced_sq = zero_sq = 0.0
    count = 0
    for batch in batches:
        clean = policy.predict_action_chunk(batch)
        with replaced_encoder_output(policy, lambda out: sae.reconstruct(out)[0].to(out.dtype)):
            spliced = policy.predict_action_chunk(batch)
        with replaced_encoder_output(policy, torch.zeros_like):
            zero = policy.predict_action_chunk(batch)
        spliced_sq += float(((spliced - clean) ** 2).sum())
        zero_sq += float(((zero - clean) ** 2).sum())
        count += clean.numel()
    if count == 0:
        return {"action_recovered": None, "frames": 0}
    return {
        "action_recovered": 1.0 - spliced_sq / zero_sq if zero_sq > 0 else None,
        "action_mse_spliced": spliced_sq / count,  # in the policy's normalised action units
        "action_mse_zero_ablated": zero_sq / count,
        "frames": len(batches),
    }
