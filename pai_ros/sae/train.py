"""Train a per-token SAE on a matrix of activations.

TopK (default) follows Gao et al. 2024: normalised MSE, AuxK loss on dead latents (the top
``aux_k`` pre-activations among latents that have not fired for ``dead_window`` tokens model
the residual, coefficient 1/32), unit-norm decoder rows kept by removing the gradient
component parallel to each row and renormalising after every step, encoder initialised as the
decoder's transpose, pre-encoder bias initialised at the data mean.

BatchTopK (Bussmann, Leask, Nanda 2024) trains like TopK (same loss, AuxK, decoder constraint)
but keeps the top ``k x batch`` activations of the whole batch; the inference threshold is an
exponential running mean (over ~100 steps, so it tracks the trained encoder rather than the
first steps') of the smallest kept activation, stored in cfg.json.

ReLU follows Anthropic's 2024 update: squared error plus an L1 penalty on each feature's
activation times its decoder norm (decoder rows free), with the penalty warmed up over the first
5% of steps.

The learning rate decays linearly to zero over the last 20% of steps. Everything is seeded:
the same data, settings and seed give the same weights on the same machine.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from pai_ros.errors import UserError
from pai_ros.require import require
from pai_ros.sae.activations import ActivationSet
from pai_ros.sae.heap import keep_step_tensors_on_heap
from pai_ros.sae.metrics import reconstruction_metrics
from pai_ros.sae.model import K_ARCHITECTURES, SaeConfig, SparseAutoencoder

THRESHOLD_DECAY = 0.99  # BatchTopK threshold: exponential running mean over ~100 steps


@dataclass
class TrainSettings:
    architecture: str = "topk"
    k: int = 32
    num_features: int | None = None  # F; default expansion * d_in
    expansion: int = 8
    steps: int = 3000
    batch_size: int = 1024
    lr: float | None = None  # default: 1e-3 (topk), 3e-4 (relu)
    seed: int = 0
    l1_coeff: float = 1.0  # relu only
    aux_k: int | None = None  # default d_in // 2
    aux_coeff: float = 1.0 / 32.0
    dead_window: int = 100_000  # tokens without firing after which a latent counts as dead
    holdout: float = 0.1  # share of episodes (or of rows, without episode metadata) held out
    max_tokens: int | None = None  # train on at most this many rows (evenly spaced), for memory
    device: str = "cpu"

    def check(self, d_in: int) -> None:
        require("--steps", self.steps, at_least=1)
        require("--batch-size", self.batch_size, at_least=1)
        if self.lr is not None:
            require("--lr", self.lr, above=0)
        if self.num_features is not None:
            require("--num-features", self.num_features, at_least=1)
        require("--expansion", self.expansion, at_least=1)
        if self.architecture in K_ARCHITECTURES:
            require("--k", self.k, at_least=1, at_most=self.d_sae(d_in), note=" (the number of features)")
        require("--holdout", self.holdout, above=0, below=1)
        require("--l1-coeff", self.l1_coeff, at_least=0)
        if self.max_tokens is not None:
            require("--max-tokens", self.max_tokens, at_least=self.batch_size, note=" (--batch-size)")
        require("--seed", self.seed, at_least=0, at_most=2**32 - 1)  # numpy's seed range

    def d_sae(self, d_in: int) -> int:
        return self.num_features if self.num_features is not None else self.expansion * d_in

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (1e-3 if self.architecture in K_ARCHITECTURES else 3e-4)


@dataclass
class Split:
    train: torch.Tensor  # row indices
    heldout: torch.Tensor
    by: str  # "episode" or "row"
    heldout_episodes: list[int] = field(default_factory=list)


SplitT = TypeVar("SplitT")  # in memory: Split; streamed from shards: pai_ros.sae.stream.StreamSplit


@dataclass
class TrainResult(Generic[SplitT]):
    sae: SparseAutoencoder
    history: dict[str, list[float]]
    metrics: dict[str, Any]
    split: SplitT
    seconds: float
    tokens_per_second: float


def split_rows(data: ActivationSet, holdout: float, seed: int) -> Split:
    """Hold out whole episodes when the rows say which episode they come from, else random rows."""
    n = len(data)
    if n < 2:
        raise UserError(f"need at least 2 activation vectors to train and evaluate, got {n}")
    episodes = data.meta.get("episode_index")
    if episodes is not None:
        unique = np.unique(episodes)
        if len(unique) >= 2:
            count = max(1, int(round(holdout * len(unique))))
            held = unique[-count:]
            mask = np.isin(episodes, held)
            return Split(torch.from_numpy(np.flatnonzero(~mask)), torch.from_numpy(np.flatnonzero(mask)), "episode",
                         [int(e) for e in held])
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    count = max(1, int(round(holdout * n)))
    return Split(perm[count:].sort().values, perm[:count].sort().values, "row")


def _evenly(indices: torch.Tensor, limit: int | None) -> torch.Tensor:
    if limit is None or len(indices) <= limit:
        return indices
    pick = torch.linspace(0, len(indices) - 1, limit).round().long()
    return indices[pick]


@dataclass
class InputStats:
    """What the input scaling and the pre-encoder bias start from: the training rows' mean and
    mean squared norm (over all of them in memory; over a sample when streaming)."""

    mean: torch.Tensor  # [d_in], raw space
    mean_sq_norm: float

    @classmethod
    def of(cls, x: torch.Tensor) -> InputStats:
        return cls(x.mean(dim=0), float((x ** 2).sum(dim=1).mean()))


class _NoSync:
    """One process: nothing to share. :mod:`pai_ros.sae.distributed` has the torchrun version."""

    world = 1

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        pass

    def union(self, mask: torch.Tensor) -> torch.Tensor:
        return mask

    def all_reduce_(self, tensors: list[torch.Tensor]) -> None:
        pass


@dataclass
class Fitted:
    sae: SparseAutoencoder
    history: dict[str, list[float]]
    since_fired: torch.Tensor  # training tokens since each latent last fired
    seconds: float


def batch_order(n: int, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Row indices of the in-memory batches: epochs of a seeded permutation, a partial tail skipped.

    Public so that the peer comparisons (bench/) feed other trainers the very same batches.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    cursor = 0
    while True:
        if cursor + batch_size > len(order):
            order = torch.randperm(n, generator=gen)
            cursor = 0
        yield order[cursor:cursor + batch_size]
        cursor += batch_size


def _epochs(x_train: torch.Tensor, settings: TrainSettings) -> Iterator[torch.Tensor]:
    """In-memory batches in :func:`batch_order`."""
    for rows in batch_order(len(x_train), settings.batch_size, settings.seed):
        yield x_train[rows]


def train_sae(data: ActivationSet, settings: TrainSettings, *, source: dict[str, Any] | None = None,
              progress: bool = True, log_every: int = 50) -> TrainResult[Split]:
    """Train on activations held in memory (see :mod:`pai_ros.sae.train_stream` for shards)."""
    settings.check(data.d)
    split = split_rows(data, settings.holdout, settings.seed)
    train_idx = _evenly(split.train, settings.max_tokens)
    device = torch.device(settings.device)
    x_train = data.activations[train_idx].to(device)
    x_held = data.activations[split.heldout].to(device)
    fitted = fit_sae(_epochs(x_train, settings), InputStats.of(x_train), data.d, settings, source=source,
                     progress=progress, log_every=log_every)
    metrics = reconstruction_metrics(fitted.sae, x_held)
    metrics.update(summary(fitted, settings, len(x_train), len(x_held), split.by, split.heldout_episodes))
    return TrainResult(fitted.sae, fitted.history, metrics, split, fitted.seconds,
                       settings.steps * settings.batch_size / fitted.seconds)


def summary(fitted: Fitted, settings: TrainSettings, train_tokens: int, heldout_tokens: int, split_by: str,
            heldout_episodes: list[int]) -> dict[str, Any]:
    """The training facts metrics.json records next to the held-out metrics."""
    return {
        # Dead: no firing on the last ``dead_window`` training tokens (the AuxK definition).
        "dead_fraction": float((fitted.since_fired >= settings.dead_window).float().mean()),
        "dead_window_tokens": settings.dead_window,
        "train_tokens": int(train_tokens), "heldout_tokens": int(heldout_tokens), "split": split_by,
        "heldout_episodes": heldout_episodes, "steps": settings.steps, "batch_size": settings.batch_size,
        "train_seconds": round(fitted.seconds, 3),
        "tokens_per_second": round(settings.steps * settings.batch_size / fitted.seconds, 1),
        "settings": asdict(settings),
    }


def fit_sae(batches: Iterator[torch.Tensor], stats: InputStats, d_in: int, settings: TrainSettings, *,
            source: dict[str, Any] | None = None, progress: bool = True, log_every: int = 50,
            sync: Any = None) -> Fitted:
    """The training loop, over any source of raw ``[batch, d_in]`` batches.

    ``sync`` (torchrun): gradients are averaged over the ranks after every backward pass and
    the latents that fired anywhere count as fired, so every rank takes the same step.
    """
    sync = sync or _NoSync()
    torch.manual_seed(settings.seed)
    device = torch.device(settings.device)
    if not stats.mean_sq_norm > 0:
        raise UserError("the training activations are all zero: nothing to learn")
    scale = math.sqrt(d_in / stats.mean_sq_norm)
    cfg = SaeConfig(d_in=d_in, d_sae=settings.d_sae(d_in), architecture=settings.architecture,
                    k=settings.k if settings.architecture in K_ARCHITECTURES else None, scaling_factor=scale,
                    input_mean=[float(v) for v in stats.mean.cpu()], source=dict(source or {}))
    sae = SparseAutoencoder(cfg).to(device)
    _initialise(sae, stats.mean.to(device) * scale, settings.seed)
    if device.type == "cpu":
        keep_step_tensors_on_heap()
    params = list(sae.parameters())

    history: dict[str, list[float]] = {"step": [], "loss": [], "fvu": [], "l0": [], "dead_fraction": []}
    # The fused Adam kernel (CPU and CUDA) takes a third of the default one's time per step.
    optimiser = torch.optim.Adam(params, lr=settings.learning_rate, fused=device.type in ("cpu", "cuda"))
    decay_from = int(settings.steps * 0.8)
    since_fired = torch.zeros(cfg.d_sae, dtype=torch.long, device=device)
    aux_k = settings.aux_k or max(1, d_in // 2)
    threshold = math.nan  # BatchTopK: running mean of the smallest kept activation
    start = time.perf_counter()
    bar = tqdm(range(settings.steps), desc="training SAE", unit="step", disable=not progress)
    for step in bar:
        x = next(batches).to(device, non_blocking=True) * scale

        if step >= decay_from:
            for group in optimiser.param_groups:
                group["lr"] = settings.learning_rate * (settings.steps - step) / max(1, settings.steps - decay_from)
        if settings.architecture in K_ARCHITECTURES:
            with torch.no_grad():  # the backward pass goes through the chosen latents only
                pre = sae.pre_activations(x)
        else:
            pre = sae.pre_activations(x)
        if settings.architecture == "topk":
            values, indices = sae.topk_for_training(x, pre)
            recon = sae.decode_sparse_scaled(values, indices)
            active = values > 0
            # Which latents fired, as a mask: counting picks with index_add is ~3x cheaper per
            # step than boolean-indexing the [batch, k] indices and index-putting them.
            fired = torch.zeros(cfg.d_sae, device=device).index_add_(
                0, indices.reshape(-1), active.reshape(-1).float()) > 0
        elif settings.architecture == "batchtopk":
            picks, smallest = sae.batch_topk_for_training(x, pre)
            recon = sae.decode_picks_scaled(picks)
            active = None  # every pick is positive: L0 is their count
            fired = torch.bincount(picks.latents, minlength=cfg.d_sae) > 0
            if math.isfinite(smallest):
                threshold = (smallest if math.isnan(threshold)
                             else THRESHOLD_DECAY * threshold + (1 - THRESHOLD_DECAY) * smallest)
        else:
            codes = torch.relu(pre)
            recon = sae.decode_scaled(codes)
            active = codes > 0
            fired = active.any(dim=0)
        err = x - recon
        variance = ((x - x.mean(dim=0)) ** 2).sum(dim=1).mean().clamp_min(1e-12)
        fvu = (err ** 2).sum(dim=1).mean() / variance
        since_fired += len(x) * sync.world
        since_fired.masked_fill_(sync.union(fired), 0)
        dead = since_fired >= settings.dead_window
        if settings.architecture in K_ARCHITECTURES:
            loss = fvu
            if dead.any():
                loss = loss + settings.aux_coeff * _aux_loss(sae, x, pre, err, dead, aux_k)
        else:
            warm = min(1.0, (step + 1) / max(1, int(0.05 * settings.steps)))
            sparsity = (codes * sae.W_dec.norm(dim=1)).sum(dim=1).mean()
            loss = (err ** 2).sum(dim=1).mean() + warm * settings.l1_coeff * sparsity
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        sync.average_gradients(params)
        if settings.architecture in K_ARCHITECTURES:
            _remove_parallel_grad(sae)
        optimiser.step()
        if settings.architecture in K_ARCHITECTURES:
            sae.normalize_decoder()
        if step % log_every == 0 or step == settings.steps - 1:
            l0 = float(active.sum() if active is not None else picks.values.numel()) / len(x)
            history["step"].append(step)
            history["loss"].append(float(loss.detach()))
            history["fvu"].append(float(fvu.detach()))
            history["l0"].append(l0)
            history["dead_fraction"].append(float(dead.float().mean()))
            bar.set_postfix(fvu=f"{float(fvu.detach()):.3f}", l0=f"{l0:.1f}")
    seconds = time.perf_counter() - start
    if settings.architecture == "batchtopk":
        # Nothing ever positive (degenerate data): a threshold of 0 makes inference plain ReLU.
        sae.cfg.threshold = 0.0 if math.isnan(threshold) else threshold
        if sync.world > 1:  # every rank saves and encodes with the same threshold: the ranks' mean
            shared = torch.tensor([sae.cfg.threshold], dtype=torch.float64)
            sync.all_reduce_([shared])
            sae.cfg.threshold = float(shared) / sync.world
    sae.eval().requires_grad_(False)
    return Fitted(sae, history, since_fired, seconds)


@torch.no_grad()
def _initialise(sae: SparseAutoencoder, mean_scaled: torch.Tensor, seed: int) -> None:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    w = torch.randn(sae.d_sae, sae.d_in, generator=gen)
    w /= w.norm(dim=1, keepdim=True)
    if sae.cfg.architecture == "relu":
        w *= 0.1  # small decoder rows: the L1 term starts gentle (Anthropic 2024)
    sae.W_dec.copy_(w.to(sae.W_dec.device))
    sae.W_enc.copy_(w.t().to(sae.W_enc.device))
    sae.b_enc.zero_()
    sae.b_dec.copy_(mean_scaled)


def _aux_loss(sae: SparseAutoencoder, x: torch.Tensor, pre: torch.Tensor, err: torch.Tensor, dead: torch.Tensor,
              aux_k: int) -> torch.Tensor:
    """AuxK: the dead latents' top pre-activations should model the main reconstruction's residual.

    ``pre`` is computed without autograd, as for the main TopK: the gradient reaches the encoder
    through the chosen dead latents alone.

    Only the dead latents' columns are ranked (the same values and indices as ranking every latent
    with the live ones masked to -inf): with a few percent of the latents dead, a TopK over a few
    dozen columns instead of a masked copy of the whole ``[batch, d_sae]`` matrix and a TopK over it.
    """
    columns = dead.nonzero().squeeze(1)
    k = min(aux_k, len(columns))
    values, indices = sae.topk_for_training(x, pre, k, columns)
    residual = err.detach()
    aux_recon = sae.decode_sparse_scaled(values, indices, bias=False)
    denom = ((residual - residual.mean(dim=0)) ** 2).sum(dim=1).mean().clamp_min(1e-12)
    loss = ((residual - aux_recon) ** 2).sum(dim=1).mean() / denom
    return torch.nan_to_num(loss, nan=0.0)


def _remove_parallel_grad(sae: SparseAutoencoder) -> None:
    """Keep decoder rows on the unit sphere: drop the gradient along each row."""
    g = sae.W_dec.grad
    if g is None:
        return
    w = sae.W_dec.data
    g -= (g * w).sum(dim=1, keepdim=True) * w
