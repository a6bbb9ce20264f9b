"""Activation shards read lazily: headers checked up front, rows read on demand.

``pai sae train`` must work on collections larger than memory (50 episodes x 400 frames of a
default ACT are 12 million tokens). :func:`open_shards` reads only the safetensors headers (via
``safe_open``, which validates the layout) to learn every shard's shape, dtype and where its
activation rows start, and refuses mixed widths or dtypes with one line before any training
starts. :class:`RowReader` then reads one row range with a positioned read into a
tensor it reuses (no memory map: resident memory does not grow with the number of shards read,
and a read costs half of ``safe_open`` + slice, which matters when a shuffle buffer is refilled
from hundreds of small shards).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pai_ros.sae.activations import (
    COLLECT_FILE,
    META_TENSORS,
    SHARD_NAME,
    ActivationSet,
    complete_episodes,
    incomplete_episodes,
    read_collect_info,
)
from pai_ros.sae.errors import ActivationFileError

# safetensors' dtype names of the floating-point types a shard may store.
FLOAT_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}


@dataclass(frozen=True)
class Shard:
    path: Path
    rows: int
    episode: int | None  # None for a single activations file from elsewhere
    d: int
    dtype: str  # storage type of 'activations' (torch's name: float32, float16, bfloat16, float64)
    data_offset: int  # byte offset of row 0 of 'activations' in the file


@dataclass
class ShardSet:
    """The shards of a collection (or one file), all of width ``d`` and storage ``dtype``."""

    path: Path
    shards: list[Shard]
    d: int
    dtype: str
    info: dict[str, Any] | None  # collect.json for collections
    incomplete: list[int] = field(default_factory=list)  # episodes left out: shards missing, manifest damaged

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    @property
    def episodes(self) -> list[int]:
        return sorted({s.episode for s in self.shards if s.episode is not None})


def _header(path: Path, need_meta: bool) -> tuple[list[int], str, int]:
    """(shape, safetensors dtype name, byte offset of the data) of tensor ``activations`` of ``path``,
    reading only the header."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            if "activations" not in keys:
                raise ActivationFileError(f"{path} has no tensor 'activations' "
                                          f"(has: {', '.join(sorted(keys)) or 'none'})")
            if need_meta:
                missing = [k for k in META_TENSORS if k not in keys]
                if missing:
                    raise ActivationFileError(f"{path} is not a pai_ros activation shard "
                                              f"(missing {', '.join(missing)})")
                rows = f.get_slice("activations").get_shape()[:1]
                short = [k for k in META_TENSORS if f.get_slice(k).get_shape() != rows]
                if short:
                    raise ActivationFileError(f"{path}: tensor(s) {', '.join(short)} do not have one value per row "
                                              f"({rows[0] if rows else '?'}): collect that episode again")
            sl = f.get_slice("activations")
            shape, dtype = list(sl.get_shape()), str(sl.get_dtype())
        return shape, dtype, _data_offset(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ActivationFileError(f"{path} is not a readable safetensors file ({exc})") from None


def _data_offset(path: Path, name: str = "activations") -> int:
    """Where tensor ``name``'s bytes start: the safetensors layout is an 8-byte little-endian
    header length, that many bytes of JSON header, then the data, each tensor at its
    ``data_offsets`` (``safe_open`` has already checked them against the file)."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return 8 + length + int(header[name]["data_offsets"][0])


def _check_header(path: Path, shape: list[int], dtype: str) -> None:
    if len(shape) != 2 or shape[0] == 0 or shape[1] == 0:
        raise ActivationFileError(f"{path}: tensor 'activations' must be [N, d] with N, d > 0, got shape {shape}")
    if dtype not in FLOAT_DTYPES:
        raise ActivationFileError(f"{path}: tensor 'activations' must be floating point, got {dtype}")


def open_shards(path: str | Path) -> ShardSet:
    """Index a ``pai sae collect`` directory or one ``.safetensors`` file without loading its rows."""
    path = Path(path)
    if path.is_dir():
        return _open_collection(path)
    if not path.exists():
        raise ActivationFileError(f"activations not found: {path} "
                                  "(a `pai sae collect` directory or a .safetensors file)")
    if (path.parent / COLLECT_FILE).is_file() and SHARD_NAME.match(path.name):
        # Read as a file from elsewhere, one shard trained an SAE that named no policy (so nothing
        # refused it for another policy later), with no episode held out whole.
        raise ActivationFileError(f"{path} is one shard of the collection {path.parent}: give the collection "
                                  "(--activations DIR), whose SAE then knows its policy, dataset and episodes")
    shape, dtype, offset = _header(path, need_meta=False)
    _check_header(path, shape, dtype)
    return ShardSet(path, [Shard(path, shape[0], None, shape[1], FLOAT_DTYPES[dtype], offset)], shape[1],
                    FLOAT_DTYPES[dtype], None)


def _open_collection(directory: Path) -> ShardSet:
    info = read_collect_info(directory)
    d = int(info["d"])
    done = complete_episodes(directory, d)
    if not done:
        raise ActivationFileError(f"{directory} has no complete episodes (run `pai sae collect` to finish it)")
    shards: list[Shard] = []
    seen: dict[str, Path] = {}  # dtype -> first shard stored in it
    for episode in sorted(done):
        for part in done[episode]["parts"]:
            shard = directory / part["file"]
            shape, dtype, offset = _header(shard, need_meta=True)
            _check_header(shard, shape, dtype)
            if shape[1] != d or shape[0] != int(part["rows"]):
                raise ActivationFileError(f"{shard} holds {shape} but its manifest says [{part['rows']}, {d}] "
                                          f"(shards of mixed widths?): collect that episode again")
            seen.setdefault(dtype, shard)
            if len(seen) > 1:
                (a, pa), (b, pb) = list(seen.items())[:2]
                raise ActivationFileError(f"{directory} mixes shard dtypes ({pa.name} is {FLOAT_DTYPES[a]}, "
                                          f"{pb.name} is {FLOAT_DTYPES[b]}): collect into one directory "
                                          "with one --dtype")
            shards.append(Shard(shard, shape[0], episode, d, FLOAT_DTYPES[dtype], offset))
    return ShardSet(directory, shards, d, FLOAT_DTYPES[next(iter(seen))], info,
                    incomplete_episodes(directory, d))


class RowReader:
    """Reads activation rows into two tensors it keeps (storage type, float32), so that streaming
    allocates nothing per piece (a piece read and copied into the shuffle buffer took 13% less
    time than with fresh tensors, 630-row float16 pieces).

    :meth:`read` returns a view that the next :meth:`read` overwrites.
    """

    def __init__(self) -> None:
        self._raw = torch.empty(0)
        self._out = torch.empty(0)

    def read(self, shard: Shard, start: int, stop: int) -> torch.Tensor:
        rows, storage = stop - start, getattr(torch, shard.dtype)
        if self._out.numel() < rows * shard.d:
            self._out = torch.empty(rows * shard.d)
        out = self._out[:rows * shard.d].view(rows, shard.d)
        if storage == torch.float32:
            raw = out
        else:
            if self._raw.dtype != storage or self._raw.numel() < rows * shard.d:
                self._raw = torch.empty(rows * shard.d, dtype=storage)
            raw = self._raw[:rows * shard.d].view(rows, shard.d)
        _read_into(shard, start, stop, raw)
        if raw is not out:
            out.copy_(raw)
        _check_finite(out, shard, start, stop)
        return out


def _check_finite(rows: torch.Tensor, shard: Shard, start: int, stop: int) -> None:
    # The sum is non-finite whenever an element is (and costs a fifteenth of isfinite().all()
    # here); only then is every element checked (a huge but finite float32 sum is no error).
    if not math.isfinite(float(rows.sum())) and not torch.isfinite(rows).all():
        raise ActivationFileError(f"{shard.path}: tensor 'activations' contains NaN or inf (rows {start}-{stop})")


def _read_into(shard: Shard, start: int, stop: int, raw: torch.Tensor) -> None:
    """The bytes of rows ``[start, stop)`` into ``raw`` (contiguous, the shard's dtype): one
    positioned read, no memory map."""
    target = memoryview(raw.view(torch.uint8).numpy()).cast("B")
    got = 0
    try:
        with open(shard.path, "rb", buffering=0) as f:
            f.seek(shard.data_offset + start * shard.d * raw.element_size())
            while got < len(target):
                n = f.readinto(target[got:])
                if not n:
                    break
                got += n
    except OSError as exc:
        raise ActivationFileError(f"{shard.path} could not be read ({exc}); was it changed during training?") from None
    if got < len(target):
        raise ActivationFileError(f"{shard.path} ends before row {stop}; was it changed during training?")


def read_activation_rows(shard: Shard, start: int, stop: int) -> torch.Tensor:
    """Rows ``[start, stop)`` of ``shard``'s activations as a new float32 tensor, checked finite."""
    return RowReader().read(shard, start, stop)


def read_rows(shard: Shard, start: int, stop: int, tensors: tuple[str, ...]) -> dict[str, Any]:
    """Rows ``[start, stop)`` of the per-row metadata ``tensors`` of one shard, as stored."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(shard.path), framework="pt") as f:
            return {name: f.get_slice(name)[start:stop] for name in tensors}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ActivationFileError(f"{shard.path} could not be read ({exc}); was it changed during training?") from None


def read_activations(path: str | Path) -> ActivationSet:
    """Every row of a collection directory or one ``.safetensors`` file, in memory as float32, with
    the collection's per-row metadata.

    For data that fits in memory (the benchmarks, the peers' trainers, tests); ``pai sae train``
    streams instead. The files are indexed and checked by :func:`open_shards`, as the streaming
    reads are, so both refuse the same files with the same lines.
    """
    data = open_shards(path)
    acts = torch.empty(data.rows, data.d)
    meta: dict[str, list[np.ndarray]] = {k: [] for k in META_TENSORS} if data.info is not None else {}
    reader, at = RowReader(), 0
    for shard in data.shards:
        rows = acts[at:at + shard.rows]
        if shard.dtype == "float32":  # straight into the result: no second copy of a large file
            _read_into(shard, 0, shard.rows, rows)
            _check_finite(rows, shard, 0, shard.rows)
        else:
            rows.copy_(reader.read(shard, 0, shard.rows))
        at += shard.rows
        if meta:
            for name, values in read_rows(shard, 0, shard.rows, META_TENSORS).items():
                meta[name].append(values.numpy())
    return ActivationSet(acts, {k: np.concatenate(v) for k, v in meta.items()}, data.info, data.path)


def read_frames(shards: list[Shard]) -> np.ndarray:
    """Sorted unique (episode, frame) pairs of ``shards``: 8 bytes per row read, not the activations."""
    pairs = []
    for shard in shards:
        meta = read_rows(shard, 0, shard.rows, ("episode_index", "frame_index"))
        pairs.append(np.stack([meta["episode_index"].numpy(), meta["frame_index"].numpy()], axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(pairs).astype(np.int64), axis=0)
