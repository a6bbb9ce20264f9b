"""The largest entries of a large 1-D tensor, faster than ``torch.topk`` when many are kept.

BatchTopK training keeps the top ``k x batch`` pre-activations of a whole batch: at the default
ACT's width that is 32,768 of 4.2 million entries per step, and ``torch.topk`` with so large a
k sorts its way there in ~60 ms on this project's 2-core CPU (40% of the old dense BatchTopK
step; 60% of the step once its backward went through the picks). A threshold taken from a
strided sample's quantile keeps somewhat more candidates than needed (``nonzero`` of one
comparison), and ``torch.topk`` over those candidates finishes the job: ~8 ms, the same entries.
Exact by construction: the prefilter is used only when at least ``count`` entries pass it (then
every one of the ``count`` largest is among them); otherwise, or for small tensors,
``torch.topk`` runs on everything, which costs time, never correctness.
"""

from __future__ import annotations

import math

import torch

SAMPLE = 65_536  # entries sampled to place the threshold
# The sample's hits above the threshold: 1.5x those expected for ``count``, plus 5 standard
# deviations of a count of that size, so that a misjudged tail (the full-TopK fallback) stays
# rare when few entries are kept (k 4 of 16,384 latents: ~16 expected hits) as when many are.
MARGIN, SIGMAS = 1.5, 5.0


def largest_entries(flat: torch.Tensor, count: int, *, min_size: int = 1 << 20) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, positions) of the ``count`` largest entries of ``flat`` (1-D), in no order.

    Ties at the boundary are broken arbitrarily, as by ``torch.topk``. Tensors under
    ``min_size`` entries, and ``count`` above a quarter of them, go straight to ``torch.topk``.
    """
    n = flat.numel()
    count = min(count, n)
    if n < min_size or count * 4 > n:
        return torch.topk(flat, count, sorted=False)
    # Odd: a batch of a power-of-two width is then sampled across all its columns (other widths
    # may see only some columns; the fallback keeps that exact).
    stride = max(1, n // SAMPLE) | 1
    sample = flat[::stride]
    expected = len(sample) * count / n
    above = min(len(sample) - 1, math.ceil(MARGIN * expected + SIGMAS * math.sqrt(expected)))
    threshold = torch.kthvalue(sample, len(sample) - above).values
    where = (flat > threshold).nonzero().squeeze(1)
    if len(where) < count:  # the sample misjudged the tail: rank everything
        return torch.topk(flat, count, sorted=False)
    values, picked = torch.topk(flat[where], count, sorted=False)
    return values, where[picked]
