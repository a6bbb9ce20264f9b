"""SAE training on a GPU: streamed shards vs the in-memory path, tokens/s (``--device cuda``).

Synthetic tokens of the default LeRobot ACT's width (dim_model 512; sparse codes over a random
dictionary) are written in ``pai sae collect``'s shard format (float16), then a TopK SAE 512 ->
4096, k 32, batch 4096 is trained on them through ``train_sae_streaming`` (what ``pai sae train``
runs) and through the in-memory ``train_sae``, interleaved. Prints one table and, with ``--json``,
the figures. Several GPUs: run ``pai sae train`` under ``torchrun --nproc-per-node N`` instead
(NCCL, one GPU per rank); this script measures one.

Not run in the session that wrote it (no GPU was lent); the same code paths run on CPU in
test/test_sae_scale.py.

Usage: python bench/gpu/sae_train.py [--device cuda] [--tokens 2000000] [--steps 500] [--json PATH]
       [--shards DIR]  (write the shards there, or reuse them: device_check.sh then trains on them
                        with `pai sae train` itself)
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pai_ros.sae.activations import COLLECT_FILE, EpisodeShardWriter  # noqa: E402
from pai_ros.sae.shards import open_shards, read_activations  # noqa: E402
from pai_ros.sae.train import TrainSettings, train_sae  # noqa: E402
from pai_ros.sae.train_stream import train_sae_streaming  # noqa: E402

TOKENS_PER_FRAME = 602  # two 480x640 cameras: 2 x 15 x 20 cells + latent + state


def write_shards(out: Path, tokens: int, d: int, episodes: int = 20) -> None:
    gen = torch.Generator().manual_seed(0)
    atoms = torch.randn(8 * d, d, generator=gen)
    atoms /= atoms.norm(dim=1, keepdim=True)
    if out.exists():  # a run cut short left no collect file: start again, but only over its own files
        strays = [p.name for p in out.iterdir() if not p.name.lstrip(".").startswith("episode_")]
        if strays:
            sys.exit(f"sae_train: {out} holds files this script did not write ({', '.join(sorted(strays)[:3])}); "
                     "give --shards a new or an earlier --shards directory")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    meta = {"token_index": np.arange(TOKENS_PER_FRAME, dtype=np.int32),
            "token_kind": np.full(TOKENS_PER_FRAME, 3, dtype=np.int8),
            "camera_index": np.zeros(TOKENS_PER_FRAME, dtype=np.int16),
            "row": np.zeros(TOKENS_PER_FRAME, dtype=np.int16), "col": np.zeros(TOKENS_PER_FRAME, dtype=np.int16)}
    frames = max(1, tokens // TOKENS_PER_FRAME // episodes)
    for e in range(episodes):
        writer = EpisodeShardWriter(out, e, 262_144, torch.float16)
        for f in range(frames):
            idx = torch.randint(0, len(atoms), (TOKENS_PER_FRAME, 32), generator=gen)
            writer.add((torch.rand(TOKENS_PER_FRAME, 32, 1, generator=gen) * atoms[idx]).sum(1), f, meta)
        writer.finish(frames)
    # Written last, so that its presence means a whole collection (--shards reuses only those).
    (out / COLLECT_FILE).write_text(json.dumps({"d": d, "source": {"policy_path": "synthetic"}, "settings": {},
                                                "layout": {"cameras": []}}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tokens", type=int, default=2_000_000)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--shards", type=Path, help="keep the synthetic shards in DIR (reused when complete)")
    args = ap.parse_args()
    settings = TrainSettings(steps=args.steps, batch_size=4096, k=32, expansion=8, device=args.device)
    rates: dict[str, list[float]] = {"streamed": [], "in memory": []}
    fvu: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        acts = args.shards or Path(tmp) / "acts"
        if not (acts / COLLECT_FILE).is_file():
            write_shards(acts, args.tokens, 512)
        shards = open_shards(acts)
        data = read_activations(acts)
        for r in range(args.rounds):
            for name in (("streamed", "in memory") if r % 2 == 0 else ("in memory", "streamed")):
                if name == "streamed":
                    m = train_sae_streaming(shards, settings, buffer_tokens=262_144, progress=False).metrics
                else:
                    m = train_sae(data, settings, progress=False).metrics
                rates[name].append(m["tokens_per_second"])
                fvu[name] = m["fvu"]
    on_cuda = args.device.startswith("cuda")
    gpu = torch.cuda.get_device_name() if on_cuda else (platform.processor() or platform.machine())
    print(f"{gpu}, torch {torch.__version__}, {shards.rows:,} tokens of width 512 (float16 shards)")
    print("| path | tokens/s (median) | held-out FVU |\n|---|---|---|")
    for name, values in rates.items():
        print(f"| {name} | {statistics.median(values):,.0f} | {fvu[name]:.4f} |")
    ratio = statistics.median(a / b for a, b in zip(rates["streamed"], rates["in memory"]))
    print(f"streamed / in memory: {ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"device": gpu, "rates": rates, "fvu": fvu, "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
