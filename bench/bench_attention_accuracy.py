"""Do the maps point at what matters? Peak hit rate on the demo's held-out episodes.

The demo dataset records the target block's pixel position in each camera. For every
held-out frame and attribution method, the front camera's attention grid (as `pai attention`
writes it to attention.parquet) is compared with the token cell that contains the target:

* peak hit rate: fraction of frames whose highest-weight cell is the target's cell
  (chance = 1 / cells per camera);
* mass ratio: the target cell's share of the camera's mass divided by the uniform share
  (1.0 = no preference; 5.0 = five times more than a uniform map).

Needs the demo assets (`pai demo-assets`; built if missing, which trains the demo policy).
Usage: python bench/bench_attention_accuracy.py [--ig-steps 16] [--episodes 0 1 ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, print_table  # noqa: E402

from pai_ros.attention.attribution import QuerySelection  # noqa: E402
from pai_ros.policy.capture import CaptureConfig  # noqa: E402
from pai_ros.attention.integrated_gradients import IGConfig  # noqa: E402
from pai_ros.attention.offline import RenderOptions, analyse_episode  # noqa: E402
from pai_ros.data.episodes import iter_episode, read_info  # noqa: E402
from pai_ros.demo.assets import ensure_demo_assets  # noqa: E402
from pai_ros.demo.dataset import TARGET_KEYS  # noqa: E402
from pai_ros.policy.loading import load_act_policy  # noqa: E402
from pai_ros.policy.runner import PolicyRunner  # noqa: E402

# (method, queries, integrated-gradients baseline)
RUNS = [("cross_attention", "mean", None), ("cross_attention", "executed", None), ("rollout", "mean", None),
        ("rollout", "executed", None), ("integrated_gradients", "executed", "blur"),
        ("integrated_gradients", "executed", "black")]


def target_cells(root: Path, episode: int, camera: str, hw: tuple[int, int], grid: tuple[int, int]) -> dict[int, int | None]:
    """frame_index -> flat index of the cell holding the target (None when not visible)."""
    (h, w), (gh, gw) = hw, grid
    out = {}
    for frame in iter_episode(root, episode):
        u, v = frame.extras[TARGET_KEYS[camera]]
        if u < 0 or v < 0:
            out[frame.frame_index] = None
            continue
        r, c = min(int(v / h * gh), gh - 1), min(int(u / w * gw), gw - 1)
        out[frame.frame_index] = r * gw + c
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ig-steps", type=int, default=16)
    ap.add_argument("--episodes", type=int, nargs="*", default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    assets = ensure_demo_assets()
    root = assets.heldout_root
    info = read_info(root)
    episodes = args.episodes if args.episodes is not None else list(range(info["total_episodes"]))
    loaded = load_act_policy(assets.policy_dir, "cpu")
    runner = PolicyRunner(loaded, "auto", CaptureConfig(encoder_self_attention=True, encoder_output=False))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for method, queries, baseline in RUNS:
            hits: dict[str, list[bool]] = {"front": [], "wrist": []}
            ratios: dict[str, list[float]] = {"front": [], "wrist": []}
            cells = {}
            for ep in episodes:
                out = Path(tmp) / f"{method}-{queries}-{baseline}"
                analyse_episode(runner, root, ep, out, method=method, selection=QuerySelection.parse(queries),
                                ig=IGConfig(steps=args.ig_steps, baseline=baseline or "blur"),
                                render=RenderOptions(videos=False), progress=False)
                rows = pq.read_table(out / f"episode_{ep:06d}" / "attention.parquet").to_pylist()
                for cam in ("front", "wrist"):
                    cam_rows = [r for r in rows if r["camera"] == cam]
                    hw = tuple(info["features"][f"observation.images.{cam}"]["shape"][:2])
                    targets = target_cells(root, ep, cam, hw, (cam_rows[0]["grid_h"], cam_rows[0]["grid_w"]))
                    for r in cam_rows:
                        t = targets[r["frame_index"]]
                        if t is None:
                            continue
                        wts = np.asarray(r["weights"], dtype=np.float64)
                        cells[cam] = len(wts)
                        hits[cam].append(int(np.argmax(wts)) == t)
                        ratios[cam].append(wts[t] / max(wts.sum(), 1e-12) * len(wts))
            row = {"method": method if baseline is None else f"{method}[{baseline}]", "queries": queries}
            for cam in ("front", "wrist"):
                row[cam] = {"frames": len(hits[cam]), "peak_hit_rate": float(np.mean(hits[cam])),
                            "chance": 1.0 / cells[cam], "mass_ratio_median": float(np.median(ratios[cam]))}
            results.append(row)
            print(f"{method:>22} {queries:>8}: front hit {row['front']['peak_hit_rate']:.3f} "
                  f"(chance {row['front']['chance']:.3f}), mass x{row['front']['mass_ratio_median']:.2f}", flush=True)

    table = []
    for r in results:
        for cam in ("front", "wrist"):
            c = r[cam]
            table.append((f"{cam} peak hit rate, {r['method']} ({r['queries']}), {c['frames']} frames",
                          f"{c['peak_hit_rate']:.3f}", f"chance {c['chance']:.3f}",
                          f"{c['peak_hit_rate'] / c['chance']:.1f}x chance; mass x{c['mass_ratio_median']:.2f}",
                          # The target belongs to the method the README recommends, not to every method.
                          ">= 0.70" if cam == "front" and r["method"].startswith("integrated_gradients[blur")
                          else "-"))
    print_table(f"Attention vs ground truth on {len(episodes)} held-out demo episodes; {machine()}", table)
    best = max(results, key=lambda r: r["front"]["peak_hit_rate"])
    print(f"\nbest method on the front camera: {best['method']} ({best['queries']}): "
          f"{best['front']['peak_hit_rate']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
