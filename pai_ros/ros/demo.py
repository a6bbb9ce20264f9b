"""``pai demo``: the whole live graph on the embedded demo assets, then the offline outputs.

One process, one executor, three real nodes talking over DDS (so `ros2 topic echo` and
rqt_image_view on the same domain see the topics): the replay node plays a held-out demo
episode, the policy node interprets it live (actions, heatmaps, shares, diagnostics), the
recorder writes every topic, heatmaps included, to an MCAP bag. Afterwards the bag is
converted to Parquet, the recorded heatmap topics are composed into a combined MP4 and a
contact-sheet PNG, and a report compares predicted with recorded actions.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pai_ros.errors import UserError

CAMERAS = ("front", "wrist")
DATASET_FEATURE_EPISODES = 4  # held-out episodes recorded for the feature browser (about 20 s on 2 cores)


@dataclass
class DemoResult:
    output_dir: Path
    bag: Path
    parquet: Path
    combined_video: Path
    contact_sheet: Path
    report: dict


def run_demo(output_dir: Path, *, episode: int = 0, duration_s: float | None = None, overwrite: bool = False,
             progress: bool = True, assets=None) -> DemoResult:
    """Run the live demo into ``output_dir`` (``assets``: the demo assets; default: build or find them)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from tqdm import tqdm

    from pai_ros.bags.to_parquet import bag_to_parquet
    from pai_ros.demo.assets import ensure_demo_assets
    from pai_ros.ros.policy_node import PolicyNode
    from pai_ros.ros.recorder_node import RecorderNode
    from pai_ros.ros.replay_node import ReplayNode

    out = Path(output_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise UserError(f"output directory {out} is not empty (use --overwrite to replace it)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    assets = assets or ensure_demo_assets(progress=progress)
    bag = out / "bag"

    rclpy.init()
    executor = SingleThreadedExecutor()
    nodes = []
    try:
        replay = ReplayNode(parameter_overrides=[
            Parameter("dataset_root", value=str(assets.heldout_root)), Parameter("episodes", value=[episode]),
            Parameter("start_delay_s", value=2.0)])
        fps = replay.fps
        policy = PolicyNode(parameter_overrides=[
            Parameter("policy_path", value=str(assets.policy_dir)),
            Parameter("state_joint_names", value=list(replay.state_names)),
            Parameter("action_names", value=list(replay.action_names)),
            Parameter("control_rate_hz", value=float(fps)), Parameter("max_observation_age_s", value=0.5),
            Parameter("sae_path", value=str(assets.sae_dir) if assets.has_sae() else "")])
        recorder = RecorderNode(parameter_overrides=[
            Parameter("output", value=str(bag)), Parameter("record_heatmaps", value=True),
            Parameter("camera_topics", value=[f"camera/{c}/image_raw" for c in CAMERAS]),
            Parameter("topics", value=["joint_states", "action", "recorded_action", "attention/shares",
                                       "/diagnostics", "features"])])
        nodes = [replay, policy, recorder]
        for n in nodes:
            executor.add_node(n)
        start = time.monotonic()
        with tqdm(desc="live demo (replay -> policy -> recorder)", unit="frame", disable=not progress) as bar:
            while not replay.finished and (duration_s is None or time.monotonic() - start < duration_s):
                executor.spin_once(timeout_sec=0.05)
                bar.update(replay.published - bar.n)
        end = time.monotonic() + 1.0  # let the last ticks reach the recorder
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        policy.shutdown()
        recorder.drain(executor)
        lossless = recorder.finish()
        live = _live_stats(policy, replay, lossless, time.monotonic() - start)
    finally:
        for n in nodes:
            n.destroy_node()
        rclpy.try_shutdown()

    parquet = out / "parquet"
    summary = bag_to_parquet(bag, parquet, progress=progress)
    combined, sheet, heatmap_frames = _render_heatmaps(bag, out, fps)
    features = _feature_summary(parquet, progress)
    if assets.has_sae():
        features["dataset_recording"] = str(_record_dataset_features(assets, out / "features", progress))
    report = {**live, "episode": episode, "heatmap_frames": heatmap_frames,
              "action_error": _action_error(parquet), "features": features,
              "converted": summary.lines(),
              "policy": str(assets.policy_dir), "dataset": str(assets.heldout_root)}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return DemoResult(out, bag, parquet, combined, sheet, report)


def _live_stats(policy, replay, lossless: bool, seconds: float) -> dict:
    h, stats = policy.health, policy.runner.stats
    ticks_ms = np.asarray(h.tick_s) * 1000.0
    return {
        "frames_replayed": replay.published, "ticks": h.ticks, "actions_published": h.actions,
        "skipped_ticks": h.skipped, "rejected_ticks": h.rejected, "mode": policy.runner.mode,
        "tick_latency_ms": {"mean": float(ticks_ms.mean()) if ticks_ms.size else None,
                            "p99": float(np.percentile(ticks_ms, 99)) if ticks_ms.size else None},
        "policy_latency_ms": stats.latency_summary(), "recorder_lossless": lossless,
        "seconds": round(seconds, 1),
    }


def _feature_summary(parquet: Path, progress: bool) -> dict:
    """Rank the live features of the run (the same analysis as `pai features analyse`)."""
    import pyarrow.parquet as pq

    from pai_ros.features.analyse import AnalyseSettings, analyse
    from pai_ros.features.results import ResultsDir

    table = pq.read_table(parquet / "features.parquet")
    if table.num_rows == 0:
        return {"messages": 0, "note": "no SAE features (the demo assets have no SAE)"}
    analysis = json.loads(analyse(ResultsDir(parquet), AnalyseSettings(top_features=10), progress=progress).read_text())
    rows = table.to_pydict()
    return {"messages": table.num_rows, "sae_id": rows["sae_id"][0], "ood_frames": int(sum(rows["is_ood"])),
            "ood_threshold": rows["ood_threshold"][0],
            "mean_reconstruction_error": float(sum(rows["reconstruction_error"]) / table.num_rows),
            "top_features": [f["feature"] for f in analysis["features"]]}


def _record_dataset_features(assets, out: Path, progress: bool) -> Path:
    """The SAE's features over held-out episodes, ranked with thumbnails: what `pai features ui` shows best.

    The live bag has per-tick features only; a dataset recording also keeps token-level codes, so
    the browser can show where in each image a feature fires.
    """
    from pai_ros.features.analyse import AnalyseSettings, analyse
    from pai_ros.features.record import record_features
    from pai_ros.features.results import ResultsDir
    from pai_ros.sae.commands import runner_for_activations
    from pai_ros.sae.model import load_sae
    from pai_ros.sae.ood import load_calibration

    from pai_ros.data.episodes import read_info

    episodes = list(range(min(DATASET_FEATURE_EPISODES, int(read_info(assets.heldout_root)["total_episodes"]))))
    loaded = load_sae(assets.sae_dir)
    calibration, _ = load_calibration(loaded.directory, loaded.sae_id)
    runner = runner_for_activations(assets.policy_dir, "cpu")
    try:
        record_features(runner, loaded, assets.heldout_root, episodes, out,
                        calibration=calibration, progress=progress)
    finally:
        runner.close()
    analyse(ResultsDir(out), AnalyseSettings(top_features=32), progress=progress)
    return out


def _action_error(parquet: Path) -> dict:
    """Predicted (action) vs recorded (recorded_action) actions joined on the observation stamp."""
    import pyarrow.parquet as pq

    actions_path, joints_path = parquet / "actions.parquet", parquet / "joint_states.parquet"
    if not actions_path.is_file() or not joints_path.is_file():
        return {"pairs": 0}
    predicted = {r["stamp_ns"]: r["position"] for r in pq.read_table(actions_path).to_pylist()}
    recorded = {r["stamp_ns"]: r["position"] for r in pq.read_table(joints_path).to_pylist()
                if r["topic"].endswith("recorded_action")}
    common = sorted(set(predicted) & set(recorded))
    if not common:
        return {"pairs": 0}
    err = np.abs(np.array([predicted[s] for s in common]) - np.array([recorded[s] for s in common]))
    return {"pairs": len(common), "mae": float(err.mean()), "mae_per_dim": err.mean(axis=0).tolist()}


def _render_heatmaps(bag: Path, out: Path, fps: float) -> tuple[Path, Path, int]:
    """Compose the recorded heatmap topics side by side: a combined MP4 and a contact sheet."""
    import cv2
    from rosbags.highlevel import AnyReader

    from pai_ros.imaging.convert import raw_to_rgb
    from pai_ros.media.video import Mp4Writer, even_size

    by_stamp: dict[int, dict[str, np.ndarray]] = {}
    with AnyReader([bag]) as reader:
        conns = [c for c in reader.connections if c.topic.endswith("/heatmap")]
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            cam = conn.topic.rstrip("/").split("/")[-2]
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            by_stamp.setdefault(stamp, {})[cam] = raw_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data)
    cams = sorted({c for frames in by_stamp.values() for c in frames})
    complete = [s for s in sorted(by_stamp) if all(c in by_stamp[s] for c in cams)]
    if not complete:
        raise UserError(f"no heatmap frames were recorded in {bag}; see the policy node's diagnostics in the bag")
    combined_path, sheet_path = out / "heatmaps_combined.mp4", out / "heatmaps_contact_sheet.png"
    tiles = []
    with Mp4Writer(combined_path, fps) as writer:
        for s in complete:
            row = np.concatenate([by_stamp[s][c] for c in cams], axis=1)
            writer.write(even_size(row))
            tiles.append(row)
    picks = np.linspace(0, len(tiles) - 1, num=min(12, len(tiles))).round().astype(int)
    cols = 4
    labelled = []
    for i in picks:
        t = tiles[i].copy()
        cv2.putText(t, f"t={i / fps:.2f}s", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        labelled.append(t)
    while len(labelled) % cols:
        labelled.append(np.zeros_like(labelled[0]))
    sheet = np.concatenate([np.concatenate(labelled[r:r + cols], axis=1) for r in range(0, len(labelled), cols)], axis=0)
    cv2.imwrite(str(sheet_path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))  # the I/O edge: OpenCV writes BGR
    return combined_path, sheet_path, len(complete)
