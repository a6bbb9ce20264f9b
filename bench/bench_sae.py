"""SAE figures: per-tick encode cost, the demo policy's SAE, training against dictionary_learning, recovery.

1. Per-tick cost of encoding one frame's encoder tokens with an SAE (``encode_frame``, what the
   live policy node runs every tick) relative to the core tick (``PolicyRunner.step`` with
   encoder-output capture): default LeRobot ACT (ResNet-18, dim_model 512, random weights), two
   480x640 cameras -> 602 tokens; a TopK SAE 512 -> 4096 (expansion 8), k 32, random weights.
   Interleaved rounds, median [min-max].
2. ``pai sae train`` defaults (TopK, expansion 8, k 32, 3000 steps, batch 1024) on the demo
   policy's encoder tokens (``pai sae collect`` over the 40 training episodes; collected here
   if missing): held-out FVU, L0, dead fraction, action recovered.
3. The same training against dictionary_learning 0.1.0's ``TopKTrainer`` (optional: ``make
   bench-deps`` installs it) on the same rows, dictionary size, k, steps, batch size, learning
   rate and batch order: tokens/s (short interleaved runs, then the full runs) and held-out
   FVU / L0, both computed here the same way (raw space, each model's own encode/decode).
   Driven as their ``trainSAE(normalize_activations=True)`` does: inputs divided by one scalar
   so the mean squared norm is 1 (ours scales it to d_in; FVU does not depend on the scale).
   What differs and is left at their defaults: unnormalised squared-error loss (ours divides by
   the batch variance), 1000 warm-up steps (ours none; both decay linearly over the last 20%,
   set to match), gradient-norm clipping at 1, decoder bias initialised at the geometric median
   of the first batch (ours: mean of the training rows), and AuxK only for latents dead for
   10M tokens, which a 3000 x 1024-token run never reaches (ours: 100k tokens).
4. Ground-truth recovery on synthetic data (known unit-norm dictionary d=32, F=128, 4 active
   features per sample, noise-free): mean over true atoms of the best cosine similarity with a
   learned decoder row.

5. The same training against SAELens and EleutherAI's sparsify (``bench/sae_peers.py``, optional:
   they live in their own venv, ``bench/install_peer_deps.sh``): tokens/s and held-out FVU at
   equal L0, interleaved rounds.

Needs the demo assets (`pai demo-assets`; built if missing, which trains the demo policy). The
demo activations are collected once into the cache (a few minutes) and reused.

Usage: python bench/bench_sae.py [--quick] [--skip-compare] [--activations DIR] [--rounds 20]
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import fmt_ms, interleaved, machine, print_table, summary_ms  # noqa: E402
from setups import default_act_checkpoint, random_observation, random_topk_sae  # noqa: E402

from pai_ros.demo.assets import ensure_demo_assets  # noqa: E402
from pai_ros.demo.stage_cache import default_cache_dir  # noqa: E402
from pai_ros.policy.capture import CaptureConfig  # noqa: E402
from pai_ros.policy.loading import load_act_policy  # noqa: E402
from pai_ros.policy.runner import PolicyRunner  # noqa: E402
from pai_ros.sae.activations import ActivationSet, complete_episodes  # noqa: E402
from pai_ros.sae.frame import encode_frame  # noqa: E402
from pai_ros.sae.heap import keep_step_tensors_on_heap  # noqa: E402
from pai_ros.sae.metrics import reconstruction_metrics  # noqa: E402
from pai_ros.sae.model import load_sae  # noqa: E402
from pai_ros.sae.shards import read_activations  # noqa: E402
from pai_ros.sae.train import TrainSettings, batch_order, split_rows, train_sae  # noqa: E402
from pai_ros.sae.train_output import run_training  # noqa: E402

DL_VERSION = "0.1.0"
Row = tuple[str, str, str, str, str]


def fmt_rate(samples: list[float]) -> str:
    return f"{statistics.median(samples):,.0f} [{min(samples):,.0f}-{max(samples):,.0f}]"


# ------------------------------------------------------------------ 1. per-tick encode cost


def encode_cost(rounds: int, device: str) -> tuple[list[Row], dict]:
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_act_policy(default_act_checkpoint(Path(tmp) / "act"), device)
    runner = PolicyRunner(loaded, "replan", CaptureConfig(encoder_output=True))
    sae = random_topk_sae(512, 4096, 32).to(device)
    obs = random_observation()
    last: dict[str, object] = {}

    def tick() -> None:
        last["res"] = runner.step(obs)

    def encode() -> None:
        encode_frame(sae, last["res"].capture.encoder_output[0])

    for _ in range(2):  # warm-up
        tick()
        encode()
    tokens = int(last["res"].capture.encoder_output.shape[1])
    times = interleaved({"tick": tick, "encode": encode}, rounds)
    t, e = summary_ms(times["tick"]), summary_ms(times["encode"])
    runner.close()
    row = (f"encode_frame ({tokens} tokens, SAE 512->4096, k 32) vs core tick (runner.step + capture)",
           fmt_ms(e), fmt_ms(t), f"{e[0] / t[0]:.1%}", "<= 5%")
    return [row], {"tokens": tokens, "tick_ms": t, "encode_ms": e, "ratio": e[0] / t[0], "rounds": rounds}


# ------------------------------------------------------------------ 2. demo policy's SAE


def demo_activations(path: Path | None) -> Path:
    """A complete `pai sae collect` directory of the demo policy over its training dataset."""
    if path is not None and path.is_dir() and complete_episodes(path):
        return path
    assets = ensure_demo_assets(progress=False)
    out = path or default_cache_dir() / "bench" / f"sae_demo_acts-{assets.settings.key()}"
    start = time.perf_counter()
    # Resumable: episodes already complete are skipped, so this is cheap once collected.
    subprocess.run([sys.executable, "-m", "pai_ros.cli", "sae", "collect", "--policy-path", str(assets.policy_dir),
                    "--dataset-root", str(assets.dataset_root), "--output", str(out), "--device", "cpu",
                    "--quiet"], check=True)
    print(f"(demo activations in {out}, {time.perf_counter() - start:.0f} s)")
    return out


def demo_sae(acts: Path, steps: int, device: str) -> tuple[list[Row], dict, Path, tempfile.TemporaryDirectory]:
    tmp = tempfile.TemporaryDirectory()
    settings = TrainSettings(steps=steps, device=device)
    start = time.perf_counter()
    out, m = run_training(acts, Path(tmp.name) / "sae", settings, eval_frames=64, progress=False)
    wall = time.perf_counter() - start
    rec = m.get("action_recovered")
    rows = [
        (f"held-out FVU ({m['heldout_tokens']} tokens, {len(m['heldout_episodes'])} held-out episodes)",
         f"{m['fvu']:.4f}", "-", "-", "<= 0.2"),
        ("held-out L0", f"{m['l0']:.1f}", "-", "-", "<= 32"),
        (f"dead fraction (no firing in the last {m['dead_window_tokens']:,} training tokens)",
         f"{m['dead_fraction']:.1%}", "-", "-", "<= 5%"),
        (f"action recovered ({m.get('frames', 0)} held-out frames spliced)",
         f"{rec:.4f}" if rec is not None else str(m.get("action_recovery_note")), "-", "-", "-"),
        (f"training ({steps} steps x 1024 tokens) / whole `pai sae train`",
         f"{m['train_seconds']:.0f} s / {wall:.0f} s", "-", "-", "-"),
    ]
    keep = {k: m[k] for k in ("fvu", "l0", "dead_fraction", "dead_fraction_heldout", "action_recovered",
                              "train_seconds", "tokens_per_second", "heldout_tokens", "train_tokens") if k in m}
    keep["wall_seconds"] = wall
    return rows, keep, out, tmp


# ------------------------------------------------------------------ 3. dictionary_learning


def dictionary_learning_dir() -> Path:
    return default_cache_dir() / "bench-deps" / f"dictionary_learning-{DL_VERSION}"


def load_dictionary_learning() -> tuple[types.ModuleType | None, str]:
    """dictionary_learning's ``trainers.top_k`` module, or None and why not.

    Its package ``__init__`` imports ``buffer`` (needs nnsight) and ``trainers/__init__`` imports
    every trainer; bare package modules whose ``__path__`` points at the installed folders let
    ``trainers.top_k`` (torch, einops, ``dictionary``, ``config``, ``trainers.trainer``) load alone.
    """
    root = dictionary_learning_dir()
    pkg = root / "dictionary_learning"
    if not (pkg / "trainers" / "top_k.py").is_file():
        return None, f"dictionary_learning {DL_VERSION} is not installed ({root}): `make bench-deps` installs it"
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    for name, folder in (("dictionary_learning", pkg), ("dictionary_learning.trainers", pkg / "trainers")):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [str(folder)]
            module.__package__ = name
            sys.modules[name] = module
    try:
        return importlib.import_module("dictionary_learning.trainers.top_k"), ""
    except Exception as exc:  # report exactly why, do not fake the comparison
        return None, f"dictionary_learning's trainers.top_k did not import: {type(exc).__name__}: {exc}"


def train_theirs(top_k: types.ModuleType, x_train: torch.Tensor, settings: TrainSettings, d_sae: int,
                 warmup: int) -> tuple[torch.nn.Module, float, float]:
    """Drive TopKTrainer.update as their trainSAE does (normalize_activations=True: unit mean squared norm)."""
    norm = math.sqrt(float((x_train ** 2).sum(dim=1).mean()))
    trainer = top_k.TopKTrainer(
        steps=settings.steps, activation_dim=x_train.shape[1], dict_size=d_sae, k=settings.k, layer=0,
        lm_name="pai_ros ACT encoder output", lr=settings.learning_rate, warmup_steps=warmup,
        decay_start=int(settings.steps * 0.8), seed=settings.seed, device=settings.device)
    x_train = x_train.to(settings.device)
    start = time.perf_counter()
    for step, rows in enumerate(itertools.islice(batch_order(len(x_train), settings.batch_size, settings.seed),
                                                  settings.steps)):
        trainer.update(step, x_train[rows] / norm)
    seconds = time.perf_counter() - start
    ae = trainer.ae.eval().requires_grad_(False)
    ae.pai_norm_factor = norm
    return ae, seconds, settings.steps * settings.batch_size / seconds


@torch.no_grad()
def heldout_fvu_l0(encode: Callable[[torch.Tensor], torch.Tensor], decode: Callable[[torch.Tensor], torch.Tensor],
                   x: torch.Tensor, batch: int = 8192) -> tuple[float, float]:
    """FVU as reconstruction_metrics defines it (squared error over squared deviation from the
    held-out mean, raw space) and mean L0, for any encode/decode pair."""
    mean = x.mean(dim=0)
    err = dev = l0 = 0.0
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        codes = encode(xb)
        err += float(((xb - decode(codes)) ** 2).sum())
        dev += float(((xb - mean) ** 2).sum())
        l0 += float((codes > 0).sum())
    return err / dev, l0 / len(x)


def warmup_steps(steps: int) -> int:
    """Their default warm-up (1000 steps), shortened for short runs (it must be < decay start)."""
    return min(1000, int(steps * 0.8) - 1)


def compare(acts: Path, ours_dir: Path, ours_m: dict, steps: int, rounds: int, short_steps: int,
            device: str) -> tuple[list[Row], dict]:
    top_k, why = load_dictionary_learning()
    if top_k is None:
        print(f"\nskipping the dictionary_learning comparison: {why}")
        return [("training vs dictionary_learning TopKTrainer", "not run (see above)", "-", "-", ">= 1.0x")], \
            {"skipped": why}
    data = read_activations(acts)
    settings = TrainSettings(steps=steps, device=device)
    split = split_rows(data, settings.holdout, settings.seed)
    x_train = data.activations[split.train]
    x_held = data.activations[split.heldout].to(device)
    d_sae = settings.d_sae(data.d)

    # Every trainer under the allocator setting our CPU training makes (process-wide) from the
    # first run on: without it each trainer's step tensors are faulted in afresh (2026-12-03).
    if torch.device(device).type == "cpu":
        keep_step_tensors_on_heap()
    # Throughput: short runs of both, interleaved rounds (the same work for each round).
    short = TrainSettings(steps=short_steps, device=device)
    rates: dict[str, list[float]] = {"ours": [], "theirs": []}
    train_theirs(top_k, x_train, TrainSettings(steps=20, device=device), d_sae, warmup_steps(20))  # warm-up
    for _ in range(rounds):
        rates["ours"].append(train_sae(data, short, progress=False).tokens_per_second)
        rates["theirs"].append(train_theirs(top_k, x_train, short, d_sae, warmup_steps(short_steps))[2])

    # Full runs: ours is figure 2's run (same settings, same rows); theirs now.
    ae, secs, rate = train_theirs(top_k, x_train, settings, d_sae, warmup_steps(steps))
    norm = ae.pai_norm_factor
    theirs_fvu, theirs_l0 = heldout_fvu_l0(lambda x: ae.encode(x / norm), lambda f: ae.decode(f) * norm, x_held)
    sae = load_sae(ours_dir, device).sae
    ours_fvu, ours_l0 = heldout_fvu_l0(sae.encode, sae.decode, x_held)
    check = reconstruction_metrics(sae, x_held)["fvu"]
    if not math.isclose(ours_fvu, check, rel_tol=1e-4, abs_tol=1e-7):
        raise RuntimeError(f"FVU helper disagrees with reconstruction_metrics: {ours_fvu} vs {check}")

    ro, rt = statistics.median(rates["ours"]), statistics.median(rates["theirs"])
    full_o = ours_m["tokens_per_second"]
    rows = [
        (f"training tokens/s, {short_steps}-step runs, {rounds} interleaved rounds (ours / dictionary_learning)",
         fmt_rate(rates["ours"]), fmt_rate(rates["theirs"]), f"{ro / rt:.2f}x", ">= 1.0x"),
        # Run minutes apart: machine load differs, so no ratio (the interleaved rounds above give it).
        (f"training tokens/s, the full {steps}-step runs (sequential, not comparable)", f"{full_o:,.0f}",
         f"{rate:,.0f}", "-", "-"),
        (f"held-out FVU after {steps} steps (same rows, same formula)", f"{ours_fvu:.4f}", f"{theirs_fvu:.4f}",
         f"{ours_fvu / theirs_fvu:.2f}x", "-"),
        ("held-out L0", f"{ours_l0:.1f}", f"{theirs_l0:.1f}", "-", "-"),
    ]
    return rows, {"rates_short": rates, "short_steps": short_steps, "rounds": rounds,
                  "full_tokens_per_second": {"ours": full_o, "theirs": rate},
                  "theirs_train_seconds": secs, "fvu": {"ours": ours_fvu, "theirs": theirs_fvu},
                  "l0": {"ours": ours_l0, "theirs": theirs_l0}, "their_warmup_steps": warmup_steps(steps),
                  "their_norm_factor": norm}


# ------------------------------------------------------------------ 4. synthetic recovery


def recovery(steps: int, device: str) -> tuple[list[Row], dict]:
    d, n_features, active, n = 32, 128, 4, 50_000
    gen = torch.Generator().manual_seed(0)
    true = torch.randn(n_features, d, generator=gen)
    true /= true.norm(dim=1, keepdim=True)
    which = torch.rand(n, n_features, generator=gen).argsort(dim=1)[:, :active]
    magnitude = 0.5 + torch.rand(n, active, generator=gen)  # in [0.5, 1.5)
    x = torch.zeros(n, n_features).scatter_(1, which, magnitude) @ true
    settings = TrainSettings(k=active, num_features=n_features, steps=steps, batch_size=512, device=device)
    result = train_sae(ActivationSet(x), settings, progress=False)
    learned = result.sae.W_dec.detach().cpu()
    learned = learned / learned.norm(dim=1, keepdim=True).clamp_min(1e-12)
    best = (true @ learned.t()).max(dim=1).values
    mmcs = float(best.mean())
    label = (f"synthetic ground truth (d {d}, F {n_features}, {active} active, noise-free): mean max cosine, "
             f"TopK k {active}, {steps} steps x 512")
    rows = [(label, f"{mmcs:.3f}", "-", "-", "-"),
            ("  true atoms recovered with cosine > 0.9 / held-out FVU",
             f"{float((best > 0.9).float().mean()):.1%} / {result.metrics['fvu']:.4f}", "-", "-", "-")]
    return rows, {"mean_max_cosine": mmcs, "recovered_0.9": float((best > 0.9).float().mean()),
                  "fvu": result.metrics["fvu"], "steps": steps}


# ------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="shorter run: 6 tick rounds, 600 training steps, 2 x 100-step throughput rounds")
    ap.add_argument("--skip-compare", action="store_true", help="skip the dictionary_learning comparison")
    ap.add_argument("--activations", type=Path,
                    help="a `pai sae collect` directory of the demo policy (default: collected into the cache)")
    ap.add_argument("--rounds", type=int, help="interleaved tick rounds (default 20, 6 with --quick)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    rounds = args.rounds or (6 if args.quick else 20)
    steps = 600 if args.quick else 3000
    start = time.perf_counter()
    results: dict = {"machine": machine(), "device": args.device, "quick": args.quick}

    seconds: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        seconds[name] = round(time.perf_counter() - mark, 1)
        mark = time.perf_counter()

    rows, results["encode_cost"] = encode_cost(rounds, args.device)
    lap("encode_cost")
    print_table(f"SAE per-tick cost: default ACT, 2 x 480x640, {args.device}, {rounds} interleaved rounds, "
                f"median [min-max]; {machine()}", rows)

    acts = demo_activations(args.activations)
    lap("demo_activations")
    rows, results["demo_sae"], ours_dir, tmp = demo_sae(acts, steps, args.device)
    lap("demo_sae")
    try:
        print_table(f"SAE on the demo policy's encoder tokens ({acts}): `pai sae train` defaults"
                    f"{'' if steps == 3000 else f', {steps} steps (--quick)'}", rows)
        if args.skip_compare:
            results["compare"] = {"skipped": "--skip-compare"}
        else:
            rows, results["compare"] = compare(acts, ours_dir, results["demo_sae"], steps,
                                               2 if args.quick else 5, 100 if args.quick else 200, args.device)
            print_table(f"Training vs dictionary_learning {DL_VERSION} TopKTrainer: TopK, expansion 8, k 32, "
                        f"batch 1024, lr 1e-3, same rows and batch order", rows)
            lap("compare")
    finally:
        tmp.cleanup()

    # 5. SAELens and sparsify (optional: their own venv, bench/install_peer_deps.sh): skipped with
    # the reason when neither imports here.
    if args.skip_compare:
        results["peers"] = {"skipped": "--skip-compare"}
    else:
        from sae_peers import compare_peers, load_saelens, load_sparsify

        why = [w for _, w in (load_saelens(), load_sparsify()) if w]
        if len(why) == 2:
            print(f"\nskipping the SAELens / sparsify comparison: {'; '.join(why)} (bench/install_peer_deps.sh)")
            results["peers"] = {"skipped": why}
        else:
            title, rows, results["peers"] = compare_peers(acts, steps=steps, short_steps=100 if args.quick else 200,
                                                          rounds=2 if args.quick else 3, device=args.device)
            print_table(title, rows)
            lap("peers")

    rows, results["recovery"] = recovery(2000, args.device)
    print_table("Dictionary recovery on synthetic data", rows)
    lap("recovery")
    results["seconds"] = time.perf_counter() - start
    results["seconds_per_part"] = seconds
    print(f"\nbench_sae: {results['seconds']:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in seconds.items())})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
