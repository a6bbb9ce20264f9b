"""Salvage an interrupted recording: read MCAP files up to their first damage, write a complete bag.

What a recording that did not end cleanly leaves behind (the recorder killed with SIGKILL, an
OOM kill, a full disk, ``ros2 bag record`` killed alike):

* storage files without summary and footer, and no ``metadata.yaml``, so rosbag2 readers
  (rosbags, ``ros2 bag play``, ``pai bag2parquet``) refuse the bag;
* with :class:`pai_ros.bags.writer.BagWriter`, the file being written still sits in its working
  directory ``OUT/OUT_k/OUT_k.mcap``; earlier split files ``OUT/OUT_j.mcap`` are complete;
* possibly a half-written record at the end of the last file (killed mid-write, disk full).

:func:`recover_bag` reads every storage file *sequentially*, record by record, with a strict
parser (:mod:`pai_ros.bags.mcap_scan`; the indexed readers need the summary that is missing)
that stops a file at its first damage, so the result is an exact prefix of what was recorded
per file: no message after the damage, none corrupted in the middle. The salvaged
messages are written as a new, complete rosbag2 bag (one MCAP file, metadata v8, the recorded
topics' own message definitions and QoS), under a temporary name renamed when complete; the
damaged original is never modified. Like ``ros2 bag reindex``, but it also repairs a truncated
file instead of only rebuilding ``metadata.yaml``.

Only MCAP storage is handled; a sqlite3 bag (``.db3``) is refused with one line (its own
journal makes it a different problem, and ``ros2 bag reindex`` covers it).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pai_ros.bags.mcap_scan import Channel, FileScan, McapScanner, Schema
from pai_ros.bags.split_order import in_split_order
from pai_ros.errors import UserError
from pai_ros.staging import check_apart, remove_abandoned_staging, staging_path

PROGRESS_DELAY_S = 1.0  # a recovery that takes less prints no bar (nor a bar before a one-line error)


# ------------------------------------------------------------------ bags


def storage_files(bag: Path) -> list[Path]:
    """The MCAP files of a bag in recording order, including unfinished ones in working folders."""
    if not bag.exists():
        raise UserError(f"bag not found: {bag}")
    if bag.is_file():
        if bag.suffix != ".mcap":
            raise UserError(f"{bag} is not an MCAP file (pai bag recover reads MCAP storage only)")
        return [bag]
    top = [p for p in bag.iterdir() if p.is_file()]
    if any(p.suffix == ".db3" for p in top):
        raise UserError(f"{bag} is a sqlite3 bag; pai bag recover reads MCAP only (use `ros2 bag reindex`)")
    files = [p for p in top if p.suffix == ".mcap"]
    # BagWriter's working folders: OUT/OUT_k/OUT_k.mcap while file k is written.
    files += [d / f"{d.name}.mcap" for d in bag.iterdir() if d.is_dir() and (d / f"{d.name}.mcap").is_file()]
    if not files:
        raise UserError(f"{bag} holds no .mcap file to recover")
    return in_split_order(files)


def unfinished_files(bag: Path) -> list[Path]:
    """Storage files a recorder left unfinished (its working folders); cheap, reads no data."""
    if not bag.is_dir():
        return []
    return [d / f"{d.name}.mcap" for d in sorted(bag.iterdir())
            if d.is_dir() and (d / f"{d.name}.mcap").is_file() and not (d / "metadata.yaml").is_file()]


@dataclass
class TopicReport:
    topic: str
    msgtype: str
    messages: int = 0
    first_ns: int | None = None
    last_ns: int | None = None


@dataclass
class RecoveryReport:
    bag: Path
    output: Path | None
    files: list[FileScan] = field(default_factory=list)
    topics: dict[str, TopicReport] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # topic -> why its messages were left out
    # Per file of ``files``: the newest bag time recovered from it, and how many messages.
    file_ends: list[int | None] = field(default_factory=list)
    file_messages: list[int] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return sum(t.messages for t in self.topics.values())

    @property
    def complete_until_ns(self) -> int | None:
        """Bag time up to which the recovered data is complete: the newest message up to and including
        the first file whose messages were not all read. A split file damaged mid-way lost what was
        recorded after the damage, though later files were read (see ``after_gap``)."""
        newest: int | None = None
        for scan, end in zip(self.files, self.file_ends):
            if end is not None:
                newest = end if newest is None else max(newest, end)
            if not scan.data_complete:
                break
        return newest

    @property
    def after_gap(self) -> int:
        """Messages recovered from files after the first one whose messages were not all read."""
        damaged = next((i for i, scan in enumerate(self.files) if not scan.data_complete), len(self.files))
        return sum(self.file_messages[damaged + 1:])

    @property
    def was_complete(self) -> bool:
        return bool(self.files) and all(f.complete for f in self.files)

    def lines(self) -> list[str]:
        out = []
        for f in self.files:
            if f.complete:
                state = "complete"
            elif f.good_bytes == f.size:
                state = "unfinished (no summary or footer), every byte readable"
            elif f.data_complete:  # only the index after the messages is damaged
                state = f"every message readable; its index is damaged at byte {f.good_bytes} of {f.size} ({f.problem})"
            else:
                state = f"readable up to byte {f.good_bytes} of {f.size}, then {f.problem}"
            out.append(f"{f.path}: {f.messages} messages, {state}")
        for t in sorted(self.topics.values(), key=lambda t: t.topic):
            span = "" if t.first_ns is None else f", bag time {t.first_ns} .. {t.last_ns} ns"
            out.append(f"{t.topic} [{t.msgtype}]: {t.messages} messages recovered{span}")
        for topic, why in sorted(self.skipped.items()):
            out.append(f"{topic}: left out ({why})")
        return out


def _type_hash(msgtype: str, schema: Schema | None) -> str:
    """RIHS01 hash for metadata.yaml: from the bag's own definition, else from our type store."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from pai_ros.bags.typestore import ensure_type, typestore

    if schema is not None and schema.encoding == "ros2msg":
        try:
            store = get_typestore(Stores.EMPTY)
            store.register(get_types_from_msg(schema.data.decode("utf-8"), msgtype))
            return store.hash_rihs01(msgtype)
        except Exception:  # a definition rosbags cannot parse: fall back to ours below
            pass
    store = typestore()
    if msgtype in store.fielddefs or ensure_type(store, msgtype):
        return store.hash_rihs01(msgtype)
    raise UserError(f"no usable definition of {msgtype}")


def _qos(channel: Channel) -> list:
    from rosbags.rosbag2.metadata import parse_qos

    try:
        return parse_qos(channel.metadata.get("offered_qos_profiles", ""))
    except Exception:  # unreadable QoS: playback then uses its defaults (reliable, volatile)
        return []


def _add_connection(writer: Any, channel: Channel, schema: Schema | None) -> Any:
    """The output bag's connection for a recorded channel, with the recording's own definition and QoS;
    :class:`UserError` when its message type cannot be known."""
    if schema is None or not schema.name:
        raise UserError("the channel has no schema, so no message type")
    return writer.add_connection(channel.topic, schema.name, msgdef=schema.data.decode("utf-8", errors="replace"),
                                 rihs01=_type_hash(schema.name, schema),
                                 serialization_format=channel.encoding or "cdr", offered_qos_profiles=_qos(channel))


def _connect_silent(writer: Any, silent: dict[str, tuple[Channel, Schema | None]], report: RecoveryReport) -> None:
    """Connections for the recorded topics none of whose messages was read: the recovered bag lists them
    (with 0 messages) as the recording did, unless their type cannot be known (then they are left out)."""
    for topic, (channel, schema) in silent.items():
        if report.topics[topic].messages:  # its messages were in a later file
            continue
        try:
            _add_connection(writer, channel, schema)
        except UserError as exc:
            del report.topics[topic]
            report.skipped[topic] = str(exc)


def default_output(bag: Path) -> Path:
    name = bag.stem if bag.is_file() else bag.name
    return bag.parent / f"{name}_recovered"


def _readable_metadata(bag: Path) -> bool:
    """metadata.yaml is there and parses as a rosbag2 one (a damaged one makes the bag unreadable too)."""
    import yaml

    try:
        data = yaml.safe_load((bag / "metadata.yaml").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and isinstance(data.get("rosbag2_bagfile_information"), dict)


def recover_bag(bag: Path, output: Path | None = None, *, force: bool = False,
                progress: bool = False) -> RecoveryReport:
    """Write the readable prefix of every storage file of ``bag`` as a new complete bag ``output``.

    With ``force`` False, a bag whose files are all complete and that has ``metadata.yaml`` is
    left alone (report with ``output`` None). Raises :class:`UserError` for a missing or
    non-MCAP bag, an existing ``output``, or nothing readable at all. ``progress``: a bar over
    the bytes read, shown once the work has taken a second (a recording of camera images runs
    to gigabytes).
    """
    from rosbags.rosbag2 import Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin
    from tqdm import tqdm

    bag = Path(bag)
    files = storage_files(bag)
    out = Path(output) if output is not None else default_output(bag)
    if not force and bag.is_dir() and _readable_metadata(bag) and not unfinished_files(bag):
        scans = []
        for path in files:
            scanner = McapScanner(path)
            for _ in scanner.messages():
                pass
            scans.append(scanner.scan)
        if all(s.complete for s in scans):
            return RecoveryReport(bag, None, scans)
    if out.exists() or out.is_symlink():
        raise UserError(f"{out} already exists; choose another output (-o)")
    check_apart(out, {"bag": bag})
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(out)  # what a killed recover of the same output left (hidden, never reused)
    staging = staging_path(out)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    report = RecoveryReport(bag, out)
    opened = False
    bar = tqdm(total=sum(p.stat().st_size for p in files), unit="B", unit_scale=True, desc="pai bag recover",
               delay=PROGRESS_DELAY_S, disable=not progress)
    try:
        inner = staging / f"{out.name}_0"  # rosbags names the file after its folder: OUT_0.mcap
        writer = Writer(inner, version=8, storage_plugin=StoragePlugin.MCAP)
        writer.set_custom_data("pai_ros.recovered_from", str(bag.resolve()))
        connections: dict[tuple[str, str], object] = {}
        silent: dict[str, tuple[Channel, Schema | None]] = {}  # recorded topics with no message read (yet)
        for path in files:
            scanner = McapScanner(path)
            read_before = bar.n
            file_end: int | None = None
            file_messages = 0
            for channel, log_time, data in scanner.messages():
                bar.update(read_before + scanner.scan.good_bytes - bar.n)
                if not opened:
                    if scanner.compression == "zstd":  # keep the recording's chunk compression
                        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
                    writer.open()
                    opened = True
                schema = scanner.schemas.get(channel.schema_id)
                msgtype = schema.name if schema else ""
                if channel.topic in report.skipped:
                    continue
                key = (channel.topic, msgtype)
                conn = connections.get(key)
                if conn is None:
                    try:
                        conn = _add_connection(writer, channel, schema)
                    except UserError as exc:
                        report.skipped[channel.topic] = str(exc)
                        continue
                    connections[key] = conn
                    report.topics.setdefault(channel.topic, TopicReport(channel.topic, msgtype))
                writer.write(conn, log_time, data)
                t = report.topics[channel.topic]
                t.messages += 1
                t.first_ns = log_time if t.first_ns is None else min(t.first_ns, log_time)
                t.last_ns = log_time if t.last_ns is None else max(t.last_ns, log_time)
                file_end = log_time if file_end is None else max(file_end, log_time)
                file_messages += 1
            bar.update(read_before + path.stat().st_size - bar.n)  # the damaged rest counts as read
            report.files.append(scanner.scan)
            report.file_ends.append(file_end)
            report.file_messages.append(file_messages)
            for channel in scanner.channels.values():  # recorded topics whose messages were all lost
                if channel.topic not in report.topics and channel.topic not in report.skipped:
                    schema = scanner.schemas.get(channel.schema_id)
                    report.topics[channel.topic] = TopicReport(channel.topic, schema.name if schema else "?")
                    silent[channel.topic] = (channel, schema)
        if not opened:
            problems = "; ".join(f"{s.path.name}: {s.problem}" for s in report.files if s.problem)
            raise UserError(f"no readable message in {bag}" + (f" ({problems})" if problems else ""))
        _connect_silent(writer, silent, report)
        writer.close()
        opened = False
        os.replace(inner, out)
    finally:
        bar.close()
        if opened:  # failed half-way: close the file before its folder is removed
            writer.abort()
        shutil.rmtree(staging, ignore_errors=True)
    return report
