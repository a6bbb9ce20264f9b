"""``pai demo``: the whole live graph on the embedded demo assets, then the offline outputs.

One process, one executor, three real nodes talking over DDS (so `ros2 topic echo` and
rqt_image_view on the same domain see the topics): the replay node plays a held-out demo
episode, the policy node interprets it live (actions, heatmaps, shares, diagnostics), the
recorder writes every topic, heatmaps included, to an MCAP bag. Afterwards the bag is
converted to Parquet, the recorded heatmap topics are composed into a combined MP4 and a
contact-sheet PNG, and a report compares predicted with recorded actions.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pai_ros.demo import outputs
from pai_ros.errors import UserError
from pai_ros.jsonfile import read_json, write_json_atomic
from pai_ros.ros import topics
from pai_ros.ros.in_process import InProcessGraph, demo_policy_parameters, demo_recorder_parameters
from pai_ros.staging import check_replaceable, json_file_with, make_output_dir, write_manifest

if TYPE_CHECKING:
    from pai_ros.demo.assets import DemoAssets

REPORT_FILE = "report.json"  # written last: its presence says the run finished
DEMO_MARKER = ".pai_demo"  # written first: what --overwrite may replace


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


#: What a demo output may hold that the demo did not write and keeps: the names given to its
#: features in `pai features ui out/demo/features` (the user's work; `make demo` always overwrites).
NAMES = "features/names.json"
KEPT_FILES = (NAMES,)
#: What other pai commands compute from a demo's outputs (`pai features analyse` / `effects` on its
#: features or tables): replaced with the demo, as their inputs are.
DERIVED_FILES = ("features/analysis/*", "parquet/analysis/*")


def demo_sae_id(assets: DemoAssets) -> str | None:
    """The content id of the demo assets' SAE (None without one): what kept feature names must name."""
    from pai_ros.sae.model import content_id

    return content_id(assets.sae_dir) if assets.has_sae() else None


def prepare_output_dir(out: Path, overwrite: bool, sae_id: str | None = None) -> Path:
    """An empty ``out`` (but for :data:`KEPT_FILES`), marked as a demo output: a non-empty one is refused
    unless it is an earlier demo's and ``overwrite`` is given; --overwrite never deletes other files."""
    check_output_dir(out, overwrite, sae_id)
    if out.is_dir():
        _remove_all_but(out, {out / rel for rel in KEPT_FILES if (out / rel).is_file()})
    out = make_output_dir(out)
    (out / DEMO_MARKER).write_text("written by pai demo: --overwrite may replace this directory\n")
    return out


def check_output_dir(out: Path, overwrite: bool, sae_id: str | None = None) -> None:
    """What :func:`prepare_output_dir` refuses, said without touching anything (the kept feature names
    only once ``sae_id``, the SAE they must name, is known)."""
    if out.is_dir() and (out / DEMO_MARKER).is_file() and not (out / REPORT_FILE).exists() and not overwrite:
        raise UserError(f"output directory {out} holds an unfinished demo run (no {REPORT_FILE}: interrupted?); "
                        "pass --overwrite to replace it")
    check_replaceable(out, overwrite, made_by="pai demo", what_marks_it=DEMO_MARKER, is_mine=_is_demo_output,
                      keep=KEPT_FILES, derived=DERIVED_FILES)
    if sae_id is not None and (out / NAMES).is_file():
        # names.json is keyed by feature number only: kept for another SAE it would label other features.
        try:
            named = read_json(out / "features" / "record.json", "feature recording", want_object=True).get("sae_id")
        except UserError:  # no recording beside them: which SAE they name cannot be told
            named = None
        if named != sae_id:
            raise UserError(f"{out / NAMES} names the features of SAE {named or '(unknown)'}, and the demo's SAE is "
                            f"now {sae_id}: move it out first (its names would label other features)")


def finish_output_dir(out: Path, report: dict) -> None:
    """``report.json`` (its presence says the run finished), then the list of what the demo wrote."""
    write_json_atomic(out / REPORT_FILE, report)
    write_manifest(out, leave_out=KEPT_FILES)


def _remove_all_but(directory: Path, kept: set[Path]) -> None:
    """Delete everything under ``directory`` but the files ``kept`` (and the directories holding them)."""
    for entry in list(directory.iterdir()):
        if entry in kept:
            continue
        if entry.is_dir() and not entry.is_symlink():
            if any(entry in k.parents for k in kept):
                _remove_all_but(entry, kept)
            else:
                shutil.rmtree(entry)
        else:
            entry.unlink()


def _is_demo_output(out: Path) -> bool:
    """Marked by a demo, or a demo's from before the marker: its report beside its bag and tables."""
    if (out / DEMO_MARKER).is_file():
        return True
    return (out / "bag").is_dir() and (out / "parquet").is_dir() and json_file_with(out / REPORT_FILE, ("ticks",))


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
