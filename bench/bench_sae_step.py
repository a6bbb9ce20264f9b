"""SAE training step: the encoder's backward through the chosen latents vs through the dense ranking.

``pai sae train`` ranks the pre-activations without autograd and sends the gradient back
through the chosen latents only (``SparseAutoencoder.topk_for_training`` and
``batch_topk_for_training``, ``pai_ros/sae/sparse_encoder.py``). The reference, measured in the
same run, is what training did before: autograd through ``x @ W_enc`` and ``torch.topk``, whose
backward builds a dense ``[batch, d_sae]`` gradient and multiplies it by the batch; for
BatchTopK also dense codes decoded by a matmul (now: the picks decoded by ``embedding_bag``).
Both run the same step on the same rows: encode, TopK or BatchTopK, decode, the FVU loss,
backward, fused Adam, unit-norm decoder rows (no AuxK: no latent is dead at the start).
Interleaved rounds, median [min-max] per step, the paired ratio of reference / ours per round;
the gradients of the two are compared once.

Shapes: the demo policy's (d 128 -> 1024 features) and LeRobot's default ACT's (d 512 -> 4096),
k 32, at batch 1024 and 4096; random unit-norm weights and Gaussian rows. Targets: faster at the
default ACT's width, where the dense backward is a [batch x 4096] x [4096 x 512] matmul; no slower
(within noise) at the demo's, where that matmul is 16x smaller.

Usage: python bench/bench_sae_step.py [--rounds 20] [--device cpu] [--quick]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import fmt_ms, interleaved, machine, paired_ratio, print_table, summary_ms  # noqa: E402
from setups import random_topk_sae  # noqa: E402

from pai_ros.sae.model import SparseAutoencoder  # noqa: E402

SHAPES = [(128, 1024, 1024), (512, 4096, 1024), (512, 4096, 4096)]  # d_in, d_sae, batch
K = 32


def make_sae(d_in: int, d_sae: int, architecture: str, device: str) -> SparseAutoencoder:
    """The benches' random SAE (training's initialisation), made trainable."""
    return random_topk_sae(d_in, d_sae, K, architecture=architecture).train().requires_grad_(True).to(device)


def topk_chosen(sae: SparseAutoencoder, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        pre = sae.pre_activations(x)
    return sae.decode_sparse_scaled(*sae.topk_for_training(x, pre))


def topk_dense(sae: SparseAutoencoder, x: torch.Tensor) -> torch.Tensor:
    return sae.decode_sparse_scaled(*sae.topk(sae.pre_activations(x)))


def batchtopk_chosen(sae: SparseAutoencoder, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        pre = sae.pre_activations(x)
    picks, _ = sae.batch_topk_for_training(x, pre)
    return sae.decode_picks_scaled(picks)


def batchtopk_dense(sae: SparseAutoencoder, x: torch.Tensor) -> torch.Tensor:
    """BatchTopK as training ran it before: scattered into dense codes, decoded by a matmul."""
    flat = torch.relu(sae.pre_activations(x)).reshape(-1)
    values, where = torch.topk(flat, min(flat.numel(), K * len(x)), sorted=False)
    return sae.decode_scaled(torch.zeros_like(flat).scatter(0, where, values).reshape(len(x), sae.d_sae))


Reconstruct = Callable[[SparseAutoencoder, torch.Tensor], torch.Tensor]
PATHS: dict[str, tuple[Reconstruct, Reconstruct]] = {"topk": (topk_chosen, topk_dense),
                                                      "batchtopk": (batchtopk_chosen, batchtopk_dense)}


def loss_of(sae: SparseAutoencoder, x: torch.Tensor, reconstruct: Reconstruct) -> torch.Tensor:
    err = x - reconstruct(sae, x)
    return (err ** 2).sum(dim=1).mean() / ((x - x.mean(dim=0)) ** 2).sum(dim=1).mean()


def stepper(sae: SparseAutoencoder, x: torch.Tensor, reconstruct: Reconstruct) -> Callable[[], None]:
    optimiser = torch.optim.Adam(sae.parameters(), lr=1e-4, fused=x.device.type in ("cpu", "cuda"))

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        loss_of(sae, x, reconstruct).backward()
        optimiser.step()
        sae.normalize_decoder()
        if x.device.type == "cuda":
            torch.cuda.synchronize()
    return step


def largest_gradient_difference(d_in: int, d_sae: int, batch: int, architecture: str, device: str) -> float:
    """Max |grad ours - grad reference| over all weights, relative to the largest gradient entry."""
    x = torch.randn(batch, d_in, generator=torch.Generator().manual_seed(1)).to(device)
    sae = make_sae(d_in, d_sae, architecture, device)
    grads = []
    for reconstruct in reversed(PATHS[architecture]):  # the reference first
        sae.zero_grad(set_to_none=True)
        loss_of(sae, x, reconstruct).backward()
        grads.append([p.grad.clone() for p in sae.parameters()])
    scale = max(float(g.abs().max()) for g in grads[0])
    return max(float((a - b).abs().max()) for a, b in zip(*grads)) / scale


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20, help="interleaved rounds per shape (default 20)")
    ap.add_argument("--device", default="cpu", help="torch device (default cpu)")
    ap.add_argument("--quick", action="store_true", help="3 rounds, the first two shapes only (a smoke run)")
    args = ap.parse_args()
    rounds = 3 if args.quick else args.rounds
    rows = []
    for architecture in ("topk", "batchtopk"):
        for d_in, d_sae, batch in SHAPES[:2] if args.quick else SHAPES:
            x = torch.randn(batch, d_in, generator=torch.Generator().manual_seed(0)).to(args.device)
            steps = {name: stepper(make_sae(d_in, d_sae, architecture, args.device), x, reconstruct)
                     for name, reconstruct in zip(("chosen", "dense"), PATHS[architecture])}
            for step in steps.values():  # warm-up: allocator, kernels
                for _ in range(3):
                    step()
            times = interleaved(steps, rounds, per_round=3)
            label = f"{architecture}, d {d_in} -> {d_sae}, batch {batch}"
            rows.append((f"training step, {label}", fmt_ms(summary_ms(times["chosen"])),
                         fmt_ms(summary_ms(times["dense"])), paired_ratio(times["dense"], times["chosen"]),
                         # The demo's small SAE: the dense backward is cheap there, so parity is the aim.
                         ">= 0.95x" if d_sae <= 1024 else "> 1.0x"))
            gap = largest_gradient_difference(d_in, d_sae, batch, architecture, args.device)
            rows.append((f"gradients, {label}: largest difference from the reference's, per million of its "
                         "largest entry", f"{gap * 1e6:.2f} ppm", "0 ppm", "-", "< 100 ppm"))
    print_table(f"SAE training step, TopK and BatchTopK, k {K}: backward through the chosen latents (this) vs autograd "
                f"through the dense ranking (reference); ratio = reference / this; {machine()}, {args.device}, "
                f"{rounds} interleaved rounds of 3 steps", rows)


if __name__ == "__main__":
    main()
