"""``pai demo``: the whole live graph on the embedded demo assets, then the offline outputs.

One process, one executor, three real nodes talking over DDS (so `ros2 topic echo` and
rqt_image_view on the same domain see the topics): the replay node plays a held-out demo
episode, the policy node interprets it live (actions, heatmaps, shares, diagnostics), the
recorder writes every topic, heatmaps included, to an MCAP bag. Afterwards the bag is
converted to Parquet, the recorded heatmap topics are composed into a combined MP4 and a
contact-sheet PNG, and a report compares predicted with recorded actions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pai_ros.demo import outputs
from pai_ros.demo.output_dir import check_output_dir, demo_sae_id, finish_output_dir, prepare_output_dir
from pai_ros.ros import topics
from pai_ros.ros.in_process import InProcessGraph, demo_policy_parameters, demo_recorder_parameters

if TYPE_CHECKING:
    from pai_ros.demo.assets import DemoAssets


@dataclass
class DemoResult:
    output_dir: Path
    bag: Path
    parquet: Path
    combined_video: Path
    contact_sheet: Path
    report: dict


def run_demo(output_dir: Path, *, episode: int = 0, duration_s: float | None = None, overwrite: bool = False,
             progress: bool = True, assets: DemoAssets | None = None, rate_factor: float = 1.0) -> DemoResult:
    """Run the live demo into ``output_dir`` (``assets``: the demo assets; default: build or find them).

    ``rate_factor`` < 1 replays (and ticks) slower than recorded, for machines too busy to keep up.
    """
    from rclpy.parameter import Parameter
    from tqdm import tqdm

    from pai_ros.data.episodes import check_episodes, read_info
    from pai_ros.demo.assets import ensure_demo_assets
    from pai_ros.ros.policy_node import PolicyNode
    from pai_ros.ros.recorder_node import RecorderNode
    from pai_ros.ros.replay_node import ReplayNode

    check_output_dir(Path(output_dir), overwrite)  # before minutes of asset building
    assets = assets or ensure_demo_assets(progress=progress)
    check_episodes(read_info(assets.heldout_root), [episode], assets.heldout_root)  # before the output exists
    out = prepare_output_dir(Path(output_dir), overwrite, demo_sae_id(assets))
    bag = out / "bag"

    with InProcessGraph() as graph:
        replay = graph.add(ReplayNode(parameter_overrides=[
            Parameter("dataset_root", value=str(assets.heldout_root)), Parameter("episodes", value=[episode]),
            Parameter("start_delay_s", value=2.0), Parameter("rate_factor", value=float(rate_factor))]))
        fps = replay.fps
        tick_hz = fps * rate_factor
        policy = graph.add(PolicyNode(parameter_overrides=demo_policy_parameters(
            assets, replay.state_names, replay.action_names, tick_hz)))
        recorder = graph.add(RecorderNode(parameter_overrides=demo_recorder_parameters(
            str(bag), topics.DEMO_CAMERAS, [topics.JOINT_STATES, topics.ACTION, topics.RECORDED_ACTION,
                                            topics.ATTENTION_SHARES, topics.DIAGNOSTICS, topics.FEATURES])))
        start = time.monotonic()
        with tqdm(desc="live demo (replay -> policy -> recorder)", unit="frame", disable=not progress) as bar:
            graph.spin_while(lambda: not replay.finished and (duration_s is None
                                                              or time.monotonic() - start < duration_s),
                             lambda: bar.update(replay.published - bar.n))
        graph.settle()
        lossless = graph.close_recording(policy, recorder)
        live = _live_stats(policy, replay, lossless, time.monotonic() - start)

    done = outputs.outputs_from_bag(bag, out, fps, progress)
    parquet, combined, sheet = done.parquet, done.combined, done.sheet
    features = outputs.analyse_live_features(parquet, progress)
    if assets.has_sae():
        features["dataset_recording"] = str(outputs.record_dataset_features(assets, out / "features", progress))
    report = {**live, "episode": episode, "heatmap_frames": done.heatmap_frames,
              "action_error": outputs.action_error(parquet), "features": features,
              "converted": done.converted,
              "policy": str(assets.policy_dir), "dataset": str(assets.heldout_root)}
    finish_output_dir(out, report)
    return DemoResult(out, bag, parquet, combined, sheet, report)


def _live_stats(policy, replay, lossless: bool, seconds: float) -> dict:
    live = policy.live
    ticks, actions, skipped, rejected = live.health.counts
    ticks_ms = live.health.tick_latencies_ms()
    return {
        "frames_replayed": replay.published, "ticks": ticks, "actions_published": actions,
        "skipped_ticks": skipped, "rejected_ticks": rejected, "mode": live.runner.mode,
        "tick_latency_ms": {"mean": float(ticks_ms.mean()) if ticks_ms.size else None,
                            "p99": float(np.percentile(ticks_ms, 99)) if ticks_ms.size else None},
        "policy_latency_ms": live.runner.stats.latency_summary(), "recorder_lossless": lossless,
        "seconds": round(seconds, 1),
    }
