"""What the live tick tells the operator: counters, the current reason not to act, recent rejections.

Thread-safe by construction: the tick's worker thread reports through methods
(:meth:`Health.tick_started`, :meth:`Health.reject`, :meth:`Health.acted`, ...) and the
diagnostics timer reads one consistent :class:`HealthReport` with :meth:`Health.report`; no caller
touches the fields or the lock.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from pai_ros.diagnostic_level import Level

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_BEHIND_FRACTION = 0.5  # half the control periods skipped: the policy acts at half its rate or less


def reason_kind(reason: str) -> str:
    """A refusal's reason without its numbers: "0.41 s old" and "0.44 s old" are one kind."""
    return _NUMBER.sub("#", reason)


def refusal_words(observe_only: bool) -> tuple[str, str]:
    """What a refused tick loses and what its end brings back, as the log and /diagnostics say it:
    observe-only (``publish_actions`` false) never sends an action, so "no action" would say nothing."""
    return ("not interpreted", "interpreting again") if observe_only else ("no action", "acting again")


@dataclass(frozen=True)
class HealthReport:
    """One consistent reading of :class:`Health` (what a /diagnostics message shows)."""

    level: Level
    message: str
    ticks: int
    actions: int
    skipped: int
    rejected: int
    ages_s: dict[str, float]
    rejections_since_last: str  # "N x reason; ..." since the previous report
    tick_mean_ms: float
    tick_p99_ms: float
    skipped_since_last: int = 0  # control periods skipped since the previous report
    # Whether the ticks keep up with the control rate since the previous report: a status of its own,
    # beside the one about acting (a slow but correct tick is not a reason not to act).
    pace: tuple[Level, str] = (Level.OK, "")


class Health:
    """Counters and status of the live tick (see the module docstring for the threading rule)."""

    def __init__(self, history: int = 1000, *, observe_only: bool = False) -> None:
        self._lock = threading.Lock()
        self._lost = refusal_words(observe_only)[0]
        self._ticks = self._actions = self._skipped = self._rejected = 0
        self._window_started = self._window_skipped = 0  # since the previous report
        self._level, self._message = Level.WARN, "waiting for the first observation"
        self._ages: dict[str, float] = {}
        # Whole ticks that computed an action (published, or refused because it came too late).
        self._tick_s: deque[float] = deque(maxlen=history)
        # Every reason since the last report: a one-tick fault (a stamp that jumped back) must not
        # vanish behind the next tick's message. Keyed by the reason without its numbers, so that
        # "0.41 s old", "0.44 s old", ... count as one kind.
        self._recent: dict[str, tuple[int, str]] = {}

    def tick_started(self) -> None:
        with self._lock:
            self._ticks += 1
            self._window_started += 1

    def skipped(self) -> None:
        """A tick came due while the previous one was still computing (never queued)."""
        with self._lock:
            self._skipped += 1
            self._window_skipped += 1

    def reject(self, reason: str, seconds: float | None = None) -> None:
        """No action this tick, and why; ``seconds``: the tick ran to the end (too late) and took that long."""
        with self._lock:
            self._rejected += 1
            if seconds is not None:
                self._tick_s.append(seconds)
            self._level, self._message = Level.ERROR, f"{self._lost}: {reason}"
            kind = reason_kind(reason)
            self._recent[kind] = (self._recent.get(kind, (0, ""))[0] + 1, reason)

    def set_ages(self, ages_s: dict[str, float]) -> None:
        with self._lock:
            self._ages = dict(ages_s)

    def acted(self, seconds: float, published: bool, level: Level, message: str) -> None:
        """A tick produced an action (published or, observe-only, not) and the status it leaves."""
        with self._lock:
            self._actions += int(published)
            self._tick_s.append(seconds)
            self._level, self._message = level, message

    @property
    def counts(self) -> tuple[int, int, int, int]:
        """(ticks, actions, skipped, rejected)"""
        with self._lock:
            return self._ticks, self._actions, self._skipped, self._rejected

    def tick_latencies_ms(self) -> np.ndarray:
        with self._lock:
            return np.asarray(self._tick_s, dtype=np.float64) * 1000.0

    def report(self) -> HealthReport:
        """A consistent snapshot; also starts a new 'rejections since last' window."""
        with self._lock:
            ms = np.asarray(self._tick_s, dtype=np.float64) * 1000.0
            recent = "; ".join(f"{n} x {reason}" for n, reason in self._recent.values())
            self._recent = {}
            pace = self._pace(float(ms.mean()) if ms.size else None)
            skipped_now, self._window_started, self._window_skipped = self._window_skipped, 0, 0
            return HealthReport(
                level=self._level, message=self._message, ticks=self._ticks, actions=self._actions,
                skipped=self._skipped, rejected=self._rejected, ages_s=dict(self._ages),
                rejections_since_last=recent,
                tick_mean_ms=float(ms.mean()) if ms.size else float("nan"),
                tick_p99_ms=float(np.percentile(ms, 99)) if ms.size else float("nan"), skipped_since_last=skipped_now,
                pace=pace)

    def _pace(self, tick_mean_ms: float | None) -> tuple[Level, str]:
        """Whether the ticks since the previous report kept up with the control rate: a chunk trained
        at 30 Hz plays out slower when half the periods are skipped, and a tick that never ends stops
        the robot, while the last finished tick still reads OK (called under the lock)."""
        started, skipped = self._window_started, self._window_skipped
        if skipped and not started:
            return Level.ERROR, (f"no tick started since the last report, {skipped} control periods skipped: the "
                                 "tick in progress is stuck or far slower than the period")
        took = f"; a tick takes {tick_mean_ms:.0f} ms" if tick_mean_ms is not None else ""
        if skipped >= 2 and skipped >= _BEHIND_FRACTION * (started + skipped):
            return Level.WARN, (f"falling behind: {skipped} of {started + skipped} control periods skipped since the "
                                f"last report{took}: use a cheaper heatmap_method, a GPU, or a lower control_rate_hz")
        return Level.OK, f"keeping up: {skipped} of {started + skipped} control periods skipped since the last report"
