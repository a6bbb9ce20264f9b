"""Activation shards: what ``pai sae collect`` writes and ``pai sae train`` reads.

A collection directory holds::

    collect.json                          source (policy, dataset, hook), token layout, settings
    episode_000003-part0000.safetensors   tensors of one episode, at most ``shard_tokens`` rows each
    episode_000003.json                   written last: the episode is complete (parts, rows)

Each shard has one row per stored token: ``activations [n, d]`` (float16 by default, bfloat16 or float32) and the
per-token metadata ``episode_index``, ``frame_index``, ``token_index`` (position in the encoder
sequence), ``token_kind`` (see :data:`KIND_CODES`), ``camera_index`` (-1 for 1-D tokens),
``row`` and ``col`` (-1 for 1-D tokens). An episode without its ``.json`` manifest is
incomplete and is redone on the next run (resumable per episode); shard files are written to a
temporary name and renamed, so no file that looks complete is ever partial.

``pai sae train`` also accepts a single ``.safetensors`` file with a tensor ``activations
[N, d]`` (any other tensors are ignored), for activations from elsewhere.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pai_ros.data.episodes import episode_stem
from pai_ros.errors import UserError
from pai_ros.jsonfile import write_json_atomic
from pai_ros.policy.layout import CAMERA, ENV_STATE, LATENT, STATE, TokenLayout
from pai_ros.require import require
from pai_ros.sae.errors import ActivationFileError
from pai_ros.staging import staged_file

COLLECT_FILE = "collect.json"
KIND_CODES = {LATENT: 0, STATE: 1, ENV_STATE: 2, CAMERA: 3}
META_TENSORS = ("episode_index", "frame_index", "token_index", "token_kind", "camera_index", "row", "col")
EPISODE_MANIFEST = re.compile(r"^episode_(\d{6})\.json$")
SHARD_NAME = re.compile(r"^episode_\d{6}-part\d{4}\.safetensors$")


@dataclass(frozen=True)
class TokenSelection:
    """Which tokens of each frame are stored.

    ``cell_stride`` keeps camera cells whose row and column are both multiples of it, so a
    subsampled grid is still a grid (rows and camera boundaries are respected, not cut across).
    """

    kinds: tuple[str, ...] = (LATENT, STATE, ENV_STATE, CAMERA)
    cell_stride: int = 1

    def __post_init__(self) -> None:
        bad = [k for k in self.kinds if k not in KIND_CODES]
        if bad or not self.kinds:
            raise UserError(f"unknown token kind(s) {', '.join(bad) or '(none given)'} "
                            f"(choose from {', '.join(KIND_CODES)})")
        require("--cell-stride", self.cell_stride, at_least=1)

    def indices(self, layout: TokenLayout) -> np.ndarray:
        table = layout.token_table()
        keep = np.isin(table["kind"], list(self.kinds))
        cams = table["kind"] == CAMERA
        keep &= ~cams | ((table["row"] % self.cell_stride == 0) & (table["col"] % self.cell_stride == 0))
        return np.flatnonzero(keep)


def token_metadata(layout: TokenLayout, indices: np.ndarray) -> dict[str, np.ndarray]:
    table = layout.token_table()
    return {
        "token_index": indices.astype(np.int32),
        "token_kind": np.array([KIND_CODES[k] for k in table["kind"][indices]], dtype=np.int8),
        "camera_index": table["camera_index"][indices].astype(np.int16),
        "row": table["row"][indices].astype(np.int16),
        "col": table["col"][indices].astype(np.int16),
    }


# ------------------------------------------------------------------------- writing


class EpisodeShardWriter:
    """Buffers one episode's token rows and writes them as bounded-size shards."""

    def __init__(self, directory: Path, episode: int, shard_tokens: int, dtype: torch.dtype) -> None:
        self.directory, self.episode, self.shard_tokens, self.dtype = directory, episode, shard_tokens, dtype
        self.parts: list[dict[str, Any]] = []
        self._rows: list[dict[str, Any]] = []
        self._buffered = 0
        self.total = 0
        # A previous interrupted run may have left parts of this episode: they are overwritten.
        for stale in directory.glob(f"{episode_stem(episode)}-part*.safetensors"):
            stale.unlink()

    def add(self, acts: torch.Tensor, frame_index: int, meta: dict[str, np.ndarray]) -> None:
        n = acts.shape[0]
        self._rows.append({"activations": acts.detach().to("cpu", self.dtype), "frame_index": frame_index,
                           **meta})
        self._buffered += n
        self.total += n
        if self._buffered >= self.shard_tokens:
            self._flush()

    def _flush(self) -> None:
        from safetensors.torch import save_file

        if not self._rows:
            return
        acts = torch.cat([r["activations"] for r in self._rows])
        n = acts.shape[0]
        tensors = {"activations": acts.contiguous(),
                   "episode_index": torch.full((n,), self.episode, dtype=torch.int32),
                   "frame_index": torch.from_numpy(np.concatenate(
                       [np.full(len(r["token_index"]), r["frame_index"], dtype=np.int32) for r in self._rows]))}
        for key in META_TENSORS[2:]:
            tensors[key] = torch.from_numpy(np.concatenate([r[key] for r in self._rows]))
        name = f"{episode_stem(self.episode)}-part{len(self.parts):04d}.safetensors"
        with staged_file(self.directory / name) as tmp:
            # The episode in the header too: a shard copied under another episode's name is then told
            # apart by its header alone (the check of a collection reads no rows).
            save_file(tensors, str(tmp), metadata={"producer": "pai_ros", "episode": str(self.episode)})
        self.parts.append({"file": name, "rows": n})
        self._rows, self._buffered = [], 0

    def finish(self, frames: int) -> dict[str, Any]:
        self._flush()
        manifest = {"episode": self.episode, "frames": frames, "rows": self.total, "parts": self.parts}
        path = self.directory / f"{episode_stem(self.episode)}.json"
        write_json_atomic(path, manifest)
        return manifest


def complete_episodes(directory: Path, d: int | None = None) -> dict[int, dict[str, Any]]:
    """Manifests of the episodes whose shards are all there and are what the manifest says.

    A part counts when its file is whole and its header agrees with the manifest: the rows it
    lists, the collection's width ``d`` (when given: ``collect.json`` knows it) and, for shards
    that record it, the episode. Anything else (a shard cut short, replaced by another of another
    width, or copied from another episode) makes the episode incomplete: train leaves it out and
    collect does it again, as its message says, rather than train stopping on it for good.
    """
    done: dict[int, dict[str, Any]] = {}
    for path in sorted(directory.glob("episode_*.json")):
        m = EPISODE_MANIFEST.match(path.name)
        if not m:
            continue
        try:
            manifest = json.loads(path.read_text())
            parts = manifest["parts"]
            # Each part names a shard file of this directory and its row count.
            if not isinstance(parts, list) or not all(
                    isinstance(p, dict) and isinstance(p.get("file"), str) and "/" not in p["file"]
                    and "\\" not in p["file"] and isinstance(p.get("rows"), int) for p in parts):
                continue
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
            continue  # a damaged manifest: the episode is collected again
        episode = int(m.group(1))
        if all(_part_fits(directory / p["file"], p["rows"], d, episode) for p in parts):
            done[episode] = manifest
    return done


def _part_fits(path: Path, rows: int, d: int | None, episode: int) -> bool:
    header = _whole_header(path)
    if header is None:
        return False
    try:
        shape = list(header["activations"]["shape"])
        # Each metadata tensor one value per row, or the shard cannot be read as its episode's.
        meta_fits = all(list(header[key]["shape"]) == [rows] for key in META_TENSORS)
    except (KeyError, TypeError):
        return False
    recorded = (header.get("__metadata__") or {}).get("episode")
    return (meta_fits and len(shape) == 2 and shape[0] == rows and (d is None or shape[1] == d)
            and (recorded is None or recorded == str(episode)))


def shard_is_whole(path: Path) -> bool:
    """A safetensors file that is all there: its header parses and its data reaches the size it says.

    A shard cut short (a full disk, a copy interrupted) was counted as collected by its name
    alone: collect skipped the episode and train then failed on it, with nothing to repair it.
    Reads only the header, so a check of thousands of shards stays cheap.
    """
    return _whole_header(path) is not None


def _whole_header(path: Path) -> dict[str, Any] | None:
    """The safetensors header of ``path`` when the file is whole (:func:`shard_is_whole`), else None."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 2 <= size <= 100 * 2**20:
                return None
            header = json.loads(f.read(size))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        return header if path.stat().st_size >= 8 + size + end else None
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):  # a header of another shape
        return None


def incomplete_episodes(directory: Path, d: int | None = None) -> list[int]:
    """Episodes with a manifest whose shards are not all there or not what it says (or whose manifest is
    damaged): a collection that was stopped, or damaged after the fact. Collect finishes them; train
    leaves them out."""
    started = {int(m.group(1)) for p in directory.glob("episode_*.json") if (m := EPISODE_MANIFEST.match(p.name))}
    return sorted(started - set(complete_episodes(directory, d)))


# ------------------------------------------------------------------------- reading


@dataclass
class ActivationSet:
    """Activations ``[N, d]`` (float32, CPU) and, for collections, per-token metadata."""

    activations: torch.Tensor
    meta: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] | None = None  # collect.json, when read from a collection
    path: Path | None = None

    @property
    def d(self) -> int:
        return int(self.activations.shape[1])

    def __len__(self) -> int:
        return int(self.activations.shape[0])


def read_collect_info(directory: Path) -> dict[str, Any]:
    path = directory / COLLECT_FILE
    if not path.is_file():
        raise ActivationFileError(f"{directory} is not a `pai sae collect` directory (no {COLLECT_FILE})")
    try:
        info = json.loads(path.read_text())
        int(info["d"])
        info["layout"]["cameras"]
        if not isinstance(info.get("source", {}), dict):
            raise TypeError("'source' is not an object")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise ActivationFileError(f"{path} is damaged ({type(exc).__name__}: {exc}); "
                                  "collect again into a new directory") from None
    return info
