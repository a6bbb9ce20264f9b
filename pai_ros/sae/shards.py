"""Activation shards read lazily: headers checked up front, rows read on demand.

``pai sae train`` must work on collections larger than memory (50 episodes x 400 frames of a
default ACT are 12 million tokens). :func:`open_shards` reads only the safetensors headers (via
``safe_open``, which memory-maps the file and parses the JSON header) to learn every shard's
shape and dtype, and refuses mixed widths or dtypes with one line before any training starts.
:func:`read_rows` then copies one row range out of one shard and closes it again, so the pages
of a shard are mapped only while their rows are copied: resident memory does not grow with the
number of shards read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pai_ros.errors import UserError
from pai_ros.sae.activations import META_TENSORS, complete_episodes, read_collect_info

# safetensors' dtype names of the floating-point types a shard may store.
FLOAT_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}


@dataclass(frozen=True)
class Shard:
    path: Path
    rows: int
    episode: int | None  # None for a single activations file from elsewhere


@dataclass
class ShardSet:
    """The shards of a collection (or one file), all of width ``d`` and storage ``dtype``."""

    path: Path
    shards: list[Shard]
    d: int
    dtype: str
    info: dict[str, Any] | None  # collect.json for collections

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    @property
    def episodes(self) -> list[int]:
        return sorted({s.episode for s in self.shards if s.episode is not None})


def _header(path: Path, need_meta: bool) -> tuple[list[int], str]:
    """(shape, dtype name) of tensor ``activations`` of ``path``, reading only the header."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            if "activations" not in keys:
                raise UserError(f"{path} has no tensor 'activations' (has: {', '.join(sorted(keys)) or 'none'})")
            if need_meta:
                missing = [k for k in META_TENSORS if k not in keys]
                if missing:
                    raise UserError(f"{path} is not a pai_ros activation shard (missing {', '.join(missing)})")
                rows = f.get_slice("activations").get_shape()[:1]
                short = [k for k in META_TENSORS if f.get_slice(k).get_shape() != rows]
                if short:
                    raise UserError(f"{path}: tensor(s) {', '.join(short)} do not have one value per row "
                                    f"({rows[0] if rows else '?'}): collect that episode again")
            sl = f.get_slice("activations")
            return list(sl.get_shape()), str(sl.get_dtype())
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"{path} is not a readable safetensors file ({exc})") from None


def _check_header(path: Path, shape: list[int], dtype: str) -> None:
    if len(shape) != 2 or shape[0] == 0 or shape[1] == 0:
        raise UserError(f"{path}: tensor 'activations' must be [N, d] with N, d > 0, got shape {shape}")
    if dtype not in FLOAT_DTYPES:
        raise UserError(f"{path}: tensor 'activations' must be floating point, got {dtype}")


def open_shards(path: str | Path) -> ShardSet:
    """Index a ``pai sae collect`` directory or one ``.safetensors`` file without loading its rows."""
    path = Path(path)
    if path.is_dir():
        return _open_collection(path)
    if not path.exists():
        raise UserError(f"activations not found: {path} (a `pai sae collect` directory or a .safetensors file)")
    shape, dtype = _header(path, need_meta=False)
    _check_header(path, shape, dtype)
    return ShardSet(path, [Shard(path, shape[0], None)], shape[1], FLOAT_DTYPES[dtype], None)


def _open_collection(directory: Path) -> ShardSet:
    info = read_collect_info(directory)
    done = complete_episodes(directory)
    if not done:
        raise UserError(f"{directory} has no complete episodes (run `pai sae collect` to finish it)")
    d = int(info["d"])
    shards: list[Shard] = []
    seen: dict[str, Path] = {}  # dtype -> first shard stored in it
    for episode in sorted(done):
        for part in done[episode]["parts"]:
            shard = directory / part["file"]
            shape, dtype = _header(shard, need_meta=True)
            _check_header(shard, shape, dtype)
            if shape[1] != d or shape[0] != int(part["rows"]):
                raise UserError(f"{shard} holds {shape} but its manifest says [{part['rows']}, {d}] "
                                f"(shards of mixed widths?): collect that episode again")
            seen.setdefault(dtype, shard)
            if len(seen) > 1:
                (a, pa), (b, pb) = list(seen.items())[:2]
                raise UserError(f"{directory} mixes shard dtypes ({pa.name} is {FLOAT_DTYPES[a]}, {pb.name} is "
                                f"{FLOAT_DTYPES[b]}): collect into one directory with one --dtype")
            shards.append(Shard(shard, shape[0], episode))
    return ShardSet(directory, shards, d, FLOAT_DTYPES[next(iter(seen))], info)


def read_rows(shard: Shard, start: int, stop: int, tensors: tuple[str, ...] = ("activations",)) -> dict[str, Any]:
    """Rows ``[start, stop)`` of ``tensors`` of one shard; activations as float32 (checked finite)."""
    from safetensors import SafetensorError, safe_open

    out: dict[str, Any] = {}
    try:
        with safe_open(str(shard.path), framework="pt") as f:
            for name in tensors:
                out[name] = f.get_slice(name)[start:stop]
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"{shard.path} could not be read ({exc}); was it changed during training?") from None
    if "activations" in out:
        acts = out["activations"].to(torch.float32)
        # The sum is non-finite whenever an element is (and costs a hundredth of isfinite().all()
        # here); only then is every element checked (a huge but finite float32 sum is no error).
        if not torch.isfinite(acts.sum()) and not torch.isfinite(acts).all():
            raise UserError(f"{shard.path}: tensor 'activations' contains NaN or inf (rows {start}-{stop})")
        out["activations"] = acts
    return out


def read_frames(shards: list[Shard]) -> np.ndarray:
    """Sorted unique (episode, frame) pairs of ``shards``: 8 bytes per row read, not the activations."""
    pairs = []
    for shard in shards:
        meta = read_rows(shard, 0, shard.rows, ("episode_index", "frame_index"))
        pairs.append(np.stack([meta["episode_index"].numpy(), meta["frame_index"].numpy()], axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(pairs).astype(np.int64), axis=0)
