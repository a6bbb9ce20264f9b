"""Convert a rosbag2 bag into Parquet tables and one H.264 MP4 per camera topic.

Why: bags are for replaying; analysis wants columns. Every table carries ``stamp_ns`` (the
message header stamp; policy outputs reuse the observation's stamp) and ``recv_ns`` (the bag
timestamp, i.e. receive time), so actions, features, frames and diagnostics join on stamps.

Memory stays bounded whatever the bag's size: messages stream from rosbags' reader (MCAP chunks
are decompressed as they are reached), tables are written in row groups of ``batch_rows``
rows with ``pyarrow.parquet.ParquetWriter``, frames go straight into the video encoder. The
only look-ahead is each camera's first :data:`FPS_PROBE_FRAMES` frames, buffered to estimate
its frame rate (median interval of their bag timestamps) before its MP4 is opened; the exact
time of every frame is in ``frames.parquet`` anyway.

Type definitions come from the bag itself where it embeds them (MCAP does; so a bag recorded
with an older message definition still decodes), else from :func:`pai_ros.bags.typestore.typestore`
(see :mod:`pai_ros.bags.embedded_types`).

Everything is written into the hidden ``.OUT.partial-<pid>`` next to ``OUT`` and renamed to ``OUT`` only when
complete, so an ``OUT`` directory is never half-written.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pai_ros.bags.embedded_types import bag_typestore, incompatibility
from pai_ros.bags.reading import (
    COMPRESSED_IMAGE,
    DIAGNOSTICS,
    FEATURES,
    IMAGE,
    JOINT_STATE,
    corrupt_bag,
    find_sources,
    open_reader,
    read_messages,
)
from pai_ros.errors import UserError
from pai_ros.features.tables import FEATURES_SCHEMA
from pai_ros.imaging.convert import message_to_rgb, resize_rgb
from pai_ros.imaging.errors import ImageConversionError
from pai_ros.jsonfile import json_text
from pai_ros.staging import (
    check_apart,
    check_replaceable,
    json_file_with,
    staged_directory,
    write_manifest,
)
from pai_ros.timestamps import header_ns

if TYPE_CHECKING:
    from rosbags.interfaces import Connection
    from rosbags.typesys.store import Typestore

HANDLED_TYPES = (FEATURES, JOINT_STATE, IMAGE, COMPRESSED_IMAGE, DIAGNOSTICS)

SUMMARY_FILE = "summary.json"  # every conversion writes it: what --overwrite may replace
FPS_PROBE_FRAMES = 16
DEFAULT_FPS = 30.0

_LIST_F64 = pa.list_(pa.float64())
_LIST_STR = pa.list_(pa.string())
_KEY_VALUES = pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())]))

_STAMPS = [("stamp_ns", pa.int64()), ("recv_ns", pa.int64()), ("topic", pa.string())]
SCHEMAS: dict[str, pa.Schema] = {
    "features": FEATURES_SCHEMA,
    "actions": pa.schema(_STAMPS + [("name", _LIST_STR), ("position", _LIST_F64)]),
    "joint_states": pa.schema(_STAMPS + [("name", _LIST_STR), ("position", _LIST_F64), ("velocity", _LIST_F64),
                                         ("effort", _LIST_F64)]),
    "frames": pa.schema([("topic", pa.string()), ("frame", pa.int64()), ("stamp_ns", pa.int64()),
                         ("recv_ns", pa.int64()), ("width", pa.int32()), ("height", pa.int32()),
                         ("encoding", pa.string()), ("video", pa.string())]),
    "diagnostics": pa.schema([("stamp_ns", pa.int64()), ("recv_ns", pa.int64()), ("topic", pa.string()),
                              ("name", pa.string()), ("level", pa.int32()), ("message", pa.string()),
                              ("hardware_id", pa.string()), ("values", _KEY_VALUES)]),
}


@dataclass
class VideoInfo:
    """One camera topic's MP4."""

    file: str
    frames: int
    fps: float
    width: int
    height: int


@dataclass
class ConversionSummary:
    """What a conversion wrote; also saved as ``summary.json`` in the output directory."""

    bag: str
    out: str
    messages: int = 0
    seconds: float = 0.0
    tables: dict[str, int] = field(default_factory=dict)          # file name -> rows
    videos: dict[str, VideoInfo] = field(default_factory=dict)    # topic -> its MP4
    skipped_frames: dict[str, dict[str, int]] = field(default_factory=dict)  # topic -> reason -> count
    unknown: dict[str, dict[str, Any]] = field(default_factory=dict)  # topic -> {type, messages, reason}
    # topic -> {listed, read}: the bag's index promised other counts than the storage held
    count_mismatch: dict[str, dict[str, int]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """One line per table and video, then skipped frames and unconverted topics."""
        out = [f"{name}: {rows} rows" for name, rows in self.tables.items()]
        out += [f"{v.file}: {v.frames} frames {v.width}x{v.height} at {v.fps:.2f} fps ({topic})"
                for topic, v in self.videos.items()]
        out += [f"skipped frames on {topic}: " + ", ".join(f"{n} {why}" for why, n in reasons.items())
                for topic, reasons in self.skipped_frames.items()]
        out += [f"not converted ({u['reason']}): {topic} [{u['type']}] {u['messages']} messages"
                for topic, u in self.unknown.items()]
        out += [f"warning: the bag lists {c['listed']} messages on {topic} but holds {c['read']}"
                for topic, c in self.count_mismatch.items()]
        return out

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------ entry point


def bag_to_parquet(bag: Path, out: Path, progress: bool = True, *, overwrite: bool = False,
                   videos: bool = True, batch_rows: int = 1000) -> ConversionSummary:
    """Convert ``bag`` (rosbag2 directory, or a single ``.mcap``/``.db3`` file) into ``out``.

    Writes ``features.parquet``, ``actions.parquet``, ``joint_states.parquet``,
    ``diagnostics.parquet``, ``frames.parquet`` and one MP4 per image topic (``videos=False``:
    no MP4s and no pixel decoding; ``frames.parquet`` then indexes the messages only), each
    only when the bag has such messages, plus ``summary.json``. Raises :class:`UserError` for a
    missing, unrecognised, truncated or corrupt bag and for an existing non-empty ``out``
    (unless ``overwrite``).
    """
    bag, out = Path(bag), Path(out)
    started = time.perf_counter()
    sources = find_sources(bag)
    checked = _check_output(bag, out, overwrite)  # a file added during the conversion is kept
    with staged_directory(out, checked=checked) as partial:
        summary = ConversionSummary(bag=str(bag), out=str(out))
        converter = _Converter(partial, summary, videos=videos, batch_rows=batch_rows)
        try:
            _convert(sources, bag, converter, progress)
        except BaseException:
            with contextlib.suppress(Exception):  # keep the original error, not a follow-up one
                converter.close()
            raise
        converter.close()
        summary.seconds = round(time.perf_counter() - started, 3)
        (partial / SUMMARY_FILE).write_text(json_text(summary.to_json()) + "\n", encoding="utf-8")
        write_manifest(partial)
    return summary


def _check_output(bag: Path, out: Path, overwrite: bool) -> set[str]:
    check_apart(out, {"bag": bag})
    return check_replaceable(out, overwrite, made_by="bag2parquet", what_marks_it=f"{SUMMARY_FILE} naming a bag",
                      is_mine=lambda d: json_file_with(d / SUMMARY_FILE, ("bag", "out", "messages", "tables")))


def _convert(sources: list[Path], bag: Path, conv: _Converter, progress: bool) -> None:
    from tqdm import tqdm

    from pai_ros.bags.typestore import typestore

    base = typestore()
    readers: list[tuple[Any, Typestore, list[Connection]]] = []
    try:
        for source in sources:
            reader = open_reader(source, bag)
            try:
                connections = list(reader.connections)
                store = bag_typestore(base, connections, HANDLED_TYPES)
                if reader.message_count:
                    conv.note_duration(max(reader.duration, 1) / 1e9)
            except Exception as exc:
                with contextlib.suppress(Exception):
                    reader.close()
                raise corrupt_bag(bag, exc) from None
            wanted = []
            for conn in connections:
                why = (incompatibility(store, base, conn.msgtype) if conn.msgtype in HANDLED_TYPES
                       else "unsupported type")
                if why is None:
                    wanted.append(conn)
                    conv.topic_count[conn.topic] = conv.topic_count.get(conn.topic, 0) + conn.msgcount
                else:
                    entry = conv.summary.unknown.setdefault(conn.topic, {"type": conn.msgtype, "messages": 0,
                                                                         "reason": why})
                    entry["messages"] += conn.msgcount
            readers.append((reader, store, wanted))
        total = sum(c.msgcount for _, _, wanted in readers for c in wanted)
        read: dict[str, int] = {}
        with tqdm(total=total, unit="msg", desc="bag2parquet", disable=not progress, file=sys.stderr,
                  dynamic_ncols=True) as bar:
            for reader, store, wanted in readers:
                if not wanted:
                    continue
                for conn, recv_ns, msg in read_messages(reader, wanted, store, bag):
                    conv.handle(conn.topic, conn.msgtype, recv_ns, msg)
                    read[conn.topic] = read.get(conn.topic, 0) + 1
                    bar.update()
        _check_counts(bag, conv, read)
    finally:
        for reader, _, _ in readers:
            with contextlib.suppress(Exception):
                reader.close()


def _check_counts(bag: Path, conv: _Converter, read: dict[str, int]) -> None:
    """Compare what the bag's index (metadata.yaml, MCAP summary) listed with what was read.

    Nothing read at all while messages were listed means the index describes other files (or
    other types) than the storage holds: an empty result would look like a complete conversion.
    """
    for topic, listed in conv.topic_count.items():
        if read.get(topic, 0) != listed:
            conv.summary.count_mismatch[topic] = {"listed": listed, "read": read.get(topic, 0)}
    listed_total = sum(conv.topic_count.values())
    if listed_total and not read:
        raise UserError(f"cannot read bag {bag}: its index lists {listed_total} messages on "
                        f"{', '.join(sorted(conv.topic_count))} but none are in the storage files "
                        "(metadata.yaml does not match them; `ros2 bag reindex` rebuilds it)")


# ------------------------------------------------------------------ writing


class _Table:
    """One Parquet file, written in row groups of ``batch_rows`` rows; created on first flush."""

    def __init__(self, path: Path, schema: pa.Schema, batch_rows: int) -> None:
        self.path, self.schema, self.batch_rows = path, schema, batch_rows
        self.columns: dict[str, list] = {f.name: [] for f in schema}
        self.pending = 0
        self.rows = 0
        self.writer: pq.ParquetWriter | None = None

    def append(self, **row: Any) -> None:
        for name, col in self.columns.items():
            col.append(row[name])
        self.pending += 1
        if self.pending >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        arrays = [_to_arrow(self.columns[f.name], f.type) for f in self.schema]
        batch = pa.Table.from_arrays(arrays, schema=self.schema)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, self.schema, compression="zstd")
        self.writer.write_table(batch)
        self.rows += self.pending
        self.pending = 0
        for col in self.columns.values():
            col.clear()

    def close(self) -> int:
        self.flush()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        return self.rows


def _to_arrow(values: list, typ: pa.DataType) -> pa.Array:
    """Fast path for list<number> columns (numpy arrays per row); pyarrow's inference otherwise."""
    if pa.types.is_list(typ) and (pa.types.is_integer(typ.value_type) or pa.types.is_floating(typ.value_type)):
        np_type = typ.value_type.to_pandas_dtype()
        parts = [np.asarray(v, dtype=np_type).ravel() for v in values]
        offsets = np.zeros(len(parts) + 1, dtype=np.int32)
        np.cumsum([len(p) for p in parts], out=offsets[1:])
        flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np_type)
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(flat, typ.value_type))
    return pa.array(values, type=typ)


def safe_file_stem(topic: str) -> str:
    """'/cam/front/image_raw' -> 'cam__front__image_raw' (no path separators, no odd characters)."""
    stem = "__".join(p for p in topic.split("/") if p)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", stem).lstrip(".")
    return stem or "root"


_MIN_FRAME_GAP_S = 1e-3  # frames received together are shown 1 ms apart (the MP4's times must increase)


class _VideoTrack:
    """One image topic's MP4: waits for FPS_PROBE_FRAMES frames to fix the nominal rate, then streams.

    Each frame is shown at its receive time (a variable frame rate): a camera that dropped frames
    or a heatmap topic with skipped ticks otherwise played shorter than it was recorded, and the
    video drifted away from the tables' ``recv_ns``.
    """

    def __init__(self, path: Path, fallback_fps: float) -> None:
        self.path = path
        self.fallback_fps = fallback_fps
        self.buffer: list[tuple[int, np.ndarray]] = []
        self.writer: Any = None
        self.size: tuple[int, int] | None = None
        self.frames = 0
        self.fps = fallback_fps
        self._last_s: float | None = None  # the time the previous frame was shown at

    def add(self, recv_ns: int, rgb: np.ndarray) -> None:
        from pai_ros.media.video import even_size

        rgb = even_size(rgb)
        if self.size is None:
            self.size = rgb.shape[:2]
        elif rgb.shape[:2] != self.size:  # the MP4 keeps the first size; frames.parquet keeps the real one
            rgb = resize_rgb(rgb, *self.size)
        self.frames += 1
        if self.writer is None:
            self.buffer.append((recv_ns, rgb))
            if len(self.buffer) >= FPS_PROBE_FRAMES:
                self._open()
        else:
            self._write(recv_ns, rgb)

    def _write(self, recv_ns: int, rgb: np.ndarray) -> None:
        at_s = recv_ns / 1e9
        if self._last_s is not None and at_s <= self._last_s + _MIN_FRAME_GAP_S:  # one receive time for two
            at_s = self._last_s + _MIN_FRAME_GAP_S  # frames (or a bag merged out of order): show it just after
        self.writer.write(rgb, at_s=at_s)
        self._last_s = at_s

    def _open(self) -> None:
        from pai_ros.media.video import Mp4Writer

        stamps = [t for t, _ in self.buffer]
        gaps = [b - a for a, b in itertools.pairwise(stamps) if b > a]
        if gaps:
            self.fps = min(240.0, max(1.0, 1e9 / statistics.median(gaps)))
        self.fps = round(self.fps, 3)
        self.writer = Mp4Writer(self.path, self.fps)
        for recv_ns, rgb in self.buffer:
            self._write(recv_ns, rgb)
        self.buffer.clear()

    def close(self) -> None:
        if self.writer is None and self.buffer:
            self._open()
        if self.writer is not None:
            self.writer.close()


class _Converter:
    """Routes each deserialised message to its table or video."""

    def __init__(self, out: Path, summary: ConversionSummary, *, videos: bool, batch_rows: int) -> None:
        self.out, self.summary, self.videos = out, summary, videos
        self.tables = {name: _Table(out / f"{name}.parquet", schema, batch_rows) for name, schema in SCHEMAS.items()}
        self.tracks: dict[str, _VideoTrack] = {}
        self.frame_index: dict[str, int] = {}
        self.video_names: dict[str, str] = {}
        self.topic_count: dict[str, int] = {}
        self.duration_s = 0.0
        self.handlers: dict[str, Callable[[str, int, Any], None]] = {
            FEATURES: self._features, JOINT_STATE: self._joint_state, IMAGE: self._image,
            COMPRESSED_IMAGE: self._image, DIAGNOSTICS: self._diagnostics}

    def note_duration(self, seconds: float) -> None:
        self.duration_s = max(self.duration_s, seconds)

    def handle(self, topic: str, msgtype: str, recv_ns: int, msg: Any) -> None:
        self.handlers[msgtype](topic, recv_ns, msg)
        self.summary.messages += 1

    @staticmethod
    def _stamp(msg: Any) -> int:
        return header_ns(msg)

    def _features(self, topic: str, recv_ns: int, m: Any) -> None:
        self.tables["features"].append(
            stamp_ns=self._stamp(m), recv_ns=recv_ns, topic=topic, sae_id=m.sae_id, num_features=m.num_features,
            feature_indices=m.feature_indices, activations=m.activations, token_counts=m.token_counts,
            num_tokens=m.num_tokens, mean_l0=m.mean_l0, reconstruction_error=m.reconstruction_error,
            ood_threshold=m.ood_threshold, is_ood=bool(m.is_ood),
            # Appended message fields: bags recorded with an older definition lack them.
            ood_score=getattr(m, "ood_score", math.nan),
            ood_score_threshold=getattr(m, "ood_score_threshold", math.nan),
            steered=bool(getattr(m, "steered", False)), steering_mode=getattr(m, "steering_mode", ""),
            steered_features=getattr(m, "steered_features", []), steering_values=getattr(m, "steering_values", []),
            camera_state_score=getattr(m, "camera_state_score", math.nan),
            camera_state_threshold=getattr(m, "camera_state_threshold", math.nan),
            camera_state_cameras=list(getattr(m, "camera_state_cameras", [])),
            camera_state_camera_scores=getattr(m, "camera_state_camera_scores", []))

    def _joint_state(self, topic: str, recv_ns: int, m: Any) -> None:
        common = {"stamp_ns": self._stamp(m), "recv_ns": recv_ns, "topic": topic, "name": list(m.name),
                  "position": m.position}
        if topic.rstrip("/").rsplit("/", 1)[-1] == "action":
            self.tables["actions"].append(**common)
        else:
            self.tables["joint_states"].append(**common, velocity=m.velocity, effort=m.effort)

    def _diagnostics(self, topic: str, recv_ns: int, m: Any) -> None:
        stamp = self._stamp(m)
        for s in m.status:
            self.tables["diagnostics"].append(
                stamp_ns=stamp, recv_ns=recv_ns, topic=topic, name=s.name, level=int(s.level), message=s.message,
                hardware_id=s.hardware_id, values=[{"key": kv.key, "value": kv.value} for kv in s.values])

    def _video_name(self, topic: str) -> str:
        if topic not in self.video_names:
            stem, taken, n = safe_file_stem(topic), set(self.video_names.values()), 1
            name = f"{stem}.mp4"
            while name in taken or name.removesuffix(".mp4") in SCHEMAS:
                n += 1
                name = f"{stem}_{n}.mp4"
            self.video_names[topic] = name
        return self.video_names[topic]

    def _skip(self, topic: str, reason: str) -> None:
        reasons = self.summary.skipped_frames.setdefault(topic, {})
        if reason not in reasons and len(reasons) >= 10:  # bounded: reasons can carry sizes
            reason = "other reasons"
        reasons[reason] = reasons.get(reason, 0) + 1

    def _image(self, topic: str, recv_ns: int, m: Any) -> None:
        compressed = not hasattr(m, "encoding")
        encoding = m.format if compressed else m.encoding
        width = height = None
        video = None
        if self.videos:
            try:
                rgb = message_to_rgb(m)
            except ImageConversionError as exc:
                self._skip(topic, str(exc))
                return
            height, width = rgb.shape[:2]
            video = self._video_name(topic)
            track = self.tracks.get(topic)
            if track is None:
                count = self.topic_count.get(topic, 0)
                fallback = count / self.duration_s if count > 1 and self.duration_s > 0 else DEFAULT_FPS
                track = self.tracks[topic] = _VideoTrack(self.out / video, min(240.0, max(1.0, fallback)))
            track.add(recv_ns, rgb)
        elif not compressed:
            width, height = int(m.width), int(m.height)
        index = self.frame_index.get(topic, 0)
        self.frame_index[topic] = index + 1
        self.tables["frames"].append(topic=topic, frame=index, stamp_ns=self._stamp(m), recv_ns=recv_ns,
                                     width=width, height=height, encoding=encoding, video=video)

    def close(self) -> None:
        errors: list[BaseException] = []
        for topic, track in self.tracks.items():
            try:
                track.close()
            except Exception as exc:  # keep closing the others; report the first
                errors.append(exc)
            if track.frames:
                h, w = track.size or (0, 0)
                self.summary.videos[topic] = VideoInfo(track.path.name, track.frames, track.fps, w, h)
        for name, table in self.tables.items():
            try:
                rows = table.close()
            except Exception as exc:
                errors.append(exc)
                continue
            if rows:
                self.summary.tables[f"{name}.parquet"] = rows
        if errors:
            raise errors[0]
