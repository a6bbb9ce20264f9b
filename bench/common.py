"""Helpers shared by the benchmarks: robust timing summaries and the result table."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable

#: ``make bench`` (bench/run_all.py) sets this to a file; every table printed is also appended there.
ROWS_ENV = "PAI_BENCH_ROWS"


def time_calls(fn: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, per_round: int = 1) -> dict[str, list[float]]:
    """Time several functions in alternating rounds so that machine noise hits all alike.

    The order rotates from round to round, so no function always runs first (after an idle
    moment) or last (after the others warmed the caches).
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name] += time_calls(fns[name], per_round)
    return times


def paired_ratio(this: list[float], reference: list[float]) -> str:
    """Median [min-max] of per-round ratios: each round's pair ran back to back, so slow drifts of
    the machine cancel, which a ratio of two medians does not do."""
    ratios = [a / b for a, b in zip(this, reference)]
    return f"{statistics.median(ratios):.3f}x [{min(ratios):.2f}-{max(ratios):.2f}]"


def summary_ms(samples: list[float]) -> tuple[float, float, float]:
    ms = [s * 1000 for s in samples]
    return statistics.median(ms), min(ms), max(ms)


def fmt_ms(s: tuple[float, float, float]) -> str:
    """A ``summary_ms`` triple as 'median ms [min-max]'."""
    return f"{s[0]:.1f} ms [{s[1]:.1f}-{s[2]:.1f}]"


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def print_table(title: str, rows: list[tuple[str, str, str, str, str]]) -> None:
    """rows: (figure, this project, reference, ratio, target)."""
    header = ("figure", "this", "reference", "ratio", "target")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    print(f"\n{title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    if os.environ.get(ROWS_ENV):
        with open(os.environ[ROWS_ENV], "a") as f:
            f.write(json.dumps({"title": title, "rows": [list(r) for r in rows]}) + "\n")
