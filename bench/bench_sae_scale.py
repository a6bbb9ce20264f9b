"""SAE training at scale: peak memory against collection size, throughput, storage precision.

1. Peak resident memory (``ru_maxrss`` of a fresh training process) of ``pai sae train``
   (streamed shards, shuffle buffer 65,536 tokens) and of the previous in-memory path
   (``read_activations`` + ``train_sae``: the whole collection as float32, then the training
   rows copied out) on collections of 1x, 4x and 16x the demo's size. The 1x collection is the
   demo policy's ``pai sae collect`` output when it is in the cache (bench_sae.py collects it),
   else synthetic tokens of the same count and width (sparse codes over a random dictionary);
   4x and 16x replicate it with new episode numbers, in collect's own shard format (float16,
   the default). Target: streamed peak at 16x / at 1x <= 1.2.
2. Training tokens/s streamed vs in memory on the 16x collection (the rate of the training
   loop; the in-memory path's loading time is not counted against it), interleaved rounds.
3. Held-out FVU of the same training (same seed, same batch order: the collection fits the
   buffer) on float32, float16 and bfloat16 storage of the same 1x tokens.

Usage: python bench/bench_sae_scale.py [--quick] [--steps 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, print_table  # noqa: E402

from pai_ros.demo.stage_cache import default_cache_dir  # noqa: E402
from pai_ros.sae.activations import COLLECT_FILE, EpisodeShardWriter, complete_episodes  # noqa: E402

Row = tuple[str, str, str, str, str]
DEMO_TOKENS, DEMO_D, TOKENS_PER_FRAME = 67_200, 128, 12  # the demo ACT's collection: ~67k tokens, dim_model 128
SEP = "BENCH_RESULT "


# ----------------------------------------------------------------------------- collections


def demo_collection() -> Path | None:
    """The demo policy's collection, if bench_sae.py has collected it into the cache."""
    for path in sorted((default_cache_dir() / "bench").glob("sae_demo_acts-*")):
        if (path / COLLECT_FILE).is_file() and complete_episodes(path):
            return path
    return None


def synthetic_collection(out: Path, tokens: int = DEMO_TOKENS, d: int = DEMO_D, episodes: int = 40) -> Path:
    """Tokens with a sparse structure an SAE can learn, written by collect's own shard writer."""
    gen = torch.Generator().manual_seed(0)
    atoms = torch.randn(8 * d, d, generator=gen)
    atoms /= atoms.norm(dim=1, keepdim=True)
    out.mkdir(parents=True)
    (out / COLLECT_FILE).write_text(json.dumps({"d": d, "source": {"policy_path": "synthetic"}, "settings": {},
                                                "layout": {"cameras": []}, "synthetic": True}))
    meta = {"token_index": np.arange(TOKENS_PER_FRAME, dtype=np.int32),
            "token_kind": np.full(TOKENS_PER_FRAME, 3, dtype=np.int8),
            "camera_index": np.zeros(TOKENS_PER_FRAME, dtype=np.int16),
            "row": np.zeros(TOKENS_PER_FRAME, dtype=np.int16), "col": np.zeros(TOKENS_PER_FRAME, dtype=np.int16)}
    frames = tokens // TOKENS_PER_FRAME // episodes
    for e in range(episodes):
        writer = EpisodeShardWriter(out, e, 262_144, torch.float32)
        for f in range(frames):
            idx = torch.randint(0, len(atoms), (TOKENS_PER_FRAME, 16), generator=gen)
            x = (torch.rand(TOKENS_PER_FRAME, 16, generator=gen)[..., None] * atoms[idx]).sum(1)
            writer.add(x, f, meta)
        writer.finish(frames)
    return out


def replicate(base: Path, out: Path, times: int, dtype: str = "float16") -> Path:
    """``times`` copies of ``base``'s episodes (renumbered) in collect's format, stored as ``dtype``."""
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True)
    info = json.loads((base / COLLECT_FILE).read_text())
    info.setdefault("settings", {})["dtype"] = dtype
    (out / COLLECT_FILE).write_text(json.dumps(info))
    done = complete_episodes(base)
    stride = max(done) + 1
    for copy in range(times):
        for episode, manifest in sorted(done.items()):
            new = copy * stride + episode
            parts = []
            for i, part in enumerate(manifest["parts"]):
                tensors = load_file(str(base / part["file"]))
                tensors["activations"] = tensors["activations"].to(getattr(torch, dtype))
                tensors["episode_index"] = torch.full_like(tensors["episode_index"], new)
                name = f"episode_{new:06d}-part{i:04d}.safetensors"
                save_file(tensors, str(out / name), metadata={"producer": "pai_ros", "episode": str(new)})
                parts.append({"file": name, "rows": part["rows"]})
            (out / f"episode_{new:06d}.json").write_text(json.dumps({**manifest, "episode": new, "parts": parts}))
    return out


# ----------------------------------------------------------------------------- one measured run


def child(mode: str, acts: str, steps: int, out: str) -> None:
    """Runs in a fresh process: one training, then its own peak RSS (so runs do not share a peak)."""
    from pai_ros.sae.train import TrainSettings

    settings = TrainSettings(steps=steps, expansion=8, k=32, batch_size=1024)
    start = time.perf_counter()
    if mode == "stream":
        from pai_ros.sae.train_output import run_training

        _, m = run_training(Path(acts), Path(out), settings, eval_frames=0, progress=False)
    else:
        from pai_ros.sae.shards import read_activations
        from pai_ros.sae.train import train_sae

        m = train_sae(read_activations(acts), settings, progress=False).metrics
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(SEP + json.dumps({"peak_mb": peak_mb, "tokens_per_second": m["tokens_per_second"], "fvu": m["fvu"],
                            "train_tokens": m["train_tokens"], "wall_s": time.perf_counter() - start,
                            "streamed": m.get("streamed")}))


def measure(mode: str, acts: Path, steps: int, work: Path) -> dict:
    out = work / f"sae-{time.monotonic_ns()}"
    r = subprocess.run([sys.executable, __file__, "--child", mode, str(acts), str(steps), str(out)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{mode} training on {acts} failed:\n{r.stderr[-3000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(next(line for line in r.stdout.splitlines() if line.startswith(SEP))[len(SEP):])


# ----------------------------------------------------------------------------- figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer steps and rounds")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved throughput rounds (this host's noise is ~10%% a round)")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), args.child[3])
        return
    steps, rounds = (100, 1) if args.quick else (args.steps, args.rounds)
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench_sae_scale-") as tmp:
        work = Path(tmp)
        base = demo_collection()
        what = f"demo collection {base}" if base else "synthetic tokens (demo collection not in the cache)"
        base = base or synthetic_collection(work / "synthetic")
        sizes = {n: replicate(base, work / f"x{n}", n) for n in (1, 4, 16)}
        rows_total = {n: sum(m["rows"] for m in complete_episodes(p).values()) for n, p in sizes.items()}
        disk = {n: sum(f.stat().st_size for f in p.iterdir()) / 2**20 for n, p in sizes.items()}
        print(f"1x = {what}: {rows_total[1]:,} tokens")

        # 1. Peak RSS, each size once per mode (peaks hardly vary between runs).
        peak: dict[tuple[str, int], dict] = {}
        for n in sizes:
            for mode in ("stream", "memory"):
                peak[(mode, n)] = measure(mode, sizes[n], steps, work)
                print(f"  {mode} {n}x: {peak[(mode, n)]}")
        rows: list[Row] = []
        for n in sizes:
            s, m = peak[("stream", n)]["peak_mb"], peak[("memory", n)]["peak_mb"]
            rows.append((f"peak RSS, `pai sae train` on {n}x ({rows_total[n]:,} tokens, {disk[n]:.0f} MiB float16)",
                         f"{s:.0f} MiB", f"{m:.0f} MiB in memory", f"{s / m:.2f}x", "-"))
        ratio = peak[("stream", 16)]["peak_mb"] / peak[("stream", 1)]["peak_mb"]
        old_ratio = peak[("memory", 16)]["peak_mb"] / peak[("memory", 1)]["peak_mb"]
        rows.append(("peak RSS 16x / 1x, streamed (reference: in memory)", f"{ratio:.2f}", f"{old_ratio:.2f}", "-",
                     "<= 1.2"))

        # 2. Throughput on 16x: interleaved rounds of both paths.
        rates: dict[str, list[float]] = {"stream": [], "memory": []}
        for r in range(rounds):
            for mode in (("stream", "memory") if r % 2 == 0 else ("memory", "stream")):
                rates[mode].append(measure(mode, sizes[16], steps, work)["tokens_per_second"])
        ratios = [a / b for a, b in zip(rates["stream"], rates["memory"])]
        rows.append((f"training tokens/s on 16x ({steps} steps x 1024 tokens), streamed vs in memory",
                     f"{statistics.median(rates['stream']):,.0f}", f"{statistics.median(rates['memory']):,.0f}",
                     f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]", ">= 1.0x"))

        # 3. Storage precision: same tokens, same training, FVU on float32 / float16 / bfloat16 shards.
        # The float32 reference must be float32 tokens: the synthetic ones when the cached demo
        # collection was itself stored in a narrower type.
        exact = base if json.loads((base / COLLECT_FILE).read_text()).get("settings", {}).get("dtype", "float32") \
            == "float32" else synthetic_collection(work / "synthetic32")
        fvu = {dt: measure("stream", replicate(exact, work / f"p-{dt}", 1, dt), steps, work)["fvu"]
               for dt in ("float32", "float16", "bfloat16")}
        for dt in ("float16", "bfloat16"):
            rows.append((f"held-out FVU, {dt} storage vs float32 ({steps} steps, 1x)", f"{fvu[dt]:.4f}",
                         f"{fvu['float32']:.4f}", f"{fvu[dt] / fvu['float32']:.3f}x", "-"))
    print_table("SAE training at scale (bench_sae_scale.py)", rows)
    print(json.dumps({"peak": {f"{k[0]}_{k[1]}x": v for k, v in peak.items()}, "rates": rates, "fvu": fvu}))


if __name__ == "__main__":
    main()
