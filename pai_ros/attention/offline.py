"""``pai attention``: run a policy over recorded episodes and save attention, actions and videos.

Per episode, into ``<output>/episode_{E:06d}/``:

* ``attention.parquet``: one row per frame and camera: ``frame_index``, ``timestamp``,
  ``camera``, ``grid_h``, ``grid_w``, ``weights`` (raw per-cell weights, row-major, not
  normalised), ``latent_share``, ``state_share``, ``env_state_share``, ``camera_share``, plus
  the method, query selection and runner facts of that tick;
* ``actions.parquet``: predicted (executed) vs recorded action per frame, with the error;
* ``<camera>.mp4`` per camera and ``combined.mp4`` (H.264, dataset fps, correct colours);
* ``summary.json``.

The episode is written into a ``.partial`` directory and renamed into place only when every
file is complete, so an interrupted run never leaves outputs that look finished.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from pai_ros import __version__
from pai_ros.attention.attribution import GRADIENT_LIVE_METHODS, QuerySelection
from pai_ros.attention.explainers import explaining
from pai_ros.attention.integrated_gradients import IGConfig, integrated_gradients
from pai_ros.attention.maps import maps_for_tick
from pai_ros.attention.relevance import RelevanceTarget
from pai_ros.attention.render import (
    Normalization,
    combined_panel,
    episode_range,
    normalize,
    overlay,
)
from pai_ros.data.camera_rename import describe
from pai_ros.data.episodes import episode_length, episode_stem, iter_episode, read_info
from pai_ros.errors import UserError
from pai_ros.jsonfile import json_text, read_json
from pai_ros.media.video import Mp4Writer, even_size
from pai_ros.policy.layout import ENV_STATE, LATENT, STATE
from pai_ros.policy.observation import Observation
from pai_ros.policy.over_dataset import camera_rename_for, check_dataset_fits
from pai_ros.policy.runner import PolicyRunner
from pai_ros.staging import check_no_other_results, check_only_own_entries, staged_directory

ATTENTION_SCHEMA = pa.schema([
    ("episode_index", pa.int32()), ("frame_index", pa.int32()), ("timestamp", pa.float64()),
    ("camera", pa.string()), ("grid_h", pa.int16()), ("grid_w", pa.int16()),
    ("weights", pa.list_(pa.float32())),
    ("latent_share", pa.float32()), ("state_share", pa.float32()), ("env_state_share", pa.float32()),
    ("camera_share", pa.float32()),
    ("method", pa.string()), ("queries", pa.string()), ("executed_query", pa.int16()), ("fresh", pa.bool_()),
])
ACTIONS_SCHEMA = pa.schema([
    ("episode_index", pa.int32()), ("frame_index", pa.int32()), ("timestamp", pa.float64()),
    ("predicted", pa.list_(pa.float32())), ("recorded", pa.list_(pa.float32())),
    ("abs_error", pa.list_(pa.float32())), ("mae", pa.float32()), ("executed_query", pa.int16()),
])


@dataclass
class RenderOptions:
    normalization: str = "episode"  # raw | frame | episode | percentile
    colormap: str = "viridis"
    alpha: float = 0.6
    colorbar: bool = True
    videos: bool = True


@dataclass
class EpisodeResult:
    episode: int
    directory: Path
    frames: int
    mae: float
    seconds: float
    mean_shares: dict[str, float] = field(default_factory=dict)


def _nan_if_none(v: float | None) -> float:
    return float("nan") if v is None else float(v)


def analyse_episode(runner: PolicyRunner, dataset_root: Path, episode: int, output_dir: Path, *,
                    method: str = "cross_attention", selection: QuerySelection = QuerySelection(),
                    ig: IGConfig | None = None, render: RenderOptions = RenderOptions(),
                    progress: bool = True, relevance_target: RelevanceTarget = RelevanceTarget()) -> EpisodeResult:
    """Run ``runner`` over one episode and write its outputs (see the module docstring).

    ``relevance`` / ``relevance_cross`` / ``input_gradient`` explain ``relevance_target`` (first action, chunk, one
    dimension); their ``queries`` column holds the target's label.
    """
    if method in GRADIENT_LIVE_METHODS:
        with explaining(runner, method, relevance_target):
            return _analyse_episode(runner, dataset_root, episode, output_dir, method,
                                    QuerySelection(), ig, render, progress, relevance_target.label())
    return _analyse_episode(runner, dataset_root, episode, output_dir, method, selection, ig, render, progress,
                            selection.label())


def check_output_dir(output_dir: Path, *, policy_path: Path, dataset_root: Path, method: str, queries: str,
                     camera_rename: dict[str, str] | None = None) -> None:
    """``output_dir`` holds no episodes of other results: an episode written again replaces its folder.

    Each episode's folder is replaced whole, so another run's episodes in the same directory (another
    method, policy or dataset, or ``pai features record``'s) would be lost or mixed without a word.
    Re-running the same settings replaces them, as intended.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return
    check_no_other_results(output_dir, "attention (pai attention)")
    check_only_own_entries(output_dir, ("episode_", "faithfulness"), "pai attention", "--output-dir")
    want = {"policy_path": str(Path(policy_path).resolve()), "dataset_root": str(Path(dataset_root).resolve()),
            "method": method, "queries": queries}
    if camera_rename is not None:  # known once the policy has loaded (its own map counts): checked again then
        want["camera_rename"] = camera_rename
    for episode_dir in sorted(output_dir.glob("episode_*")):
        summary = episode_dir / "summary.json"
        if not summary.is_file():
            raise UserError(f"{episode_dir} is not attention output (no summary.json); write attention into "
                            "another --output-dir")
        old = read_json(summary, "attention summary", want_object=True)
        for key, value in want.items():
            was = old.get(key, {} if key == "camera_rename" else None)  # no map recorded: none was in force
            if was != value:
                if key == "camera_rename":
                    was, value = describe(was), describe(value)
                raise UserError(f"{output_dir} holds attention made with other settings ({episode_dir.name}: "
                                f"{key.replace('_', ' ')} {was}; now {value}); write into another --output-dir")


def _analyse_episode(runner: PolicyRunner, dataset_root: Path, episode: int, output_dir: Path, method: str,
                     selection: QuerySelection, ig: IGConfig | None, render: RenderOptions, progress: bool,
                     queries_label: str) -> EpisodeResult:
    info = read_info(dataset_root)
    fps = float(info["fps"])
    check_dataset_fits(runner, info, dataset_root)
    final = output_dir / episode_stem(episode)
    start = time.monotonic()
    forwards0, wasted0 = runner.stats.forwards, runner.stats.wasted_forwards
    with staged_directory(final) as partial:
        att_rows, act_rows, frame_grids, frame_shares = _run(runner, dataset_root, info, episode, method, selection,
                                                             ig, progress, queries_label)
        if not act_rows["frame_index"]:
            raise UserError(f"episode {episode} of {dataset_root} has no frames")
        meta = {b"pai_ros_version": __version__.encode(), b"method": method.encode(),
                b"queries": queries_label.encode(), b"runner_mode": runner.mode.encode(),
                b"policy_path": str(runner.loaded.path).encode(), b"dataset_root": str(dataset_root).encode()}
        pq.write_table(pa.Table.from_pydict(att_rows, schema=ATTENTION_SCHEMA.with_metadata(meta)),
                       partial / "attention.parquet")
        pq.write_table(pa.Table.from_pydict(act_rows, schema=ACTIONS_SCHEMA.with_metadata(meta)),
                       partial / "actions.parquet")
        if render.videos:
            _write_videos(partial, dataset_root, info, episode, fps, frame_grids, frame_shares, render, method,
                          queries_label, progress, runner.camera_rename)
        errors = np.asarray(act_rows["mae"], dtype=np.float64)
        # A dataset without recorded actions (e.g. pai bag2dataset without --action-topic): nothing to compare.
        mae = float(np.nanmean(errors)) if np.isfinite(errors).any() else math.nan
        keys = frame_shares[0].keys()
        mean_shares = {k: float(np.mean([s[k] for s in frame_shares])) for k in keys}
        summary = {"policy_path": str(Path(runner.loaded.path).resolve()),
                   "dataset_root": str(Path(dataset_root).resolve()), "episode": episode,
                   "frames": len(act_rows["frame_index"]), "method": method,
                   "queries": queries_label, "mode": runner.mode, "action_mae": mae,
                   "mean_shares": mean_shares, "forwards": runner.stats.forwards - forwards0,
                   "wasted_forwards": runner.stats.wasted_forwards - wasted0,
                   "latency": runner.stats.latency_summary(),
                   "seconds": round(time.monotonic() - start, 2)}
        rename = camera_rename_for(runner, info)
        if rename:  # dataset camera -> the policy camera it was read as
            summary["camera_rename"] = rename
        (partial / "summary.json").write_text(json_text(summary))
    return EpisodeResult(episode, final, summary["frames"], mae, summary["seconds"], mean_shares)


def _run(runner: PolicyRunner, root: Path, info: dict, episode: int, method: str, selection: QuerySelection,
         ig: IGConfig | None, progress: bool, queries_label: str):
    att: dict[str, list] = {name: [] for name in ATTENTION_SCHEMA.names}
    act: dict[str, list] = {name: [] for name in ACTIONS_SCHEMA.names}
    frame_grids: list[dict[str, np.ndarray]] = []
    frame_shares: list[dict[str, float]] = []
    runner.reset()
    total = episode_length(info, root, episode)
    live_method = "cross_attention" if method == "integrated_gradients" else method
    for frame in tqdm(iter_episode(root, episode, info, rename=runner.camera_rename), total=total,
                      desc=f"episode {episode}", unit="frame",
                      disable=not progress):
        obs = Observation(frame.images, frame.state, frame.env_state)
        result = runner.step(obs)
        maps = maps_for_tick(result, live_method, selection if method != "integrated_gradients" else QuerySelection(),
                             label=queries_label)
        if method == "integrated_gradients":
            chunk = runner.chunk_size
            q = selection.resolve(chunk, executed=result.executed_query)
            igr = integrated_gradients(runner, obs, q, ig or IGConfig())
            grids, shares = igr.grids, dict(igr.shares)
            latent = state = env = None
        else:
            grids, shares = maps.grids, maps.shares
            latent, state, env = shares.get(LATENT), shares.get(STATE), shares.get(ENV_STATE)
        for cam, grid in grids.items():
            att["episode_index"].append(episode)
            att["frame_index"].append(frame.frame_index)
            att["timestamp"].append(frame.timestamp)
            att["camera"].append(cam)
            att["grid_h"].append(grid.shape[0])
            att["grid_w"].append(grid.shape[1])
            att["weights"].append(grid.astype(np.float32).ravel())
            att["latent_share"].append(_nan_if_none(latent))
            att["state_share"].append(_nan_if_none(state))
            att["env_state_share"].append(_nan_if_none(env))
            att["camera_share"].append(shares[cam])
            att["method"].append(method)
            att["queries"].append(queries_label)
            att["executed_query"].append(result.executed_query)
            att["fresh"].append(bool(maps.fresh) if maps is not None else False)
        # No recorded action, or one of another width (another robot's dataset): nothing to compare.
        comparable = frame.action is not None and np.shape(frame.action) == result.action.shape
        recorded = frame.action if comparable else np.full_like(result.action, np.nan)
        err = np.abs(result.action - recorded).astype(np.float32)
        act["episode_index"].append(episode)
        act["frame_index"].append(frame.frame_index)
        act["timestamp"].append(frame.timestamp)
        act["predicted"].append(result.action.astype(np.float32))
        act["recorded"].append(recorded.astype(np.float32))
        act["abs_error"].append(err)
        act["mae"].append(float(err.mean()))
        act["executed_query"].append(result.executed_query)
        frame_grids.append(grids)
        frame_shares.append(shares)
    return att, act, frame_grids, frame_shares


def _write_videos(out: Path, root: Path, info: dict, episode: int, fps: float, frame_grids, frame_shares,
                  render: RenderOptions, method: str, queries_label: str, progress: bool,
                  rename: dict[str, str]) -> None:
    """Second pass over the episode's frames: decode again (bounded memory), render, encode."""
    cams = list(frame_grids[0])
    if render.normalization == "episode":
        vmin, vmax = episode_range(frame_grids)
        norm = Normalization(mode="episode", vmin=vmin, vmax=vmax)
    elif render.normalization == "raw":
        # A fixed scale from 0 to the episode's largest cell: comparable across frames.
        norm = Normalization(mode="raw", vmax=max(episode_range(frame_grids)[1], 1e-12))
    else:
        norm = Normalization(mode=render.normalization)
    writers = {c: Mp4Writer(out / f"{c}.mp4", fps) for c in cams}
    combined = Mp4Writer(out / "combined.mp4", fps)
    title = f"{method} / queries {queries_label} / {render.normalization} scale"
    try:
        for i, frame in enumerate(tqdm(iter_episode(root, episode, info, rename=rename), total=len(frame_grids),
                                       desc=f"videos {episode}", unit="frame", disable=not progress)):
            if i >= len(frame_grids):
                break
            scaled = normalize(frame_grids[i], norm)
            overlays = {c: overlay(frame.images[c], scaled[c], alpha=render.alpha, colormap=render.colormap,
                                   colorbar=render.colorbar) for c in cams}
            for c in cams:
                writers[c].write(even_size(overlays[c]))
            combined.write(combined_panel(overlays, frame_shares[i], title=f"{title} / frame {frame.frame_index}"))
    finally:
        for w in (*writers.values(), combined):
            w.close()
