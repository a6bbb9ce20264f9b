"""The order of a bag's storage files: rosbag2 names its splits ``BAG_0``, ``BAG_1``, ... ``BAG_10``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

_SPLIT_INDEX = re.compile(r"_(\d+)$")


def in_split_order(files: Iterable[Path]) -> list[Path]:
    """Storage files in recording order: by split number, not as text (``_10`` after ``_9``, not ``_1``)."""
    def order(p: Path) -> tuple[int, str]:
        m = _SPLIT_INDEX.search(p.stem)
        return (int(m.group(1)) if m else -1, p.name)

    return sorted(files, key=order)
