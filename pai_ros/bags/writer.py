"""Write raw CDR messages into a rosbag2 bag (MCAP storage) that ``ros2 bag play`` accepts.

Why not rosbag2_py: it is not installable here (no wheel), and the recorder must not depend on
a ROS distro being sourced. rosbags' rosbag2 ``Writer`` writes the same format from pure Python.

Layout (the rosbag2 convention for ``ros2 bag record --max-bag-size``): the bag is one
directory ``OUT/`` holding ``OUT_0.mcap``, ``OUT_1.mcap``, ... and one ``metadata.yaml`` that
lists every file. Each file is written by its own rosbags ``Writer`` in a working directory
``OUT/OUT_k/``; when a file is complete (size limit reached, or :meth:`BagWriter.close`) it is
moved up to ``OUT/OUT_k.mcap``. ``metadata.yaml`` is written last, atomically (temporary name,
then ``os.replace``), so a bag that has one is complete; after a crash the moved ``.mcap`` files
are each valid and ``ros2 bag reindex`` can rebuild the metadata.

Splitting counts the *uncompressed* payload bytes written into the current file (so with zstd
the files come out smaller than ``max_bag_size_mb``); a message is never split, and a single
message larger than the limit gets a file of its own.

Compression ``"zstd"`` is MCAP chunk compression (rosbags ``CompressionMode.STORAGE``), the
same as ``ros2 bag record -s mcap --storage-preset-profile zstd_fast``: it is invisible in
``metadata.yaml`` (``compression_mode: ''``) and every MCAP reader decompresses it, so playback
needs no ``rosbag2_compression_zstd`` plugin. (rosbag2's own ``file``/``message`` modes would.)

What ``ros2 bag play`` needs, and what this writer produces:

* Jazzy and Kilted: ``metadata.yaml`` with ``version`` <= 9, ``storage_identifier: mcap``,
  ``serialization_format: cdr`` per topic, ``offered_qos_profiles`` (v9: a YAML list with
  enum names; v8 and older: a YAML *string* with integer enums; both are read), and the
  ``rosbag2_storage_mcap`` plugin, which Jazzy and Kilted install with ``ros-<distro>-rosbag2``.
  Player QoS comes from ``offered_qos_profiles`` (an empty one means the player's defaults:
  reliable, volatile). Their metadata decoder reads version <= 8 QoS as integers, so v8 plays.
* Humble: its metadata decoder (yaml-cpp) reads ``offered_qos_profiles`` as a *string* and
  fails with "bad conversion" on v9's YAML list; it has no upper version check and ignores the
  keys it does not know (``type_description_hash``, ``custom_data``, ``ros_distro``). So
  version 8 is what Humble can play, and it needs ``ros-humble-rosbag2-storage-mcap``
  (Humble's default storage is sqlite3; the MCAP plugin is a separate package there).

We therefore write **version 8** by default: one bag for Humble, Iron, Jazzy and Kilted.
rosbags writes only versions 8 and 9 (``Writer(path, version=8|9, storage_plugin=MCAP)``);
``version=9`` is available for tools that insist on it. Verified here: rosbags and the
independent ``mcap``/``mcap_ros2`` readers read both versions back; the rosbag2 decoder
behaviour above is from reading rosbag2's ``yaml.hpp``/``qos.cpp`` sources (no ``ros2 bag``
can be installed on this machine).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING

from rosbags.rosbag2 import Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin
from ruamel.yaml import YAML

from pai_ros import __version__
from pai_ros.bags.typestore import ensure_type, typestore
from pai_ros.errors import UserError

if TYPE_CHECKING:
    from rosbags.interfaces import Connection, Qos
    from rosbags.typesys.store import Typestore

COMPRESSIONS = ("none", "zstd")


class UnknownMessageType(UserError):
    """No definition for a message type: it can be neither embedded nor played back."""


@dataclass
class _Split:
    """One file of the bag while it is written."""

    index: int
    writer: Writer
    payload_bytes: int = 0
    connections: dict[tuple[str, str], Connection] = field(default_factory=dict)


class BagWriter:
    """A rosbag2 (MCAP) bag written from raw CDR bytes, with lazy topics and optional splits.

    ``write`` may be called from several threads. Topics are registered on their first message
    (or earlier with :meth:`add_topic`, which also records the publishers' QoS for playback).
    """

    def __init__(self, path: str | Path, *, compression: str = "none", max_bag_size_mb: float = 0,
                 version: int = 8, store: Typestore | None = None) -> None:
        self.path = Path(path)
        if compression not in COMPRESSIONS:
            raise UserError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")
        if max_bag_size_mb < 0:
            raise UserError(f"max_bag_size_mb must be >= 0 (0: no splitting), got {max_bag_size_mb}")
        if version not in (8, 9):
            raise UserError(f"rosbag2 metadata version must be 8 or 9, got {version}")
        if self.path.exists() or self.path.is_symlink():
            raise UserError(f"{self.path} already exists; refusing to overwrite a bag (choose a new path)")
        self.compression = compression
        self.max_bytes = int(max_bag_size_mb * 1024 * 1024)
        self.version = version
        self.store = store if store is not None else typestore()
        self._lock = threading.Lock()
        self._qos: dict[str, list[Qos]] = {}
        self._counts: dict[str, int] = {}
        self._types: dict[str, str] = {}
        self._done: list[dict] = []  # metadata of completed files
        self._files: list[Path] = []
        self._closed = False
        try:
            self.path.mkdir(parents=True)
        except FileExistsError:
            raise UserError(f"{self.path} already exists; refusing to overwrite a bag (choose a new path)") from None
        self._split = self._open_split(0)

    # ------------------------------------------------------------------ public API

    @property
    def counts(self) -> dict[str, int]:
        """Messages written so far, per topic."""
        with self._lock:
            return dict(self._counts)

    @property
    def files(self) -> list[Path]:
        """The completed storage files, in order (all of them once closed)."""
        with self._lock:
            return list(self._files)

    @property
    def closed(self) -> bool:
        return self._closed

    def add_topic(self, topic: str, msgtype: str, offered_qos: Sequence[Qos] = ()) -> None:
        """Declare a topic's type and publisher QoS ahead of its first message.

        Optional: ``write`` registers unknown topics itself. Raises :class:`UnknownMessageType`
        when no definition of ``msgtype`` can be found (the bag could not be read back).
        """
        with self._lock:
            self._check_type(msgtype)
            self._qos[topic] = list(offered_qos)
            self._types.setdefault(topic, msgtype)
            self._counts.setdefault(topic, 0)

    def write(self, topic: str, msgtype: str, rawdata: bytes | memoryview, timestamp_ns: int) -> None:
        """Append one serialised (CDR) message as is; ``timestamp_ns`` is the bag (receive) time."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"bag {self.path} is closed")
            size = len(rawdata)
            if self.max_bytes and self._split.payload_bytes and self._split.payload_bytes + size > self.max_bytes:
                self._finish_split()
                self._split = self._open_split(self._split.index + 1)
            conn = self._split.connections.get((topic, msgtype))
            if conn is None:
                conn = self._connect(topic, msgtype)
            self._split.writer.write(conn, int(timestamp_ns), rawdata)
            self._split.payload_bytes += size
            self._counts[topic] = self._counts.get(topic, 0) + 1

    def close(self) -> None:
        """Finish the last file and write ``metadata.yaml``; a second call does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._finish_split()
            self._write_metadata()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _check_type(self, msgtype: str) -> None:
        if msgtype not in self.store.fielddefs and not ensure_type(self.store, msgtype):
            raise UnknownMessageType(
                f"no definition for message type {msgtype} (not a standard Kilted type and no "
                f"share/{msgtype.split('/')[0]}/msg/ of an installed package has it)")

    def _connect(self, topic: str, msgtype: str) -> Connection:
        self._check_type(msgtype)
        conn = self._split.writer.add_connection(topic, msgtype, typestore=self.store,
                                                 offered_qos_profiles=self._qos.get(topic, []))
        self._split.connections[(topic, msgtype)] = conn
        self._types.setdefault(topic, msgtype)
        return conn

    def _split_name(self, index: int) -> str:
        return f"{self.path.name}_{index}"

    def _open_split(self, index: int) -> _Split:
        writer = Writer(self.path / self._split_name(index), version=self.version,
                        storage_plugin=StoragePlugin.MCAP)
        if self.compression == "zstd":
            writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        writer.set_custom_data("pai_ros.writer", f"pai_ros {__version__} BagWriter")
        writer.open()
        return _Split(index, writer)

    def _finish_split(self) -> None:
        split = self._split
        workdir = self.path / self._split_name(split.index)
        split.writer.close()
        meta = _yaml_load((workdir / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        (name,) = meta["relative_file_paths"]
        target = self.path / name
        os.replace(workdir / name, target)
        shutil.rmtree(workdir)
        self._done.append(meta)
        self._files.append(target)

    def _write_metadata(self) -> None:
        merged = merge_metadata(self._done)
        tmp = self.path / "metadata.yaml.tmp"
        tmp.write_text(_yaml_dump({"rosbag2_bagfile_information": merged}), encoding="utf-8")
        os.replace(tmp, self.path / "metadata.yaml")


def merge_metadata(parts: list[dict]) -> dict:
    """One ``rosbag2_bagfile_information`` for several files of the same bag (in order)."""
    first = parts[0]
    files, topics, order = [], {}, []
    starts, ends, total = [], [], 0
    for part in parts:
        files.extend(part["files"])
        total += part["message_count"]
        if part["message_count"]:
            start = part["starting_time"]["nanoseconds_since_epoch"]
            starts.append(start)
            ends.append(start + part["duration"]["nanoseconds"])
        for item in part["topics_with_message_count"]:
            key = (item["topic_metadata"]["name"], item["topic_metadata"]["type"])
            if key not in topics:
                topics[key] = {"topic_metadata": dict(item["topic_metadata"]), "message_count": 0}
                order.append(key)
            topics[key]["message_count"] += item["message_count"]
    merged = dict(first)
    merged.update({
        "relative_file_paths": [f["path"] for f in files],
        "files": files,
        "message_count": total,
        "starting_time": {"nanoseconds_since_epoch": min(starts) if starts else first["starting_time"]["nanoseconds_since_epoch"]},
        "duration": {"nanoseconds": (max(ends) - min(starts)) if starts else 0},
        "topics_with_message_count": [topics[k] for k in order],
    })
    return merged


def _yaml_load(text: str) -> dict:
    return YAML(typ="safe").load(text)


def _yaml_dump(data: dict) -> str:
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    out = StringIO()
    yaml.dump(data, out)
    return out.getvalue()
