"""Train an SAE on shards streamed from disk, in one process or data-parallel under torchrun.

Peak memory is the shuffle buffer plus a few pieces being read (see :mod:`pai_ros.sae.stream`),
whatever the collection's size; the held-out metrics are sums over pieces streamed through the
trained SAE (:class:`pai_ros.sae.metrics.ReconstructionAccumulator`). Under ``torchrun`` each
rank trains on its own pieces with ``batch_size / world`` tokens per step, gradients are
averaged every step (so the world takes the steps one process with the full batch would), and
the held-out sums are added over the ranks: every rank ends with the same weights and metrics.
"""

from __future__ import annotations

from typing import Any

import torch
from tqdm import tqdm

from pai_ros.errors import UserError
from pai_ros.require import require
from pai_ros.sae.distributed import World
from pai_ros.sae.metrics import ReconstructionAccumulator
from pai_ros.sae.shards import ShardSet
from pai_ros.sae.stream import (
    BUFFER_TOKENS,
    BatchStream,
    StreamSplit,
    iter_heldout,
    plan_split,
)
from pai_ros.sae.train import InputStats, TrainResult, TrainSettings, fit_sae, summary


def train_sae_streaming(data: ShardSet, settings: TrainSettings, *, buffer_tokens: int = BUFFER_TOKENS,
                        world: World | None = None, source: dict[str, Any] | None = None,
                        progress: bool = True, log_every: int = 50) -> TrainResult[StreamSplit]:
    world = world or World()
    settings.check(data.d)
    require("--shuffle-buffer", buffer_tokens, at_least=1)
    if settings.batch_size % world.size:
        raise UserError(f"--batch-size {settings.batch_size} must be a multiple of the {world.size} torchrun ranks")
    split = plan_split(data, settings.holdout, settings.seed, max_tokens=settings.max_tokens)
    stream = BatchStream(split, data.d, settings.batch_size // world.size, buffer_tokens=buffer_tokens,
                         seed=settings.seed, rank=world.rank, world=world.size)
    try:
        total, sq_norm, count = stream.stats()
        sums = [total, torch.tensor([sq_norm, float(count)], dtype=torch.float64)]
        world.all_reduce_(sums)  # every rank starts from the same statistics, hence the same weights
        n = float(sums[1][1])
        stats = InputStats((sums[0] / n).float(), float(sums[1][0]) / n)
        fitted = fit_sae(stream, stats, data.d, settings, source=source, progress=progress and world.is_main,
                         log_every=log_every, sync=world)
    finally:
        stream.close()
    device = torch.device(settings.device)
    acc = ReconstructionAccumulator(fitted.sae, device)
    for rows in tqdm(iter_heldout(split, world.rank, world.size), desc="held-out metrics", unit="piece",
                     disable=not (progress and world.is_main), leave=False):
        acc.add(rows.to(device))
    world.all_reduce_(acc.state())
    metrics = acc.result()
    heldout_tokens = int(acc.scalars[0])
    if heldout_tokens == 0:
        raise UserError("no held-out rows to evaluate on; use a larger --holdout")
    metrics.update(summary(fitted, settings, split.count(split.train, False), heldout_tokens, split.by,
                           split.heldout_episodes))
    metrics.update({"shuffle_buffer_tokens": buffer_tokens, "streamed": not stream.resident,
                    "ranks": world.size, "storage_dtype": data.dtype})
    rate = settings.steps * settings.batch_size / fitted.seconds
    return TrainResult(fitted.sae, fitted.history, metrics, split, fitted.seconds, rate)
