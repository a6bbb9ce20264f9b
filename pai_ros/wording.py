"""Lists in one-line messages: the first few items and how many more, so a line stays a line."""

from __future__ import annotations

from collections.abc import Sequence


def listed(items: Sequence[object], most: int = 3) -> str:
    """``a, b, c and 7 more`` for ten items and ``most=3``; every item when there are no more."""
    shown = ", ".join(map(str, items[:most]))
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")
