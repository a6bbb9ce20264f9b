"""A strict, sequential MCAP parser that stops a file at its first damage.

The indexed readers (rosbags, the ``mcap`` package) need the summary and footer that an
interrupted recording never wrote. :class:`McapScanner` reads a file record by record from the
start instead and yields its messages until the first record that is truncated or
inconsistent: a length past the end of the file, an unknown channel or schema, a chunk whose
decompressed size or CRC (when the writer stored one) does not match. A chunk is taken whole or
not at all, so what it yields is an exact prefix of what was recorded. :mod:`pai_ros.bags.recover`
turns that into a complete bag.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"\x89MCAP0\r\n"
# Top-level opcodes (MCAP spec); 0x80-0xFF are private records, skipped like the spec says.
HEADER, FOOTER, SCHEMA, CHANNEL, MESSAGE, CHUNK = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
SKIPPED = {0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F}  # indexes, summary, attachments, metadata



class Damage(Exception):
    """A record that cannot be read: the file's readable prefix ends before it."""


@dataclass
class Schema:
    id: int
    name: str
    encoding: str
    data: bytes


@dataclass
class Channel:
    id: int
    schema_id: int
    topic: str
    encoding: str
    metadata: dict[str, str]


@dataclass
class FileScan:
    """How far one storage file could be read."""

    path: Path
    size: int = 0
    complete: bool = False  # the footer was reached: the file was closed normally
    data_complete: bool = False  # the data section's end was reached: no message lost, whatever came after
    good_bytes: int = 0  # bytes from the start that were read without damage
    problem: str = ""  # why reading stopped before the footer ("" when complete)
    messages: int = 0


class _Reader:
    """Bounds-checked little-endian reads from one buffer; any overrun is :class:`Damage`."""

    def __init__(self, buf: memoryview, start: int, end: int) -> None:
        self.buf, self.pos, self.end = buf, start, end

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > self.end:
            raise Damage(f"a field of {n} bytes at byte {self.pos} runs past its record")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def string(self) -> str:
        try:
            return bytes(self.take(self.u32())).decode("utf-8")
        except UnicodeDecodeError:
            raise Damage(f"a string before byte {self.pos} is not UTF-8") from None

    def string_map(self) -> dict[str, str]:
        n = self.u32()
        inner = _Reader(self.buf, self.pos, self.pos + n)
        self.take(n)
        out = {}
        while inner.pos < inner.end:
            key = inner.string()
            out[key] = inner.string()
        return out


def _decompress(compression: str, data: bytes) -> bytes:
    if compression == "":
        return data
    if compression == "zstd":
        try:
            from compression import zstd  # type: ignore[import-not-found]  # Python 3.14
        except ImportError:
            from backports import zstd  # type: ignore[import-not-found,no-redef]
        try:
            return zstd.decompress(data)
        except zstd.ZstdError as exc:
            raise Damage(f"a zstd chunk does not decompress ({exc})") from None
    if compression == "lz4":
        from lz4.frame import decompress

        try:
            return decompress(data)
        except Exception as exc:  # lz4 raises RuntimeError (or others) for damaged frames
            raise Damage(f"an lz4 chunk does not decompress ({exc})") from None
    raise Damage(f"unknown chunk compression {compression!r}")


class McapScanner:
    """Sequential reader of one MCAP file that tolerates a missing summary and stops at damage.

    Iterate :meth:`messages` for ``(channel, log_time_ns, data)``; afterwards :attr:`scan` says
    how far the file was readable and :attr:`channels` / :attr:`schemas` hold what it defined.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.scan = FileScan(path)
        self.schemas: dict[int, Schema] = {}
        self.channels: dict[int, Channel] = {}
        self.compression = ""  # the last chunk compression seen

    def messages(self) -> Iterator[tuple[Channel, int, bytes]]:
        with self.path.open("rb") as f:
            size = self.scan.size = os.fstat(f.fileno()).st_size
            if size < len(MAGIC):
                self.scan.problem = f"only {size} bytes: no MCAP header"
                return
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                buf = memoryview(mm)
                try:
                    yield from self._records(buf, size)
                finally:
                    buf.release()

    def _records(self, buf: memoryview, size: int) -> Iterator[tuple[Channel, int, bytes]]:
        if bytes(buf[:len(MAGIC)]) != MAGIC:
            self.scan.problem = "not an MCAP file (no magic bytes)"
            return
        pos = self.scan.good_bytes = len(MAGIC)
        after_data_end = False
        while True:
            if pos + 9 > size:
                self.scan.problem = (f"ends inside a record header at byte {pos}" if pos < size
                                     else f"ends after byte {pos} without a footer")
                return
            opcode = buf[pos]
            length = struct.unpack("<Q", buf[pos + 1:pos + 9])[0]
            body, end = pos + 9, pos + 9 + length
            if end > size:
                self.scan.problem = (f"record 0x{opcode:02x} at byte {pos} is truncated "
                                     f"({length} bytes announced, {size - body} present)")
                return
            try:
                if opcode == FOOTER:
                    if bytes(buf[end:end + len(MAGIC)]) != MAGIC:
                        raise Damage(f"no closing magic bytes after the footer at byte {pos}")
                    self.scan.complete, self.scan.data_complete, self.scan.good_bytes = True, True, size
                    return
                if opcode == 0 or (0x10 <= opcode < 0x80):
                    raise Damage(f"invalid record opcode 0x{opcode:02x} at byte {pos}")
                if after_data_end or opcode in SKIPPED or opcode >= 0x80 or opcode == HEADER:
                    records: list = []
                elif opcode == CHUNK:
                    records = self._chunk(_Reader(buf, body, end), pos)
                else:
                    records = [self._record(opcode, _Reader(buf, body, end), pos)]
            except Damage as exc:
                self.scan.problem = str(exc)
                return
            # The whole record (for a chunk: every record inside it) is valid: only now use it.
            for rec in records:
                if isinstance(rec, Schema):
                    self.schemas[rec.id] = rec
                elif isinstance(rec, Channel):
                    self.channels[rec.id] = rec
                else:
                    self.scan.messages += 1
                    yield rec
            after_data_end = after_data_end or opcode == 0x0F
            self.scan.data_complete = after_data_end
            pos = self.scan.good_bytes = end

    def _chunk(self, r: _Reader, at: int) -> list:
        r.u64(), r.u64()  # message start and end time (recomputed from the messages)
        uncompressed_size, crc = r.u64(), r.u32()
        compression = r.string()
        data = bytes(r.take(r.u64()))
        raw = _decompress(compression, data)
        if len(raw) != uncompressed_size:
            raise Damage(f"the chunk at byte {at} holds {len(raw)} bytes, its header says {uncompressed_size}")
        if crc and zlib.crc32(raw) != crc:
            raise Damage(f"the chunk at byte {at} fails its CRC check")
        self.compression = compression
        inner = memoryview(raw)
        out: list = []
        # Definitions inside the chunk count for the messages after them, even before the chunk
        # is accepted; they are applied for good by the caller only if the whole chunk is valid.
        schemas, channels = dict(self.schemas), dict(self.channels)
        pos = 0
        while pos < len(raw):
            if pos + 9 > len(raw):
                raise Damage(f"the chunk at byte {at} ends inside a record header")
            opcode = inner[pos]
            length = struct.unpack("<Q", inner[pos + 1:pos + 9])[0]
            end = pos + 9 + length
            if end > len(raw):
                raise Damage(f"a record inside the chunk at byte {at} runs past the chunk")
            if opcode in (SCHEMA, CHANNEL, MESSAGE):
                rec = self._record(opcode, _Reader(inner, pos + 9, end), at, schemas, channels)
                if isinstance(rec, Schema):
                    schemas[rec.id] = rec
                elif isinstance(rec, Channel):
                    channels[rec.id] = rec
                out.append(rec)
            elif opcode == 0 or (0x10 <= opcode < 0x80) or opcode in (HEADER, FOOTER, CHUNK):
                raise Damage(f"record 0x{opcode:02x} cannot be inside the chunk at byte {at}")
            pos = end
        return out

    def _record(self, opcode: int, r: _Reader, at: int, schemas: dict | None = None,
                channels: dict | None = None) -> Schema | Channel | tuple[Channel, int, bytes]:
        schemas = self.schemas if schemas is None else schemas
        channels = self.channels if channels is None else channels
        if opcode == SCHEMA:
            sid, name, encoding = r.u16(), r.string(), r.string()
            data = bytes(r.take(r.u32()))
            if sid == 0:
                raise Damage(f"schema id 0 is reserved (record near byte {at})")
            return Schema(sid, name, encoding, data)
        if opcode == CHANNEL:
            cid, sid, topic, encoding = r.u16(), r.u16(), r.string(), r.string()
            metadata = r.string_map()
            if sid and sid not in schemas:
                raise Damage(f"channel {topic!r} names an unknown schema {sid} (near byte {at})")
            return Channel(cid, sid, topic, encoding, metadata)
        if opcode == MESSAGE:
            cid, _seq, log_time, _publish_time = r.u16(), r.u32(), r.u64(), r.u64()
            channel = channels.get(cid)
            if channel is None:
                raise Damage(f"a message names an unknown channel {cid} (near byte {at})")
            return (channel, log_time, bytes(r.take(r.end - r.pos)))
        raise AssertionError(opcode)  # pragma: no cover
