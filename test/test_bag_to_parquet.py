"""bag_to_parquet: every supported type becomes the right table or video; bad input is one clear line.

Bags are made with BagWriter (no ROS needed), so these tests run everywhere.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
import tempfile
from datetime import timedelta
from importlib.machinery import SourceFileLoader
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers.fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pai_ros.bags.to_parquet import bag_to_parquet, safe_file_stem
from pai_ros.bags.typestore import FEATURE_ACTIVATIONS_TYPE, typestore
from pai_ros.bags.writer import BagWriter
from pai_ros.errors import UserError
from pai_ros.media.video import count_frames, frame_times

REPO = Path(__file__).resolve().parents[1]
STORE = typestore()
T = STORE.types
N = 20                      # messages per topic
PERIOD_NS = 50_000_000      # 20 Hz
T0 = 1_700_000_000_000_000_000

RED_RGB = (255, 0, 0)


def hdr(i: int):
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1000 + i, nanosec=500), frame_id="f")


def stamp_ns(i: int) -> int:
    return (1000 + i) * 1_000_000_000 + 500


def ser(msg, msgtype: str) -> bytes:
    return bytes(STORE.serialize_cdr(msg, msgtype))


def raw_image(i: int, encoding: str, pixels: np.ndarray, pad: int = 0):
    h, w = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    rows = pixels.reshape(h, w * channels)
    if pad:
        rows = np.hstack([rows, np.full((h, pad), 99, np.uint8)])  # row padding: step > width * channels
    return ser(T["sensor_msgs/msg/Image"](header=hdr(i), height=h, width=w, encoding=encoding, is_bigendian=0,
                                          step=w * channels + pad, data=rows.ravel()), "sensor_msgs/msg/Image")


def write_full_bag(path: Path, **writer_kwargs) -> Path:
    """One bag with every supported type, known colours and values, and one unsupported type."""
    red_rgb = np.zeros((31, 41, 3), np.uint8)
    red_rgb[...] = RED_RGB                       # odd size: padded to 32x42 for H.264
    red_bgr = red_rgb[:, :, ::-1].copy()         # the same red, stored as bgr8
    ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(red_bgr[:30, :40]))  # OpenCV encodes BGR
    assert ok
    KV, DS = T["diagnostic_msgs/msg/KeyValue"], T["diagnostic_msgs/msg/DiagnosticStatus"]
    with BagWriter(path, **writer_kwargs) as w:
        for i in range(N):
            t = T0 + i * PERIOD_NS
            w.write("/cam/front/image_raw", "sensor_msgs/msg/Image", raw_image(i, "rgb8", red_rgb), t)
            w.write("/cam/wrist/image_raw", "sensor_msgs/msg/Image", raw_image(i, "bgr8", red_bgr, pad=5), t + 1)
            w.write("/cam/side/image_raw/compressed", "sensor_msgs/msg/CompressedImage",
                    ser(T["sensor_msgs/msg/CompressedImage"](header=hdr(i), format="jpeg", data=jpeg.ravel()),
                        "sensor_msgs/msg/CompressedImage"), t + 2)
            w.write("/attention/front/heatmap", "sensor_msgs/msg/Image",
                    raw_image(i, "mono8", np.full((16, 20), 200, np.uint8)), t + 3)
            w.write("/cam/depth", "sensor_msgs/msg/Image", raw_image(i, "32FC1", np.zeros((2, 8), np.uint8)), t + 3)
            js = T["sensor_msgs/msg/JointState"](header=hdr(i), name=["x", "y"], position=np.array([i, 2.0 * i]),
                                                 velocity=np.array([0.5, -0.5]), effort=np.array([1.0, 2.0]))
            w.write("/joint_states", "sensor_msgs/msg/JointState", ser(js, "sensor_msgs/msg/JointState"), t + 4)
            act = T["sensor_msgs/msg/JointState"](header=hdr(i), name=["x", "y"], position=np.array([-i, 0.25]),
                                                  velocity=np.array([], float), effort=np.array([], float))
            w.write("/robot/action", "sensor_msgs/msg/JointState", ser(act, "sensor_msgs/msg/JointState"), t + 5)
            fa = T[FEATURE_ACTIVATIONS_TYPE](
                header=hdr(i), sae_id="sae-abc", num_features=4096, feature_indices=np.array([i, 7, 4095], np.uint32),
                activations=np.array([3.5, 1.25, 0.125], np.float32), token_counts=np.array([12, 3, 1], np.uint32),
                num_tokens=42, mean_l0=7.5, reconstruction_error=0.0625,
                ood_threshold=math.nan if i % 2 else 0.5, is_ood=i % 2 == 0,
                ood_score=1.5 * i, ood_score_threshold=4.0, steered=i == 3, steering_mode="ablate" if i == 3 else "",
                steered_features=np.array([7] if i == 3 else [], np.uint32),
                steering_values=np.array([0.0] if i == 3 else [], np.float32), steering_remaining_s=0.5,
                camera_state_score=0.25 * i, camera_state_threshold=2.0, camera_state_cameras=["front", "wrist"],
                camera_state_camera_scores=np.array([0.5 * i, 0.0], np.float32))
            w.write("/features", FEATURE_ACTIVATIONS_TYPE, ser(fa, FEATURE_ACTIVATIONS_TYPE), t + 6)
            diag = T["diagnostic_msgs/msg/DiagnosticArray"](header=hdr(i), status=[
                DS(level=2, name="pai/policy", message="stale", hardware_id="gpu0",
                   values=[KV(key="tick", value=str(i)), KV(key="ok", value="false")]),
                DS(level=0, name="pai/camera", message="", hardware_id="", values=[])])
            w.write("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray",
                    ser(diag, "diagnostic_msgs/msg/DiagnosticArray"), t + 7)
            w.write("/chatter", "std_msgs/msg/String", ser(T["std_msgs/msg/String"](data=f"hi {i}"), "std_msgs/msg/String"),
                    t + 8)
    return path


@pytest.fixture(scope="module")
def full_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_full_bag(tmp_path_factory.mktemp("bags") / "full")


@pytest.fixture(scope="module")
def converted(full_bag: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("out") / "parquet"
    return out, bag_to_parquet(full_bag, out, progress=False)


def table(out: Path, name: str) -> list[dict]:
    return pq.read_table(out / f"{name}.parquet").to_pylist()


def mean_colour(video: Path, frame: int = 0) -> np.ndarray:
    import av

    with av.open(str(video)) as container:
        for k, f in enumerate(container.decode(video=0)):
            if k == frame:
                rgb = f.to_ndarray(format="rgb24")
                h, w = rgb.shape[:2]
                return rgb[h // 4: 3 * h // 4, w // 4: 3 * w // 4].reshape(-1, 3).mean(axis=0)
    raise AssertionError("frame not found")


def assert_red(colour: np.ndarray) -> None:
    r, g, b = colour
    assert r > 200 and g < 50 and b < 50, f"expected red, got RGB {colour}"


# ------------------------------------------------------------------ tables


def test_outputs_are_exactly_the_expected_files(converted) -> None:
    out, summary = converted
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "features.parquet", "actions.parquet", "joint_states.parquet", "diagnostics.parquet", "frames.parquet",
        "cam__front__image_raw.mp4", "cam__wrist__image_raw.mp4", "cam__side__image_raw__compressed.mp4",
        "attention__front__heatmap.mp4", "summary.json", ".pai_written.json"])
    assert not list(out.parent.glob("*.partial-*"))
    # The manifest lists exactly what the conversion wrote (what a later --overwrite may delete).
    written = json.loads((out / ".pai_written.json").read_text())
    assert sorted(written) == sorted(p.name for p in out.iterdir() if p.name != ".pai_written.json")
    assert summary.tables == {"features.parquet": N, "actions.parquet": N, "joint_states.parquet": N,
                              "diagnostics.parquet": 2 * N, "frames.parquet": 4 * N}
    assert summary.unknown == {"/chatter": {"type": "std_msgs/msg/String", "messages": N, "reason": "unsupported type"}}
    assert list(summary.skipped_frames) == ["/cam/depth"]
    ((reason, count),) = summary.skipped_frames["/cam/depth"].items()
    assert "32FC1" in reason and count == N
    assert summary.messages == 9 * N
    saved = json.loads((out / "summary.json").read_text())
    assert saved["tables"] == summary.tables and saved["unknown"] == summary.unknown
    assert saved["videos"]["/cam/front/image_raw"]["frames"] == N
    lines = summary.lines()
    assert "features.parquet: 20 rows" in lines
    assert any(s.startswith("not converted (unsupported type): /chatter [std_msgs/msg/String] 20") for s in lines)


def test_features_table(converted) -> None:
    out, _ = converted
    schema = pq.read_schema(out / "features.parquet")
    assert [f"{f.name}:{f.type}" for f in schema] == [
        "stamp_ns:int64", "recv_ns:int64", "topic:string", "sae_id:string", "num_features:uint32",
        "feature_indices:list<element: uint32>", "activations:list<element: float>",
        "token_counts:list<element: uint32>", "num_tokens:uint32", "mean_l0:float", "reconstruction_error:float",
        "ood_threshold:float", "is_ood:bool", "ood_score:float", "ood_score_threshold:float", "steered:bool",
        "steering_mode:string", "steered_features:list<element: uint32>", "steering_values:list<element: float>",
        "camera_state_score:float", "camera_state_threshold:float", "camera_state_cameras:list<element: string>",
        "camera_state_camera_scores:list<element: float>"]
    rows = table(out, "features")
    assert [r["stamp_ns"] for r in rows] == [stamp_ns(i) for i in range(N)]
    assert [r["recv_ns"] for r in rows] == [T0 + i * PERIOD_NS + 6 for i in range(N)]
    r = rows[3]
    assert (r["topic"], r["sae_id"], r["num_features"], r["feature_indices"], r["activations"], r["token_counts"]) == (
        "/features", "sae-abc", 4096, [3, 7, 4095], [3.5, 1.25, 0.125], [12, 3, 1])
    assert (r["num_tokens"], r["mean_l0"], r["reconstruction_error"], r["is_ood"]) == (42, 7.5, 0.0625, False)
    assert math.isnan(r["ood_threshold"]) and rows[2]["ood_threshold"] == 0.5 and rows[2]["is_ood"]
    assert (r["ood_score"], r["ood_score_threshold"], r["steered"], r["steering_mode"], r["steered_features"],
            r["steering_values"]) == (4.5, 4.0, True, "ablate", [7], [0.0])
    assert (r["camera_state_score"], r["camera_state_threshold"]) == (0.75, 2.0)
    assert (r["camera_state_cameras"], r["camera_state_camera_scores"]) == (["front", "wrist"], [1.5, 0.0])
    assert not rows[2]["steered"] and rows[2]["steered_features"] == [] and rows[2]["steering_mode"] == ""


def test_actions_and_joint_states_tables(converted) -> None:
    out, _ = converted
    actions, states = table(out, "actions"), table(out, "joint_states")
    assert list(actions[0]) == ["stamp_ns", "recv_ns", "topic", "name", "position"]
    assert list(states[0]) == ["stamp_ns", "recv_ns", "topic", "name", "position", "velocity", "effort"]
    assert actions[4] == {"stamp_ns": stamp_ns(4), "recv_ns": T0 + 4 * PERIOD_NS + 5, "topic": "/robot/action",
                          "name": ["x", "y"], "position": [-4.0, 0.25]}
    assert states[4] == {"stamp_ns": stamp_ns(4), "recv_ns": T0 + 4 * PERIOD_NS + 4, "topic": "/joint_states",
                         "name": ["x", "y"], "position": [4.0, 8.0], "velocity": [0.5, -0.5], "effort": [1.0, 2.0]}
    # Keyed by stamp: actions join features one to one.
    features = {r["stamp_ns"] for r in table(out, "features")}
    assert {r["stamp_ns"] for r in actions} == features


def test_diagnostics_table(converted) -> None:
    out, _ = converted
    rows = table(out, "diagnostics")
    assert len(rows) == 2 * N
    assert rows[2] == {"stamp_ns": stamp_ns(1), "recv_ns": T0 + PERIOD_NS + 7, "topic": "/diagnostics",
                       "name": "pai/policy", "level": 2, "message": "stale", "hardware_id": "gpu0",
                       "values": [{"key": "tick", "value": "1"}, {"key": "ok", "value": "false"}]}
    assert rows[3]["values"] == [] and rows[3]["level"] == 0


def test_frames_index_and_videos(converted) -> None:
    out, summary = converted
    rows = table(out, "frames")
    by_topic: dict[str, list[dict]] = {}
    for r in rows:
        by_topic.setdefault(r["topic"], []).append(r)
    expect = {"/cam/front/image_raw": ("cam__front__image_raw.mp4", 41, 31, "rgb8"),
              "/cam/wrist/image_raw": ("cam__wrist__image_raw.mp4", 41, 31, "bgr8"),
              "/cam/side/image_raw/compressed": ("cam__side__image_raw__compressed.mp4", 40, 30, "jpeg"),
              "/attention/front/heatmap": ("attention__front__heatmap.mp4", 20, 16, "mono8")}
    assert set(by_topic) == set(expect)
    for topic, (video, w, h, enc) in expect.items():
        frames = by_topic[topic]
        assert [f["frame"] for f in frames] == list(range(N))
        assert [f["stamp_ns"] for f in frames] == [stamp_ns(i) for i in range(N)]
        assert {(f["width"], f["height"], f["encoding"], f["video"]) for f in frames} == {(w, h, enc, video)}
        assert count_frames(out / video) == N
        info = summary.videos[topic]
        assert info.frames == N and info.fps == pytest.approx(20.0)
        assert (info.width, info.height) == (w + w % 2, h + h % 2)


def test_a_camera_that_dropped_frames_plays_as_long_as_it_was_recorded(tmp_path: Path) -> None:
    # 20 Hz with every third frame lost, and two frames received at the same time: each frame is shown
    # when it arrived, so the video lasts as the recording did and keeps in step with recv_ns.
    pixels = np.full((16, 20, 3), 90, np.uint8)
    kept = [i for i in range(30) if i % 3 != 2]
    with BagWriter(tmp_path / "bag") as w:
        for i in kept:
            w.write("/cam/image_raw", "sensor_msgs/msg/Image", raw_image(i, "rgb8", pixels), T0 + i * PERIOD_NS)
        w.write("/cam/image_raw", "sensor_msgs/msg/Image", raw_image(30, "rgb8", pixels), T0 + kept[-1] * PERIOD_NS)
    bag_to_parquet(tmp_path / "bag", tmp_path / "out", progress=False)
    times = frame_times(tmp_path / "out" / "cam__image_raw.mp4")
    assert len(times) == len(kept) + 1
    expected = [(i - kept[0]) * PERIOD_NS / 1e9 for i in kept]
    assert times[:-1] == pytest.approx(expected, abs=1e-4)
    assert times[-1] == pytest.approx(expected[-1] + 1e-3, abs=1e-4)  # received with the one before: just after


def test_red_stays_red_from_rgb8_bgr8_and_jpeg(converted) -> None:
    out, _ = converted
    for video in ("cam__front__image_raw.mp4", "cam__wrist__image_raw.mp4", "cam__side__image_raw__compressed.mp4"):
        assert_red(mean_colour(out / video, frame=0))
        assert_red(mean_colour(out / video, frame=N - 1))
    grey = mean_colour(out / "attention__front__heatmap.mp4")
    assert np.all(np.abs(grey - 200) < 12), grey


def test_parquet_only_conversion(full_bag: Path, tmp_path: Path) -> None:
    summary = bag_to_parquet(full_bag, tmp_path / "o", progress=False, videos=False)
    assert not list((tmp_path / "o").glob("*.mp4")) and summary.videos == {}
    frames = table(tmp_path / "o", "frames")
    assert len(frames) == 5 * N  # no pixel decoding: the unsupported encoding is indexed too
    first = {r["topic"]: r for r in frames if r["frame"] == 0}
    assert (first["/cam/wrist/image_raw"]["width"], first["/cam/wrist/image_raw"]["video"]) == (41, None)
    assert first["/cam/side/image_raw/compressed"]["width"] is None


def test_small_row_groups_stream(full_bag: Path, tmp_path: Path) -> None:
    bag_to_parquet(full_bag, tmp_path / "o", progress=False, videos=False, batch_rows=7)
    meta = pq.ParquetFile(tmp_path / "o" / "features.parquet").metadata
    assert meta.num_rows == N and meta.num_row_groups == math.ceil(N / 7)


def test_split_zstd_bag_and_single_files(tmp_path: Path) -> None:
    bag = write_full_bag(tmp_path / "split", compression="zstd", max_bag_size_mb=0.005)
    assert len(list(bag.glob("*.mcap"))) > 2
    summary = bag_to_parquet(bag, tmp_path / "o", progress=False)
    assert summary.tables["features.parquet"] == N and summary.videos["/cam/front/image_raw"].frames == N
    # One storage file on its own, and a directory that lost its metadata.yaml, convert too.
    one = sorted(bag.glob("*.mcap"))[0]
    assert bag_to_parquet(one, tmp_path / "o1", progress=False).messages > 0
    (bag / "metadata.yaml").unlink()
    assert bag_to_parquet(bag, tmp_path / "o2", progress=False).tables == summary.tables


def test_eleven_or_more_split_files_without_metadata_are_read_in_recording_order(tmp_path: Path) -> None:
    """Split files sort by number: as text, bag_10 and bag_11 would come between bag_1 and bag_2."""
    from pai_ros.bags.reading import find_sources

    bag = tmp_path / "split"
    with BagWriter(bag, max_bag_size_mb=0.00001) as w:  # every message is over the limit: a file each
        for i in range(12):
            act = T["sensor_msgs/msg/JointState"](header=hdr(i), name=["a"], position=np.array([i], float),
                                                  velocity=np.array([], float), effort=np.array([], float))
            w.write("/robot/action", "sensor_msgs/msg/JointState", ser(act, "sensor_msgs/msg/JointState"),
                    T0 + i * PERIOD_NS)
    (bag / "metadata.yaml").unlink()
    assert [p.name for p in find_sources(bag)] == [f"split_{k}.mcap" for k in range(12)]
    bag_to_parquet(bag, tmp_path / "o", progress=False, videos=False)
    assert [r["position"] for r in table(tmp_path / "o", "actions")] == [[float(i)] for i in range(12)]


def test_sqlite3_bag(tmp_path: Path) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer

    bag = tmp_path / "db"
    with Writer(bag, version=8, storage_plugin=StoragePlugin.SQLITE3) as w:
        conn = w.add_connection("/action", "sensor_msgs/msg/JointState", typestore=STORE)
        for i in range(5):
            js = T["sensor_msgs/msg/JointState"](header=hdr(i), name=["a"], position=np.array([i], float),
                                                 velocity=np.array([], float), effort=np.array([], float))
            w.write(conn, T0 + i, ser(js, "sensor_msgs/msg/JointState"))
    summary = bag_to_parquet(bag, tmp_path / "o", progress=False)
    assert summary.tables == {"actions.parquet": 5}
    assert [r["position"] for r in table(tmp_path / "o", "actions")] == [[float(i)] for i in range(5)]


def test_incompatible_definition_in_the_bag_is_listed_not_failed(tmp_path: Path) -> None:
    """A bag whose FeatureActivations lacks a field we read (or retypes one) is reported, not crashed on."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    old_def = "std_msgs/Header header\nstring sae_id\nuint32 num_features\nuint32[] feature_indices\n"
    old = get_typestore(Stores.ROS2_KILTED)
    old.register(get_types_from_msg(old_def, FEATURE_ACTIVATIONS_TYPE))
    msgdef, _ = old.generate_msgdef(FEATURE_ACTIVATIONS_TYPE, ros_version=2)
    bag = tmp_path / "old"
    with Writer(bag, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection("/features", FEATURE_ACTIVATIONS_TYPE, msgdef=msgdef,
                                rihs01=old.hash_rihs01(FEATURE_ACTIVATIONS_TYPE))
        msg = old.types[FEATURE_ACTIVATIONS_TYPE](header=hdr(0), sae_id="s", num_features=3,
                                                  feature_indices=np.array([1], np.uint32))
        w.write(conn, T0, bytes(old.serialize_cdr(msg, FEATURE_ACTIVATIONS_TYPE)))
        js = w.add_connection("/action", "sensor_msgs/msg/JointState", typestore=STORE)
        w.write(js, T0, ser(T["sensor_msgs/msg/JointState"](header=hdr(0), name=["a"], position=np.array([1.0]),
                                                            velocity=np.array([], float), effort=np.array([], float)),
                            "sensor_msgs/msg/JointState"))
    summary = bag_to_parquet(bag, tmp_path / "o", progress=False)
    assert summary.tables == {"actions.parquet": 1}
    assert summary.unknown == {"/features": {"type": FEATURE_ACTIVATIONS_TYPE, "messages": 1, "reason":
                                             f"the bag's {FEATURE_ACTIVATIONS_TYPE} has no field activations"}}


def _bag_of_an_older_definition(tmp_path: Path, marker: str, **appended) -> Path:
    """A one-message features bag written with the message definition as it was before ``marker``."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    text = (Path(__file__).parents[1] / "msg" / "FeatureActivations.msg").read_text()
    old = get_typestore(Stores.ROS2_KILTED)
    old.register(get_types_from_msg(text.split(marker)[0], FEATURE_ACTIVATIONS_TYPE))
    msgdef, _ = old.generate_msgdef(FEATURE_ACTIVATIONS_TYPE, ros_version=2)
    bag = tmp_path / "old"
    with Writer(bag, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection("/features", FEATURE_ACTIVATIONS_TYPE, msgdef=msgdef,
                                rihs01=old.hash_rihs01(FEATURE_ACTIVATIONS_TYPE))
        msg = old.types[FEATURE_ACTIVATIONS_TYPE](
            header=hdr(0), sae_id="s", num_features=8, feature_indices=np.array([1], np.uint32),
            activations=np.array([2.0], np.float32), token_counts=np.array([3], np.uint32), num_tokens=5,
            mean_l0=1.0, reconstruction_error=0.25, ood_threshold=0.5, is_ood=False, **appended)
        w.write(conn, T0, bytes(old.serialize_cdr(msg, FEATURE_ACTIVATIONS_TYPE)))
    return bag


def test_bag_with_the_original_feature_message_converts_with_defaults(tmp_path: Path) -> None:
    """Bags recorded before the appended fields existed: same table, NaN score, not steered."""
    bag = _bag_of_an_older_definition(tmp_path, "# ---- appended fields")
    bag_to_parquet(bag, tmp_path / "o", progress=False)
    (row,) = table(tmp_path / "o", "features")
    assert row["feature_indices"] == [1] and row["reconstruction_error"] == 0.25
    assert math.isnan(row["ood_score"]) and not row["steered"] and row["steered_features"] == []
    assert math.isnan(row["camera_state_score"]) and math.isnan(row["camera_state_threshold"])
    assert row["camera_state_cameras"] == [] and row["camera_state_camera_scores"] == []


def test_bag_from_before_the_camera_state_fields_converts_with_nan(tmp_path: Path) -> None:
    """Bags recorded with the steering fields but before camera_state_*: those two columns are NaN."""
    from helpers.feature_fields import appended_fields

    marker = "# ---- appended later: whether the cameras"
    text = (Path(__file__).parents[1] / "msg" / "FeatureActivations.msg").read_text()
    assert "steering_remaining_s" in text.split(marker)[0] and "camera_state" not in text.split(marker)[0]
    fields = {k: v for k, v in appended_fields().items() if not k.startswith("camera_state")}
    bag = _bag_of_an_older_definition(tmp_path, marker, **{**fields, "ood_score": 2.5})
    bag_to_parquet(bag, tmp_path / "o", progress=False)
    (row,) = table(tmp_path / "o", "features")
    assert row["ood_score"] == 2.5 and math.isnan(row["camera_state_score"])
    assert math.isnan(row["camera_state_threshold"]) and row["camera_state_cameras"] == []


def test_bag_from_before_the_per_camera_fields_converts_with_empty_lists(tmp_path: Path) -> None:
    """Bags recorded with camera_state_score but before each camera's: those two columns are empty lists."""
    from helpers.feature_fields import appended_fields

    marker = "# ---- appended later: which camera disagrees"
    text = (Path(__file__).parents[1] / "msg" / "FeatureActivations.msg").read_text()
    assert "camera_state_threshold" in text.split(marker)[0] and "camera_state_cameras" not in text.split(marker)[0]
    fields = {k: v for k, v in appended_fields().items() if not k.startswith("camera_state_camera")}
    bag = _bag_of_an_older_definition(tmp_path, marker, **{**fields, "camera_state_score": 1.5})
    bag_to_parquet(bag, tmp_path / "o", progress=False)
    (row,) = table(tmp_path / "o", "features")
    assert row["camera_state_score"] == 1.5 and row["camera_state_cameras"] == []
    assert row["camera_state_camera_scores"] == []


def test_topic_file_names_are_safe() -> None:
    assert safe_file_stem("/cam/front/image_raw") == "cam__front__image_raw"
    assert safe_file_stem("/../x y/z") == "__x_y__z"
    assert safe_file_stem("/") == "root"


# ------------------------------------------------------------------ bad input


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="bag not found"):
        bag_to_parquet(tmp_path / "nope", tmp_path / "o", progress=False)


def test_not_a_bag(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a rosbag2 bag"):
        bag_to_parquet(tmp_path / "empty", tmp_path / "o", progress=False)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="not a rosbag2 bag"):
        bag_to_parquet(tmp_path / "notes.txt", tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


def test_truncated_mcap_is_a_user_error_and_leaves_nothing(full_bag: Path, tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    shutil.copytree(full_bag, bag)
    mcap = bag / "full_0.mcap"
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        bag_to_parquet(bag, tmp_path / "o", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]


def test_existing_output(full_bag: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "o"
    out.mkdir()
    bag_to_parquet(full_bag, out, progress=False, videos=False)  # an empty directory is fine
    with pytest.raises(UserError, match="holds an earlier bag2parquet output; choose a new path or pass --overwrite"):
        bag_to_parquet(full_bag, out, progress=False)
    bag_to_parquet(full_bag, out, progress=False, overwrite=True)  # its own output: replaced
    assert (out / "cam__front__image_raw.mp4").exists()
    (out / "my_notes.txt").write_text("mine")  # added since: never deleted (it used to be)
    with pytest.raises(UserError, match=r"holds file\(s\) that bag2parquet did not write \(my_notes.txt\)"):
        bag_to_parquet(full_bag, out, progress=False, overwrite=True)
    assert (out / "my_notes.txt").read_text() == "mine"
    (out / "my_notes.txt").unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]
    # One added while the conversion runs (an hour, on a real bag) is carried into the new output, and
    # stays the user's: not in its manifest, so the next --overwrite refuses it as above.
    import pai_ros.bags.to_parquet as to_parquet
    convert = to_parquet._convert

    def _convert_while_the_user_adds_a_file(*args, **kwargs):
        (out / "my_notes.txt").write_text("added during the run")
        return convert(*args, **kwargs)

    monkeypatch.setattr(to_parquet, "_convert", _convert_while_the_user_adds_a_file)
    bag_to_parquet(full_bag, out, progress=False, overwrite=True)
    monkeypatch.undo()
    assert (out / "my_notes.txt").read_text() == "added during the run" and (out / "summary.json").exists()
    with pytest.raises(UserError, match=r"holds file\(s\) that bag2parquet did not write \(my_notes.txt\)"):
        bag_to_parquet(full_bag, out, progress=False, overwrite=True)
    (out / "my_notes.txt").unlink()
    # --overwrite replaces only an earlier conversion: a directory of other files, or a file, stays.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="is not an earlier bag2parquet output"):
        bag_to_parquet(full_bag, mine, progress=False, overwrite=True)
    (mine / "summary.json").write_text('{"method": "rollout"}')  # another command's summary is not a conversion
    with pytest.raises(UserError, match="is not an earlier bag2parquet output"):
        bag_to_parquet(full_bag, mine, progress=False, overwrite=True)
    (tmp_path / "file.txt").write_text("mine")
    with pytest.raises(UserError, match="exists and is not a directory; choose a new path"):
        bag_to_parquet(full_bag, tmp_path / "file.txt", progress=False, overwrite=True)
    assert (mine / "notes.txt").read_text() == "mine" and (tmp_path / "file.txt").read_text() == "mine"
    with pytest.raises(UserError, match="contains the bag"):
        bag_to_parquet(full_bag, full_bag.parent, progress=False, overwrite=True)


# ------------------------------------------------------------------ command line


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """`pai bag2parquet ...` as a real process: via conftest.run_pai once the command is wired into
    pai_ros/cli.py, else through the real `pai` main with this command registered on the fly."""
    from conftest import run_pai

    from pai_ros import cli
    from pai_ros.bags import commands

    if commands.register in cli._registrations():
        return run_pai("bag2parquet", *args, timeout=300)
    code = (
        "import sys\n"
        "import pai_ros.cli as cli\n"
        "from pai_ros.bags import commands\n"
        "regs = cli._registrations\n"
        "cli._registrations = lambda: [*regs(), commands.register]\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    return subprocess.run([sys.executable, "-c", code, "bag2parquet", *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO)


def test_cli_converts_and_prints_one_line_per_output(full_bag: Path, tmp_path: Path) -> None:
    res = run_cli(str(full_bag), str(tmp_path / "o"), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "features.parquet: 20 rows" in res.stdout and "pai bag2parquet: 180 messages" in res.stdout
    assert res.stderr == ""


@pytest.mark.parametrize("case", ["missing", "not_a_bag", "truncated", "not_empty"])
def test_cli_bad_input_is_one_line_and_exit_1(case: str, full_bag: Path, tmp_path: Path) -> None:
    bag, out = tmp_path / "bag", tmp_path / "o"
    if case == "not_a_bag":
        bag.mkdir()
        (bag / "x.txt").write_text("x")
    elif case == "truncated":
        shutil.copytree(full_bag, bag)
        (bag / "full_0.mcap").write_bytes((bag / "full_0.mcap").read_bytes()[:3000])
    elif case == "not_empty":
        shutil.copytree(full_bag, bag)
        out.mkdir()
        (out / "x").write_text("x")
    res = run_cli(str(bag), str(out))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pai bag2parquet: error: "), res.stderr
    assert "Traceback" not in res.stderr


def test_ros_launcher_drops_ros_args(full_bag: Path, tmp_path: Path) -> None:
    script = REPO / "scripts" / "ros" / "bag_to_parquet"
    loader = SourceFileLoader("bag_to_parquet_script", str(script))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    assert module._without_ros_args(["B", "--ros-args", "-r", "__node:=x", "--", "O", "--quiet"]) == ["B", "O", "--quiet"]
    assert module._without_ros_args(["B", "O", "--ros-args", "-p", "a:=1"]) == ["B", "O"]
    from pai_ros import cli
    from pai_ros.bags import commands

    if commands.register in cli._registrations():  # once wired into `pai`, the launcher runs end to end
        res = subprocess.run([sys.executable, str(script), str(full_bag), str(tmp_path / "o"), "--quiet",
                              "--ros-args", "-r", "__node:=b2p"], capture_output=True, text=True, timeout=300, cwd=REPO)
        assert res.returncode == 0, res.stderr
        assert (tmp_path / "o" / "features.parquet").exists()


# ------------------------------------------------------------------ fuzz


@pytest.fixture(scope="module")
def small_bag_bytes(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    """A small valid bag (a few of each type) as its MCAP bytes and metadata.yaml text."""
    bag = tmp_path_factory.mktemp("small") / "small"
    KV = T["diagnostic_msgs/msg/KeyValue"]
    DS = T["diagnostic_msgs/msg/DiagnosticStatus"]
    with BagWriter(bag) as w:
        for i in range(3):
            w.write("/cam", "sensor_msgs/msg/Image", raw_image(i, "rgb8", np.full((4, 6, 3), 9, np.uint8)), T0 + i)
            js = T["sensor_msgs/msg/JointState"](header=hdr(i), name=["a"], position=np.array([1.0]),
                                                 velocity=np.array([], float), effort=np.array([], float))
            w.write("/action", "sensor_msgs/msg/JointState", ser(js, "sensor_msgs/msg/JointState"), T0 + i)
            diag = T["diagnostic_msgs/msg/DiagnosticArray"](header=hdr(i), status=[
                DS(level=0, name="n", message="m", hardware_id="h", values=[KV(key="k", value="v")])])
            w.write("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray",
                    ser(diag, "diagnostic_msgs/msg/DiagnosticArray"), T0 + i)
    return (bag / "small_0.mcap").read_bytes(), (bag / "metadata.yaml").read_text()


def _convert_expecting_user_error_or_success(files: dict[str, bytes], target: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bag = root / "bag"
        bag.mkdir()
        for name, data in files.items():
            (bag / name).write_bytes(data)
        try:
            bag_to_parquet(bag / target if target else bag, root / "out", progress=False)
        except UserError as exc:
            assert "\n" not in str(exc)
            assert not (root / "out").exists()
        assert not list(root.glob("out.partial-*"))


FUZZ = settings(max_examples=examples(40), deadline=timedelta(seconds=30),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(data=st.binary(max_size=4096), with_metadata=st.booleans())
def test_fuzz_random_bytes(small_bag_bytes, data: bytes, with_metadata: bool) -> None:
    files = {"small_0.mcap": b"\x89MCAP0\r\n" + data if data[:1] == b"\x00" else data}
    if with_metadata:
        files["metadata.yaml"] = small_bag_bytes[1].encode()
    _convert_expecting_user_error_or_success(files, "" if with_metadata else "small_0.mcap")


@FUZZ
@given(cut=st.floats(min_value=0.0, max_value=1.0), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)),
                                                                   max_size=4))
def test_fuzz_truncated_or_damaged_mcap(small_bag_bytes, cut: float, flips: list[tuple[float, int]]) -> None:
    data = bytearray(small_bag_bytes[0])
    for where, bit in flips:
        data[min(int(where * len(data)), len(data) - 1)] ^= 1 << bit
    data = bytes(data[: int(cut * len(data))]) if cut < 1.0 else bytes(data)
    _convert_expecting_user_error_or_success({"small_0.mcap": data, "metadata.yaml": small_bag_bytes[1].encode()}, "")
