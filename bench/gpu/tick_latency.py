"""Per-tick latency of the policy core on a GPU: default ACT, two 480x640 cameras, 6-D state.

What the policy node runs each tick, without ROS: ``PolicyRunner.step`` (validation,
preprocess, ACT forward with capture hooks, postprocess), then, when on, the attention maps
(``maps_for_tick``: token shares and per-camera grids, as the node's defaults ask), with
``relevance`` the relevance map (one backward pass inside the tick, explaining the first
action, as ``heatmap_method:=relevance`` does), and the SAE encode of the encoder tokens (``encode_frame``, TopK 512 -> 4096, k 32, the node's top 64).
Heatmap overlays (rendered at camera resolution) and message conversion are not included.

The model is LeRobot's default ACT configuration (ResNet-18, dim_model 512, chunk 100, ...)
with random weights, saved and loaded as a checkpoint the way the node loads one; the
ResNet's ImageNet weights are never fetched. CUDA is synchronised before and after each
timed tick; warm-up ticks are not counted.

Runs with only torch, torchvision and numpy installed plus the bundle that
``make_bundle.py`` builds (see README.md here): packages LeRobot imports but ACT inference
never uses get stand-ins (``stand_ins.py``) where they are missing.

Usage: python bench/gpu/tick_latency.py [--device cuda] [--ticks 1000] [--warmup 50] [--json PATH]
       [--settings bare attention relevance sae both]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))
import stand_ins  # noqa: E402

CAMERAS = {"front": (480, 640), "wrist": (480, 640)}
STATE_DIM = ACTION_DIM = 6
SAE_SIZE = {"d_in": 512, "d_sae": 4096, "k": 32}
TOP_N = 64  # the policy node's features_top_n default
TARGET_P99_MS = 10.0
# ACTConfig fields that set the network's size and behaviour: all taken from ACTConfig().
ACT_FIELDS = ("vision_backbone", "replace_final_stride_with_dilation", "pre_norm", "dim_model", "n_heads",
              "dim_feedforward", "feedforward_activation", "n_encoder_layers", "n_decoder_layers", "use_vae",
              "latent_dim", "n_vae_encoder_layers", "temporal_ensemble_coeff", "dropout", "kl_weight",
              "chunk_size", "n_action_steps", "n_obs_steps")


@dataclass(frozen=True)
class Setting:
    key: str  # what --settings takes
    name: str
    attention: bool
    sae: bool
    relevance: bool = False  # heatmap_method relevance: an explainer on the runner, one backward per tick


SETTINGS = (Setting("bare", "capture off, SAE off", False, False),
            Setting("attention", "capture on, SAE off", True, False),
            Setting("relevance", "capture on, relevance map, SAE off", True, False, relevance=True),
            Setting("sae", "capture off, SAE on", False, True),
            Setting("both", "capture on, SAE on", True, True))


def import_core(force_stand_ins: bool) -> tuple[SimpleNamespace, list[str]]:
    """Import everything the measured path needs; returns (the names it uses, stand-ins used).

    Every LeRobot module the path reaches is imported here, inside the stand-ins' block: after
    it, a module-level import of a stand-in package would fail.
    """
    with stand_ins.active(force=force_stand_ins) as used:
        import common
        # load_act_policy and save_random_act import these two lazily: load them while stand-ins can serve.
        import lerobot.policies.act.modeling_act  # noqa: F401
        import lerobot.policies.factory  # noqa: F401
        from lerobot.policies.act.configuration_act import ACTConfig

        from pai_ros.attention.attribution import QuerySelection
        from pai_ros.policy.capture import CaptureConfig
        from pai_ros.attention.maps import maps_for_tick
        from pai_ros.attention.relevance import RelevanceExplainer
        from pai_ros.jsonfile import write_json_atomic
        from pai_ros.policy.loading import load_act_policy
        from pai_ros.policy.observation import Observation
        from pai_ros.policy.random_init import save_random_act
        from pai_ros.policy.runner import PolicyRunner
        from pai_ros.sae.frame import encode_frame
        from pai_ros.sae.model import SaeConfig, SparseAutoencoder
    core = SimpleNamespace(
        ACTConfig=ACTConfig, print_table=common.print_table, QuerySelection=QuerySelection,
        CaptureConfig=CaptureConfig, maps_for_tick=maps_for_tick, RelevanceExplainer=RelevanceExplainer, write_json_atomic=write_json_atomic,
        load_act_policy=load_act_policy, Observation=Observation, save_random_act=save_random_act,
        PolicyRunner=PolicyRunner, encode_frame=encode_frame, SaeConfig=SaeConfig,
        SparseAutoencoder=SparseAutoencoder)
    return core, used


def random_sae(core: SimpleNamespace, device: str, seed: int = 0) -> Any:
    """A TopK SAE with unit-norm random decoder rows and the tied encoder (how training starts)."""
    import torch

    sae = core.SparseAutoencoder(core.SaeConfig(**SAE_SIZE))
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(sae.d_sae, sae.d_in, generator=gen)
    w /= w.norm(dim=1, keepdim=True)
    with torch.no_grad():
        sae.W_dec.copy_(w)
        sae.W_enc.copy_(w.t())
    return sae.eval().requires_grad_(False).to(device)


def summarise(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000.0 for s in samples_s)
    rank99 = 0.99 * (len(ms) - 1)  # linear interpolation between ranks, as numpy's default
    lo = math.floor(rank99)
    p99 = ms[lo] + (ms[min(lo + 1, len(ms) - 1)] - ms[lo]) * (rank99 - lo)
    return {"n": len(ms), "mean_ms": statistics.fmean(ms), "p50_ms": statistics.median(ms), "p99_ms": p99,
            "min_ms": ms[0], "max_ms": ms[-1]}


def environment(device: str) -> dict[str, Any]:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "device": device, "cpu": f"{platform.machine()}, {os.cpu_count()} cores"}
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    try:
        from importlib.metadata import version

        env["lerobot"] = version("lerobot")
    except Exception:  # noqa: BLE001 - metadata is informative only
        env["lerobot"] = None
    return env


def run_tick(core: SimpleNamespace, runner: Any, setting: Setting, obs: Any, sae: Any, selection: Any) -> dict[str, Any]:
    """One control tick as the node computes it; returns what it produced."""
    result = runner.step(obs)
    out: dict[str, Any] = {"action": result.action}
    if setting.relevance:
        out["shares"] = core.maps_for_tick(result, "relevance", selection).shares
    elif setting.attention:
        out["shares"] = core.maps_for_tick(result, "cross_attention", selection).shares
    if setting.sae:
        out["features"] = core.encode_frame(sae, result.capture.encoder_output[0], TOP_N).feature_indices
    return out


def measure(core: SimpleNamespace, device: str, ticks: int, warmup: int, seed: int,
            settings: tuple[Setting, ...] = SETTINGS) -> dict[str, Any]:
    import numpy as np
    import torch

    act_defaults = core.ACTConfig()
    overrides = {f: getattr(act_defaults, f) for f in ACT_FIELDS}
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = core.save_random_act(Path(tmp) / "act", CAMERAS, state_dim=STATE_DIM, action_dim=ACTION_DIM,
                                       seed=seed, **overrides)
        loaded = core.load_act_policy(ckpt, device)
    params_m = sum(p.numel() for p in loaded.policy.parameters()) / 1e6
    sae = random_sae(core, device, seed)
    selection = core.QuerySelection.parse("mean")  # the node's heatmap_queries default
    rng = np.random.default_rng(seed)
    observations = [core.Observation({c: rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for c, hw in CAMERAS.items()},
                                        rng.normal(size=STATE_DIM).astype(np.float32)) for _ in range(8)]
    cuda = device.startswith("cuda")
    sync: Callable[[], None] = torch.cuda.synchronize if cuda else (lambda: None)

    results: dict[str, Any] = {}
    for setting in settings:
        capture = core.CaptureConfig(cross_attention=setting.attention, encoder_output=setting.sae)
        runner = core.PolicyRunner(loaded, "auto", capture)  # auto: what the node does by default
        explainer = core.RelevanceExplainer(loaded.policy, "relevance").attach() if setting.relevance else None
        runner.explainer = explainer
        n_obs = len(observations)
        try:
            first = None
            for i in range(warmup):
                out = run_tick(core, runner, setting, observations[i % n_obs], sae, selection)
                first = first or out
            samples = []
            for i in range(warmup, warmup + ticks):
                sync()
                t0 = time.perf_counter()
                out = run_tick(core, runner, setting, observations[i % n_obs], sae, selection)
                sync()
                samples.append(time.perf_counter() - t0)
                first = first or out
        finally:
            runner.close()  # detach this setting's hooks before the next one attaches its own
            if explainer is not None:
                explainer.detach()
        stats = summarise(samples)
        stats["mode"] = runner.mode
        # A fingerprint of what was computed, to compare runs (e.g. with and without stand-ins).
        stats["first_action"] = [round(float(v), 5) for v in first["action"]]
        if "shares" in first:
            stats["first_shares"] = {k: round(float(v), 5) for k, v in first["shares"].items()}
        if "features" in first:
            stats["first_features"] = [int(v) for v in first["features"][:8]]
        results[setting.name] = stats
    return {"params_m": round(params_m, 2), "act": {k: v for k, v in overrides.items()}, "sae": SAE_SIZE,
            "settings": results}


def report(core: SimpleNamespace, data: dict[str, Any]) -> None:
    env = data["environment"]
    ran = [s for s in SETTINGS if s.name in data["settings"]]
    base = data["settings"][ran[0].name]
    rows = []
    for s in ran:
        st = data["settings"][s.name]
        this = (f"mean {st['mean_ms']:.2f} / p50 {st['p50_ms']:.2f} / p99 {st['p99_ms']:.2f} / "
                f"min {st['min_ms']:.2f} / max {st['max_ms']:.2f} ms")
        verdict = "met" if st["p99_ms"] <= TARGET_P99_MS else "missed"
        rows.append((s.name, this, f"p50 {base['p50_ms']:.2f} ms ({ran[0].key})", f"{st['p50_ms'] / base['p50_ms']:.3f}x",
                     f"p99 <= {TARGET_P99_MS:g} ms: {verdict}"))
    where = env.get("gpu") or env["cpu"]
    stand = f"; stand-ins: {', '.join(data['stand_ins'])}" if data["stand_ins"] else ""
    core.print_table(
        f"Policy core per-tick latency: default ACT ({data['params_m']:.1f} M params), 2 x 480x640 + 6-D state, "
        f"{env['device']} ({where}), torch {env['torch']}, CUDA {env['cuda']}, Python {env['python']}, "
        f"{data['ticks']} ticks after {data['warmup']} warm-up{stand}", rows)
    print(f"\ntarget p99 <= {TARGET_P99_MS:g} ms in every setting: {'met' if data['target_met'] else 'missed'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (cpu: a smoke run)")
    ap.add_argument("--ticks", type=int, default=1000, help="timed ticks per setting")
    ap.add_argument("--warmup", type=int, default=50, help="untimed ticks per setting before timing")
    ap.add_argument("--settings", nargs="+", choices=[s.key for s in SETTINGS], default=[s.key for s in SETTINGS],
                    help="which settings to run: bare (capture and SAE off), attention, sae, both (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    ap.add_argument("--stand-ins", choices=("auto", "force"), default="auto",
                    help="auto: stand-ins only for missing packages; force: for all of them (to test)")
    args = ap.parse_args(argv)
    if args.ticks < 1 or args.warmup < 0:
        print("tick_latency: --ticks must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 2
    if args.json is not None and not args.json.parent.is_dir():
        print(f"tick_latency: the directory of --json {args.json} does not exist", file=sys.stderr)
        return 2

    from pai_ros.errors import UserError
    from pai_ros.policy.loading import (
        resolve_device,  # imports torch only: fails fast, before LeRobot
    )

    try:
        device = resolve_device(args.device)
    except UserError as exc:
        print(f"tick_latency: {exc}", file=sys.stderr)
        return 2
    core, used = import_core(args.stand_ins == "force")
    settings = tuple(s for s in SETTINGS if s.key in args.settings)
    data = measure(core, device, args.ticks, args.warmup, args.seed, settings)
    data.update(environment=environment(device), ticks=args.ticks, warmup=args.warmup, stand_ins=used,
                target_p99_ms=TARGET_P99_MS,
                target_met=all(st["p99_ms"] <= TARGET_P99_MS for st in data["settings"].values()))
    report(core, data)
    if args.json is not None:
        core.write_json_atomic(args.json, data)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
