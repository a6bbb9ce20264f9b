"""pai_ros's SAE trainer against the strongest open-source peers, on the same ACT tokens.

Peers (each optional, skipped with the reason when it does not import):

* SAELens (``sae-lens``): ``TopKTrainingSAE`` driven as its ``SAETrainer`` does (Adam 3e-4,
  constant schedule, gradient-norm clipping at 1, AuxK on latents dead for 1000 steps, decoder
  initialised at norm 0.1 and activations rescaled by decoder norm, ``b_dec`` at zero).
* EleutherAI's sparsify (``eai-sparsify``): ``SparseCoder`` driven as its ``Trainer`` does with
  its default optimiser (sign-SGD in a schedule-free wrapper, lr 5e-3 / sqrt(F / 2^14)), FVU
  loss, ``b_dec`` at the first batch's mean, unit-norm decoder rows, no AuxK (its default); its
  fused TopK encoder (sparse backward) and embedding-bag decoder are what it is known for.
* dictionary_learning 0.1.0 (``make bench-deps``): ``TopKTrainer`` exactly as bench_sae.py drives it.

Same rows (``pai sae collect`` output; held-out episodes as ``pai sae train`` splits them),
same dictionary size F and k, same batch size and steps; inputs are scaled by one scalar to
mean squared norm ``d`` for the peers that expect normalised inputs (FVU does not depend on
the scale). What is left at each library's defaults is listed above: a peer's own recipe, not
ours in its clothes.

Figures: training tokens/s (the optimisation loop only, short runs, interleaved rounds, median)
and held-out FVU / L0 after the full runs, computed here the same way for all (raw space, each
model's own encode/decode); then the time to equal quality: our runs of 1/2 .. 1/16 of the steps
(each with its own learning-rate decay, as a user's shorter run) give the fewest steps at which
ours reaches each peer's full-run FVU, timed at the measured rates. The peers need their own
virtual environment (they pin packages the project's venv must not change); see
``bench/install_peer_deps.sh``.

Usage: python bench/sae_peers.py --activations DIR [--steps 2000] [--short-steps 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")  # its Triton decoder is GPU-only; set before import

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, print_table

from pai_ros.sae.heap import keep_step_tensors_on_heap
from pai_ros.sae.shards import read_activations
from pai_ros.sae.train import TrainSettings, batch_order, split_rows, train_sae

Row = tuple[str, str, str, str, str]
Codec = tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


@dataclass
class Run:
    codec: Codec  # raw-space encode (dense codes) and decode
    seconds: float  # optimisation loop only

    def rate(self, steps: int, batch: int) -> float:
        return steps * batch / self.seconds


def batches(n: int, batch: int, steps: int, seed: int) -> itertools.islice:
    """The batch order ``train_sae`` uses (the library's own), ``steps`` batches of it."""
    return itertools.islice(batch_order(n, batch, seed), steps)


def scale_of(x: torch.Tensor) -> float:
    """Raw * scale has mean squared norm d (what pai_ros and SAELens's default normalisation do)."""
    return math.sqrt(x.shape[1] / float((x ** 2).sum(dim=1).mean()))


# ------------------------------------------------------------------------------ trainers


def train_ours(data, s: TrainSettings) -> Run:
    result = train_sae(data, s, progress=False)
    sae = result.sae
    return Run((sae.encode, sae.decode), result.seconds)


def load_saelens():
    try:
        from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
        from sae_lens.saes.sae import TrainStepInput
    except Exception as exc:  # noqa: BLE001 (report exactly why, never fake the comparison)
        return None, f"sae-lens did not import: {type(exc).__name__}: {exc}"
    return (TopKTrainingSAE, TopKTrainingSAEConfig, TrainStepInput), ""


def train_saelens(mods, x: torch.Tensor, s: TrainSettings, d_sae: int) -> Run:
    sae_cls, cfg_cls, step_input = mods
    torch.manual_seed(s.seed)
    scale = scale_of(x)
    sae = sae_cls(cfg_cls(d_in=x.shape[1], d_sae=d_sae, k=s.k, dtype="float32", device=s.device))
    opt = torch.optim.Adam(sae.parameters(), lr=3e-4, betas=(0.9, 0.999))
    since_fired = torch.zeros(d_sae, device=s.device)
    start = time.perf_counter()
    for step, rows in enumerate(batches(len(x), s.batch_size, s.steps, s.seed)):
        xb = x[rows] * scale
        out = sae.training_forward_pass(step_input(sae_in=xb, coefficients={}, dead_neuron_mask=since_fired > 1000,
                                                   n_training_steps=step, is_logging_step=False))
        with torch.no_grad():
            since_fired += 1
            since_fired[out.feature_acts.bool().any(dim=0)] = 0
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
    seconds = time.perf_counter() - start
    sae.eval()
    return Run((lambda v: sae.encode(v * scale), lambda f: sae.decode(f) / scale), seconds)


def load_sparsify():
    try:
        from schedulefree import ScheduleFreeWrapper
        from sparsify import SparseCoder, SparseCoderConfig
        from sparsify.sign_sgd import SignSGD
    except Exception as exc:  # noqa: BLE001
        return None, f"eai-sparsify did not import: {type(exc).__name__}: {exc}"
    return (SparseCoder, SparseCoderConfig, SignSGD, ScheduleFreeWrapper), ""


def train_sparsify(mods, x: torch.Tensor, s: TrainSettings, d_sae: int) -> Run:
    coder_cls, cfg_cls, sign_sgd, schedule_free = mods
    torch.manual_seed(s.seed)
    scale = scale_of(x)
    sae = coder_cls(x.shape[1], cfg_cls(num_latents=d_sae, k=s.k), device=s.device)
    opt = schedule_free(sign_sgd([{"params": sae.parameters(), "lr": 5e-3 / (d_sae / 2 ** 14) ** 0.5}]), momentum=0.95)
    opt.train()
    start = time.perf_counter()
    for step, rows in enumerate(batches(len(x), s.batch_size, s.steps, s.seed)):
        xb = x[rows] * scale
        if step == 0:
            sae.b_dec.data = xb.mean(dim=0)
        sae.set_decoder_norm_to_unit_norm()
        out = sae(xb)
        out.fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
    seconds = time.perf_counter() - start
    opt.eval()  # schedule-free: evaluate at the averaged weights, as its checkpoints are saved
    sae.set_decoder_norm_to_unit_norm()

    def encode(v: torch.Tensor) -> torch.Tensor:
        enc = sae.encode(v * scale)
        return torch.zeros(len(v), d_sae, device=v.device).scatter_(1, enc.top_indices, enc.top_acts)

    def decode(codes: torch.Tensor) -> torch.Tensor:
        return (codes @ sae.W_dec + sae.b_dec) / scale

    return Run((encode, decode), seconds)


def load_dictionary_learning():
    from bench_sae import load_dictionary_learning as load

    return load()


def train_dictionary_learning(top_k, x: torch.Tensor, s: TrainSettings, d_sae: int) -> Run:
    from bench_sae import train_theirs, warmup_steps

    ae, seconds, _ = train_theirs(top_k, x, s, d_sae, warmup_steps(s.steps))
    norm = ae.pai_norm_factor
    return Run((lambda v: ae.encode(v / norm), lambda f: ae.decode(f) * norm), seconds)


def heldout_fvu_l0(codec: Codec, x: torch.Tensor) -> tuple[float, float]:
    """Held-out FVU (raw space) and mean L0 of an (encode, decode) pair: bench_sae's own measure."""
    from bench_sae import heldout_fvu_l0 as measure

    return measure(*codec, x)


# ------------------------------------------------------------------------------ main


def compare_peers(activations: Path, *, steps: int = 2000, short_steps: int = 100, rounds: int = 3, k: int = 32,
                  expansion: int = 8, batch_size: int = 1024, device: str = "cpu",
                  only: list[str] | None = None) -> tuple[str, list[Row], dict]:
    """(table title, rows, figures) of pai_ros against every peer that imports."""
    data = read_activations(activations)
    full = TrainSettings(k=k, expansion=expansion, steps=steps, batch_size=batch_size, device=device)
    short = TrainSettings(k=k, expansion=expansion, steps=short_steps, batch_size=batch_size, device=device)
    split = split_rows(data, full.holdout, full.seed)
    x_train = data.activations[split.train].to(device)
    x_held = data.activations[split.heldout].to(device)
    d_sae = full.d_sae(data.d)

    peers: dict[str, tuple[Callable, object]] = {}
    skipped: dict[str, str] = {}
    for name, load, train in (("saelens", load_saelens, train_saelens), ("sparsify", load_sparsify, train_sparsify),
                              ("dictionary_learning", load_dictionary_learning, train_dictionary_learning)):
        if only is not None and name not in only:
            continue
        mods, why = load()
        if mods is None:
            skipped[name] = why
            print(f"skipping {name}: {why}")
        else:
            peers[name] = (train, mods)

    def run(name: str, s: TrainSettings) -> Run:
        if name == "pai_ros":
            return train_ours(data, s)
        train, mods = peers[name]
        return train(mods, x_train, s, d_sae)

    # Every trainer under the allocator setting our CPU training makes (process-wide) from the
    # first run on: without it each trainer's step tensors are faulted in afresh (2026-12-03).
    if torch.device(device).type == "cpu":
        keep_step_tensors_on_heap()
    names = ["pai_ros", *peers]
    for name in names:  # warm-up: first-call costs (allocator, kernels) out of the timed rounds
        run(name, TrainSettings(k=k, expansion=expansion, steps=5, batch_size=batch_size, device=device))
    rates: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate who goes first
            rates[name].append(run(name, short).rate(short.steps, short.batch_size))
    quality = {name: heldout_fvu_l0(run(name, full).codec, x_held) for name in names}
    # Time to equal quality: our shorter runs (each with its own learning-rate decay, as
    # `pai sae train --steps S` runs) against each peer's full run.
    rungs = [steps // 2 ** i for i in range(1, 5) if steps // 2 ** i >= 50]
    ours_at = {steps: quality["pai_ros"][0]}
    for n in rungs:
        ours_at[n] = heldout_fvu_l0(run("pai_ros", TrainSettings(k=k, expansion=expansion, steps=n,
                                                                 batch_size=batch_size, device=device)).codec,
                                    x_held)[0]

    title = (f"SAE training against peers: {len(x_train):,} ACT tokens (d {data.d}) for training, {len(x_held):,} "
             f"held out; TopK F {d_sae}, k {k}, batch {batch_size}; tokens/s of {short_steps}-step runs, "
             f"{rounds} interleaved rounds (median); FVU after {steps} steps")
    ours_rate = statistics.median(rates["pai_ros"])
    fo, lo = quality["pai_ros"]
    rows: list[Row] = [("pai_ros tokens/s | held-out FVU | L0", f"{ours_rate:,.0f} | {fo:.4f} | {lo:.1f}", "-", "-",
                        "-")]
    for name in peers:
        pr = statistics.median(rates[name])
        fp, lp = quality[name]
        rows.append((f"vs {name}: tokens/s (ours / theirs)", f"{ours_rate:,.0f}", f"{pr:,.0f}",
                     f"{ours_rate / pr:.2f}x", ">= 1.0x"))
        rows.append((f"vs {name}: held-out FVU at L0 {lo:.1f} / {lp:.1f}", f"{fo:.4f}", f"{fp:.4f}",
                     f"{fo / fp:.2f}x", "<= 1.0x"))
        enough = [n for n, f in ours_at.items() if f <= fp]
        if enough:
            need = min(enough)
            ours_s, theirs_s = need * batch_size / ours_rate, steps * batch_size / pr
            rows.append((f"vs {name}: time to its {steps}-step FVU (our steps {need} / {steps})",
                         f"{ours_s:.1f} s", f"{theirs_s:.1f} s", f"{theirs_s / ours_s:.2f}x", "-"))
        else:
            rows.append((f"vs {name}: time to its {steps}-step FVU", f"not reached in {steps} steps", "-", "-", "-"))
    for name, why in skipped.items():
        rows.append((f"vs {name}", "not run", why[:80], "-", "-"))
    figures = {"machine": machine(), "rates": rates, "quality": quality, "skipped": skipped, "steps": steps,
               "short_steps": short_steps, "rounds": rounds, "d_sae": d_sae, "k": k, "train_tokens": len(x_train),
               "ours_fvu_by_steps": ours_at}
    return title, rows, figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--activations", type=Path, required=True, help="a `pai sae collect` directory")
    ap.add_argument("--steps", type=int, default=2000, help="steps of the full runs (FVU)")
    ap.add_argument("--short-steps", type=int, default=100, help="steps of the throughput runs")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved throughput rounds")
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--expansion", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", nargs="*", help="peers to run (saelens sparsify dictionary_learning)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    title, rows, figures = compare_peers(args.activations, steps=args.steps, short_steps=args.short_steps,
                                         rounds=args.rounds, k=args.k, expansion=args.expansion,
                                         batch_size=args.batch_size, device=args.device, only=args.only)
    print_table(title, rows)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
