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


class ReconstructionAccumulator:
    """Sums from which :func:`reconstruction_metrics` are computed, added batch by batch.

    Everything is a sum (float64), so held-out tokens can be streamed through in any number of
    batches, and ranks of a distributed run can add their sums (:meth:`state` / :meth:`load`)
    before :meth:`result`. The squared deviation from the held-out mean is
    ``sum|x|^2 - |sum x|^2 / n``, which needs no second pass.
    """

    def __init__(self, sae: SparseAutoencoder, device: torch.device | str = "cpu") -> None:
        self.sae = sae
        self.scalars = torch.zeros(6, dtype=torch.float64, device=device)  # n, err_sq, sq_norm, l0, cos, ratio
        self.x_sum = torch.zeros(sae.d_in, dtype=torch.float64, device=device)
        self.fires = torch.zeros(sae.d_sae, dtype=torch.long, device=device)

    @torch.no_grad()
    def add(self, x: torch.Tensor, batch: int = 8192) -> None:
        for i in range(0, x.shape[0], batch):
            xb = x[i:i + batch]
            recon, codes = self.sae.reconstruct(xb)
            active = codes > 0
            self.fires += active.sum(dim=0)
            xd = xb.double()
            self.x_sum += xd.sum(dim=0)
            self.scalars += torch.stack([
                torch.tensor(float(xb.shape[0]), dtype=torch.float64, device=xd.device),
                ((xd - recon.double()) ** 2).sum(), (xd ** 2).sum(), active.sum().double(),
                torch.nn.functional.cosine_similarity(xb, recon, dim=1).double().sum(),
                (recon.norm(dim=1) / xb.norm(dim=1).clamp_min(1e-12)).double().sum()])

    def state(self) -> list[torch.Tensor]:
        """The tensors to sum across ranks (in place), before :meth:`result`."""
        return [self.scalars, self.x_sum, self.fires]

    def result(self) -> dict[str, Any]:
        n, err_sq, sq_norm, l0, cos, ratio = (float(v) for v in self.scalars)
        n_safe = max(n, 1.0)
        dev_sq = sq_norm - float((self.x_sum ** 2).sum()) / n_safe
        rate = self.fires.float() / n_safe
        fvu = err_sq / dev_sq if dev_sq > 0 else float("nan")
        return {
            "fvu": fvu,
            "explained_variance": 1.0 - fvu,
            "l0": l0 / n_safe,
            "dead_fraction_heldout": float((self.fires == 0).float().mean()),
            "dense_fraction": float((rate > DENSE_RATE).float().mean()),
            "cos_sim": cos / n_safe,
            "l2_ratio": ratio / n_safe,
            "mse": err_sq / (n_safe * self.sae.d_in),
            "feature_density_log10": np.log10(rate.clamp_min(1e-10).cpu().numpy()).round(3).tolist(),
        }


@torch.no_grad()
def reconstruction_metrics(sae: SparseAutoencoder, x: torch.Tensor, batch: int = 8192) -> dict[str, Any]:
    """Metrics of ``sae`` on raw activations ``x [N, d_in]``."""
    acc = ReconstructionAccumulator(sae, x.device)
    acc.add(x, batch)
    return acc.result()


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
