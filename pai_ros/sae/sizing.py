"""How big a collection will be, said before the work starts, and refused when it cannot fit.

A default LeRobot ACT (dim_model 512, two 480x640 cameras: 602 tokens per frame) over 50
episodes x 400 frames is 12 million tokens: 12 GB in float16, 25 GB in float32. The estimate is
rows x (width x bytes per value + the per-row metadata collect stores); shards add a few hundred
bytes of header each, which is noise at this scale.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from pai_ros.errors import UserError
from pai_ros.sae.errors import DiskBudgetError

BYTES_PER_VALUE = {"float32": 4, "float16": 2, "bfloat16": 2}
# episode_index, frame_index, token_index (int32), token_kind (int8), camera_index, row, col (int16)
META_BYTES_PER_ROW = 4 + 4 + 4 + 1 + 2 + 2 + 2
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """``20GB``, ``500 MiB``, ``1.5T``, ``123456`` -> bytes (decimal units unless ``...iB``)."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise UserError(f"--max-disk: cannot read {text!r} as a size (e.g. 20GB, 500MiB, 2TB)")
    try:
        value = float(m.group(1))
    except ValueError:
        raise UserError(f"--max-disk: cannot read {text!r} as a size (e.g. 20GB, 500MiB, 2TB)") from None
    return int(value * _UNITS[unit])


def fmt_size(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


@dataclass(frozen=True)
class Estimate:
    frames: int
    tokens_per_frame: int
    d: int
    dtype: str

    @property
    def tokens(self) -> int:
        return self.frames * self.tokens_per_frame

    @property
    def bytes(self) -> int:
        return self.tokens * (self.d * BYTES_PER_VALUE[self.dtype] + META_BYTES_PER_ROW)

    def line(self) -> str:
        return (f"{self.frames:,} frames x {self.tokens_per_frame} tokens = {self.tokens:,} tokens of width "
                f"{self.d}: about {fmt_size(self.bytes)} on disk ({self.dtype})")


def check_fits(estimate: Estimate, directory: Path, max_disk: int | None, *, already: int = 0) -> None:
    """Refuse (one line) when the estimate exceeds the free space at ``directory``, or, with the
    ``already`` bytes collected there before (a resumed collection), ``--max-disk``."""
    hint = "keep fewer tokens (--frame-stride, --cell-stride, --kinds, fewer --episode)" + (
        " or store --dtype float16" if BYTES_PER_VALUE[estimate.dtype] > 2 else "")  # not when it already is
    if max_disk is not None and estimate.bytes + already > max_disk:
        before = f" besides the {fmt_size(already)} collected before" if already else ""
        raise DiskBudgetError(f"the collection would need about {fmt_size(estimate.bytes)} ({estimate.tokens:,} tokens)"
                              f"{before}, more than --max-disk {fmt_size(max_disk)}: {hint}")
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if estimate.bytes > free:
        raise DiskBudgetError(f"the collection would need about {fmt_size(estimate.bytes)} "
                              f"({estimate.tokens:,} tokens) but {probe} has {fmt_size(free)} free: {hint}")
