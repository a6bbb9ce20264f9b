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

Crash safety (``flush_period_s``, default 1 s): rosbags keeps the current MCAP chunk in memory
until it holds 1 MiB, so a recorder killed with SIGKILL (or an OOM kill, or a power cut of the
process) would lose minutes of low-rate topics and leave only whole chunks behind. This writer
closes the pending chunk and flushes the file to the operating system whenever its oldest
message is ``flush_period_s`` old (checked on every write), and whenever :meth:`BagWriter.flush`
is called (the recorder calls it from a ``flush_period_s`` timer, for the quiet times between
writes), so a kill loses at most the last ``flush_period_s`` of data. Flushing is to the OS page cache, not ``fsync``: it survives the process dying, not the
machine losing power. Each flush ends a chunk, so short periods mean more, smaller chunks (and
less zstd gain); 1 s keeps the index small (3600 chunk entries per hour). What a killed
recorder leaves (``OUT/OUT_k/OUT_k.mcap`` without summary or footer, no ``metadata.yaml``) is
turned into a complete bag by ``pai bag recover`` (:mod:`pai_ros.bags.recover`).

Write errors (disk full, I/O error): the first ``OSError`` while writing ends the bag. The
current file is cut back to its last flushed byte (``os.truncate``, which works on a full disk),
so what is on disk is an exact prefix that ``pai bag recover`` reads, and every later
``write`` raises the same :class:`BagWriteError`; nothing is appended after a half-written record.

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

import contextlib
import errno
import os
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING

from rosbags.rosbag2 import Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin
from rosbags.rosbag2.storage_mcap import McapWriter
from ruamel.yaml import YAML

from pai_ros import __version__
from pai_ros.bags.errors import BagWriteError, UnknownMessageType
from pai_ros.bags.typestore import ensure_type, typestore
from pai_ros.errors import UserError
from pai_ros.path_args import expand_home
from pai_ros.require import require
from pai_ros.staging import staged_file

if TYPE_CHECKING:
    from rosbags.interfaces import Connection, Qos
    from rosbags.typesys.store import Typestore

COMPRESSIONS = ("none", "zstd")


@dataclass
class _Split:
    """One file of the bag while it is written."""

    index: int
    writer: Writer
    storage: McapWriter
    payload_bytes: int = 0
    connections: dict[tuple[str, str], Connection] = field(default_factory=dict)
    durable_bytes: int = 0  # the file up to here is flushed and ends on a record boundary
    pending_since: float | None = None  # monotonic time of the oldest message not yet flushed


class BagWriter:
    """A rosbag2 (MCAP) bag written from raw CDR bytes, with lazy topics and optional splits.

    ``write`` may be called from several threads. Topics are registered on their first message
    (or earlier with :meth:`add_topic`, which also records the publishers' QoS for playback and
    puts the topic in the bag even if no message ever comes).
    """

    def __init__(self, path: str | Path, *, compression: str = "none", max_bag_size_mb: float = 0,
                 version: int = 8, store: Typestore | None = None, flush_period_s: float = 1.0) -> None:
        self.path = expand_home(path)  # the recorder's output:=~/bags: no shell expands it there
        if compression not in COMPRESSIONS:
            raise UserError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")
        require("max_bag_size_mb", max_bag_size_mb, at_least=0, note=" (0: no splitting)")
        if version not in (8, 9):
            raise UserError(f"rosbag2 metadata version must be 8 or 9, got {version}")
        require("flush_period_s", flush_period_s, at_least=0, note=" (0: flush only full 1 MiB chunks)")
        if self.path.exists() or self.path.is_symlink():
            raise UserError(f"{self.path} already exists; refusing to overwrite a bag (choose a new path)")
        self.compression = compression
        self.max_bytes = int(max_bag_size_mb * 1024 * 1024)
        self.version = version
        self.flush_period_s = float(flush_period_s)
        self.error: BagWriteError | None = None
        self.store = store if store is not None else typestore()
        self._lock = threading.Lock()
        self._qos: dict[str, list[Qos]] = {}
        self._counts: dict[str, int] = {}
        self._types: dict[str, str] = {}
        self._done: list[dict] = []  # metadata of completed files
        self._files: list[Path] = []
        self._closed = False
        self._durable_counts: dict[str, int] = {}
        self._unflushed: dict[str, int] = {}
        self._durable_until_ns: int | None = None
        self._unflushed_last_ns: int | None = None
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

    @property
    def durable_counts(self) -> dict[str, int]:
        """Messages per topic that are on disk (flushed), i.e. survive the process being killed."""
        with self._lock:
            return dict(self._durable_counts)

    @property
    def durable_until_ns(self) -> int | None:
        """Bag time of the newest flushed message (None: nothing flushed yet)."""
        with self._lock:
            return self._durable_until_ns

    @property
    def current_file(self) -> Path:
        """The storage file being written (in its working directory until it is complete)."""
        name = self._split_name(self._split.index)
        return self.path / name / f"{name}.mcap"

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
            # Connected now, not on the first message: a subscribed topic that stays silent is in the bag too,
            # and flushed now: its channel record would otherwise wait in memory for the next chunk, so a
            # recorder killed before then left no trace of it for `pai bag recover`.
            if not self._closed and self.error is None and (topic, msgtype) not in self._split.connections:
                self._connect(topic, msgtype)
                try:
                    self._flush_locked()
                except OSError as exc:
                    raise self._fail(exc) from None

    def write(self, topic: str, msgtype: str, rawdata: bytes | memoryview, timestamp_ns: int) -> None:
        """Append one serialised (CDR) message as is; ``timestamp_ns`` is the bag (receive) time."""
        with self._lock:
            if self.error is not None:
                raise self.error
            if self._closed:
                raise RuntimeError(f"bag {self.path} is closed")
            size = len(rawdata)
            try:
                if self.max_bytes and self._split.payload_bytes and self._split.payload_bytes + size > self.max_bytes:
                    self._next_split()
                conn = self._split.connections.get((topic, msgtype))
                if conn is None:
                    conn = self._connect(topic, msgtype)
                split, chunks_before = self._split, len(self._split.storage.chunks)
                split.writer.write(conn, int(timestamp_ns), rawdata)
                split.payload_bytes += size
                self._counts[topic] = self._counts.get(topic, 0) + 1
                self._unflushed[topic] = self._unflushed.get(topic, 0) + 1
                self._unflushed_last_ns = int(timestamp_ns)
                if split.pending_since is None:
                    split.pending_since = time.monotonic()
                if len(split.storage.chunks) != chunks_before:  # rosbags closed a full chunk itself
                    self._flush_locked()
                elif self.flush_period_s and time.monotonic() - split.pending_since >= self.flush_period_s:
                    self._flush_locked()
            except OSError as exc:
                raise self._fail(exc) from None

    def flush(self) -> None:
        """End the pending chunk and hand the file to the OS: what was written survives a kill."""
        with self._lock:
            if self._closed or self.error is not None or self._split.pending_since is None:
                return  # nothing new since the last flush
            try:
                self._flush_locked()
            except OSError as exc:
                raise self._fail(exc) from None

    def close(self) -> None:
        """Finish the last file and write ``metadata.yaml``; a second call does nothing."""
        with self._lock:
            if self._closed:  # also after a write error: the bag was closed as far as possible then
                return
            try:
                self._finish_split()
            except OSError as exc:
                raise self._fail(exc) from None
            self._closed = True
            try:
                self._write_metadata()
            except OSError as exc:
                self.error = BagWriteError(
                    f"cannot write {self.path / 'metadata.yaml'}: {exc.strerror or exc}; the storage files are "
                    f"complete, `pai bag recover {self.path}` rebuilds the bag", exc.errno)
                raise self.error from None

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

    def _next_split(self) -> None:
        """Finish the current file and open the next, with every topic the bag has so far (each file lists
        all of them, as a silent topic would otherwise be in the first file only)."""
        done = self._split
        self._finish_split()
        self._split = self._open_split(done.index + 1)
        for topic, msgtype in done.connections:
            self._connect(topic, msgtype)

    def _split_name(self, index: int) -> str:
        return f"{self.path.name}_{index}"

    def _open_split(self, index: int) -> _Split:
        writer = Writer(self.path / self._split_name(index), version=self.version,
                        storage_plugin=StoragePlugin.MCAP)
        if self.compression == "zstd":
            writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        writer.set_custom_data("pai_ros.writer", f"pai_ros {__version__} BagWriter")
        writer.open()
        storage = writer.storage
        # Flushing reaches into rosbags' MCAP writer (pinned in requirements.txt): fail loudly here,
        # not silently lose crash safety, if a new rosbags changes it.
        if not (isinstance(storage, McapWriter) and hasattr(storage, "close_chunk") and hasattr(storage, "bio")
                and hasattr(storage, "chunks") and hasattr(storage.chunk, "msgs")):
            raise RuntimeError("unsupported rosbags version: its MCAP writer has no close_chunk/bio/chunks")
        storage.bio.flush()
        return _Split(index, writer, storage, durable_bytes=storage.bio.tell())

    def _flush_locked(self) -> None:
        """Close the pending chunk (if it holds messages) and flush; caller holds the lock."""
        split = self._split
        storage = split.storage
        if storage.chunk.bio.tell():  # messages, or only schema and channel records (a topic declared)
            storage.close_chunk()
        storage.bio.flush()
        split.durable_bytes = storage.bio.tell()
        split.pending_since = None
        for topic, n in self._unflushed.items():
            self._durable_counts[topic] = self._durable_counts.get(topic, 0) + n
        self._unflushed.clear()
        if self._unflushed_last_ns is not None:
            self._durable_until_ns = max(self._durable_until_ns or 0, self._unflushed_last_ns)
            self._unflushed_last_ns = None

    def _fail(self, exc: OSError) -> BagWriteError:
        """Stop writing for good after an OS error: cut the file back to its last flushed byte."""
        split = self._split
        if split.writer.storage is not None:  # the file is unfinished (rosbags drops it once complete)
            with contextlib.suppress(OSError):
                split.storage.bio.close()  # may try (and fail) to write its buffer: the truncate undoes it
            with contextlib.suppress(OSError):
                os.truncate(split.storage.path, split.durable_bytes)
            split.writer.storage = None  # rosbags must not try to finish this file
        self._closed = True
        reason = exc.strerror or str(exc)
        if exc.errno == errno.ENOSPC:
            reason = "no space left on device"
        self.error = BagWriteError(
            f"cannot write the bag {self.path}: {reason}; recording stopped, "
            f"{sum(self._durable_counts.values())} messages are on disk "
            f"(`pai bag recover {self.path}` makes them a complete bag)", exc.errno)
        return self.error

    def _finish_split(self) -> None:
        split = self._split
        workdir = self.path / self._split_name(split.index)
        # Flush first: if writing the summary then fails, every message is still on disk.
        self._flush_locked()
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
        with staged_file(self.path / "metadata.yaml") as tmp:  # a metadata.yaml is a complete one
            tmp.write_text(_yaml_dump({"rosbag2_bagfile_information": merged}), encoding="utf-8")


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
