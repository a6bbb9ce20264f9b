"""The offline half of ``pai demo``: what is made from the live run's bag and the demo assets.

ROS-free: the bag is read with rosbags, so the same functions serve a bag recorded anywhere.
Heatmap topics become a combined MP4 and a contact sheet; the recorded features are ranked; the
demo SAE's features over held-out episodes are recorded for the browser; predicted actions are
compared with the recorded ones on their shared observation stamps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pai_ros.data.episodes import pick_evenly
from pai_ros.errors import UserError
from pai_ros.timestamps import header_ns

if TYPE_CHECKING:
    from pai_ros.demo.assets import DemoAssets

DATASET_FEATURE_EPISODES = 4  # held-out episodes recorded for the feature browser (about 20 s on 2 cores)


def analyse_live_features(parquet: Path, progress: bool) -> dict:
    """Rank the live features of the run (the same analysis as `pai features analyse`, written under
    ``parquet/analysis``) and summarise them and the OOD flags for the report."""
    import pyarrow.parquet as pq

    from pai_ros.features.analyse import AnalyseSettings, analyse
    from pai_ros.features.results import ResultsDir

    path = parquet / "features.parquet"
    # bag2parquet writes a table only for a topic that had messages: none means no SAE ran live.
    table = pq.read_table(path) if path.is_file() else None
    if table is None or table.num_rows == 0:
        return {"messages": 0, "note": "no SAE features (the policy node published none: the demo assets have no SAE, "
                                       "or it did not load)"}
    analysis = json.loads(analyse(ResultsDir(parquet), AnalyseSettings(top_features=10), progress=progress).read_text())
    rows = table.to_pydict()
    # NaN compares false: messages without a camera-state score count as agreeing.
    disagree = sum(s > t for s, t in zip(rows["camera_state_score"], rows["camera_state_threshold"]))
    over_own: dict[str, int] = {}  # per camera: messages where it alone was over its own threshold
    for cameras, scores in zip(rows["camera_state_cameras"], rows["camera_state_camera_scores"]):
        for camera, score in zip(cameras, scores):
            over_own[camera] = over_own.get(camera, 0) + int(score > 1.0)
    return {"messages": table.num_rows, "sae_id": rows["sae_id"][0], "ood_frames": int(sum(rows["is_ood"])),
            "camera_state_scored": int(sum(s == s for s in rows["camera_state_score"])),
            "cameras_disagree_frames": int(disagree),
            "camera_over_own_threshold_frames": over_own,
            "ood_threshold": rows["ood_threshold"][0],
            "mean_reconstruction_error": float(sum(rows["reconstruction_error"]) / table.num_rows),
            "top_features": [f["feature"] for f in analysis["features"]]}


def record_dataset_features(assets: DemoAssets, out: Path, progress: bool) -> Path:
    """The SAE's features over held-out episodes, ranked with thumbnails: what `pai features ui` shows best.

    The live bag has per-tick features only; a dataset recording also keeps token-level codes, so
    the browser can show where in each image a feature fires.
    """
    from pai_ros.data.episodes import read_info
    from pai_ros.features.analyse import AnalyseSettings, analyse
    from pai_ros.features.record import record_features
    from pai_ros.features.results import ResultsDir
    from pai_ros.policy.runner import activations_runner
    from pai_ros.sae.model import load_sae
    from pai_ros.sae.ood import load_calibration

    episodes = list(range(min(DATASET_FEATURE_EPISODES, int(read_info(assets.heldout_root)["total_episodes"]))))
    loaded = load_sae(assets.sae_dir)
    calibration, _ = load_calibration(loaded.directory, loaded.sae_id)
    runner = activations_runner(assets.policy_dir, "cpu")
    try:
        record_features(runner, loaded, assets.heldout_root, episodes, out,
                        calibration=calibration, progress=progress)
    finally:
        runner.close()
    analyse(ResultsDir(out), AnalyseSettings(top_features=32), progress=progress)
    return out


def action_error(parquet: Path) -> dict:
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


@dataclass(frozen=True)
class BagOutputs:
    """What every live demo leaves next to its bag: Parquet tables, heatmap video and contact sheet."""

    parquet: Path
    converted: list[str]  # the converter's summary lines
    combined: Path
    sheet: Path
    heatmap_frames: int


def outputs_from_bag(bag: Path, out: Path, fps: float, progress: bool) -> BagOutputs:
    """Convert a demo's bag to Parquet (``out/parquet``) and render its heatmaps (one place for both demos)."""
    from pai_ros.bags.to_parquet import bag_to_parquet

    parquet = out / "parquet"
    summary = bag_to_parquet(bag, parquet, progress=progress)
    combined, sheet, heatmap_frames = render_heatmaps_from_bag(bag, out, fps)
    return BagOutputs(parquet, summary.lines(), combined, sheet, heatmap_frames)


#: The contact sheet: at most this many ticks, evenly spread, this many per row.
SHEET_TICKS, SHEET_COLUMNS = 12, 4


def _name_cameras(row: np.ndarray, widths: list[tuple[str, int]]) -> None:
    """Write each camera's name in the bottom-left corner of its part of a side-by-side row."""
    import cv2

    x = 0
    for name, width in widths:
        cv2.putText(row, name, (x + 4, row.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                    cv2.LINE_AA)
        x += width


def _attention_heatmap_camera(topic: str) -> str | None:
    """The camera of an attention heatmap topic (``[/ns]/attention/<camera>/heatmap``), else None."""
    parts = topic.strip("/").split("/")
    return parts[-2] if len(parts) >= 3 and parts[-3] == "attention" and parts[-1] == "heatmap" else None


def render_heatmaps_from_bag(bag: Path, out: Path, fps: float) -> tuple[Path, Path, int]:
    """Compose the recorded heatmap topics side by side: a combined MP4 and a contact sheet."""
    import cv2
    from rosbags.highlevel import AnyReader

    from pai_ros.imaging.convert import raw_to_rgb
    from pai_ros.media.png import write_png
    from pai_ros.media.video import Mp4Writer, even_size

    by_stamp: dict[int, dict[str, np.ndarray]] = {}
    methods: list[str] = []  # the policy node's heatmap_method, from its /diagnostics in the bag
    with AnyReader([bag]) as reader:
        # attention/<camera>/heatmap under any namespace; not features/feature_<F>/<camera>/heatmap.
        conns = [c for c in reader.connections if _attention_heatmap_camera(c.topic)]
        status = [c for c in reader.connections if c.msgtype == "diagnostic_msgs/msg/DiagnosticArray"]
        for conn, _, raw in reader.messages(connections=conns + status):
            msg = reader.deserialize(raw, conn.msgtype)
            cam = _attention_heatmap_camera(conn.topic)
            if cam is None:
                methods += [kv.value for st in msg.status for kv in st.values if kv.key == "heatmap_method"]
                continue
            stamp = header_ns(msg)
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
            _name_cameras(row, [(c, by_stamp[s][c].shape[1]) for c in cams])
            # Each frame at its stamp: skipped ticks hold the previous map, so the video plays in real time.
            writer.write(even_size(row), at_s=s / 1e9)
            tiles.append(row)
    picks = pick_evenly(len(tiles), SHEET_TICKS)
    cols = SHEET_COLUMNS
    labelled = []
    for i in picks:
        t = tiles[i].copy()
        # Time from the heatmaps' own stamps: ticks skipped on a busy machine leave gaps that a frame
        # count would hide (frames 0.27 s apart were labelled 0.07 s apart).
        since = (complete[i] - complete[0]) / 1e9
        cv2.putText(t, f"t={since:.2f}s", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                    cv2.LINE_AA)
        labelled.append(t)
    while len(labelled) % cols:
        labelled.append(np.full_like(labelled[0], 48))  # dark grey: no tick here (black would read as a frame)
    sheet = np.concatenate([np.concatenate(labelled[r:r + cols], axis=1) for r in range(0, len(labelled), cols)], axis=0)
    # What the picture is, on it: a sheet passed around without its bag must still say which method it shows.
    method = ", ".join(dict.fromkeys(methods)) or "method not in the bag's diagnostics"
    title = np.full((20, sheet.shape[1], 3), 24, np.uint8)
    cv2.putText(title, f"policy_node heatmaps, {method}: {len(picks)} of {len(complete)} ticks, t since the first",
                (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    write_png(sheet_path, np.concatenate([title, sheet], axis=0))
    return combined_path, sheet_path, len(complete)
