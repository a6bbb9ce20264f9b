"""Lists in one-line messages: the first few items and how many more, so a line stays a line."""

from __future__ import annotations

from collections.abc import Sequence


def listed(items: Sequence[object], most: int = 3) -> str:
    """``a, b, c and 7 more`` for ten items and ``most=3``; every item when there are no more."""
    shown = ", ".join(map(str, items[:most]))
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


def lacking_requested(holder: object, missing: Sequence[int], step: str) -> str:
    """``HOLDER lacks N of the episodes STEP was asked for (a, b: interrupted?)``: what a run stopped before
    it reached them left out. The caller adds how to get them (each step's re-run does something else)."""
    return (f"{holder} lacks {len(missing)} of the episodes {step} was asked for "
            f"({listed(missing, most=8)}: interrupted?)")
