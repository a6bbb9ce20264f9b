"""Is an observation fit to act on? Age, clock skew, stamps that go backwards, and input rates.

Pure (no ROS): the policy node hands over header stamps and receive times in nanoseconds of its
own clock. A robot must never act on an observation that is stale, stamped in the future (the
robot's and this computer's clocks disagree, so "fresh" means nothing), or older than one it
has already seen (a clock jump, a restarted bag, reordered messages): :meth:`InputGate.check`
returns the reason, and the node publishes no action for that tick.

Stamps that went backwards re-baseline at once: if the new time base is sane, the next tick is
judged on age alone, so the node recovers without a restart.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class FreshnessLimits:
    max_age_s: float  # older inputs are stale
    max_skew_s: float  # inputs stamped further ahead of our clock are from an unsynchronised clock
    # Inputs of one observation stamped further apart than this are not one moment (0: not checked):
    # a camera lagging max_age_s behind fresh joints would still pass the age check.
    max_spread_s: float = 0.0


@dataclass
class FreshnessVerdict:
    reason: str | None  # None: fit to act on
    ages_s: dict[str, float]


class InputGate:
    """Tracks, per input name, the last stamp judged and how many messages arrived."""

    def __init__(self, limits: FreshnessLimits) -> None:
        self.limits = limits
        self._last_stamp: dict[str, int] = {}
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._window: tuple[int, dict[str, int]] | None = None  # (start ns, counts at start)

    def received(self, name: str) -> None:
        """Count one arrival (called from subscription callbacks, any thread)."""
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + 1

    def rates_hz(self, now_ns: int) -> dict[str, float]:
        """Arrivals per second per input since the previous call (empty on the first call)."""
        with self._lock:
            counts = dict(self._counts)
        previous, self._window = self._window, (now_ns, counts)
        if previous is None or now_ns <= previous[0]:
            return {}
        dt = (now_ns - previous[0]) / 1e9
        return {n: (c - previous[1].get(n, 0)) / dt for n, c in counts.items()}

    def check(self, stamps_ns: dict[str, int], now_ns: int) -> FreshnessVerdict:
        """Judge one tick's inputs (their header stamps) against ``now_ns``."""
        ages = {n: (now_ns - s) / 1e9 for n, s in stamps_ns.items()}
        went_back = {}
        for name, stamp in stamps_ns.items():
            last = self._last_stamp.get(name)
            if last is not None and stamp < last:
                went_back[name] = (last - stamp) / 1e9
            self._last_stamp[name] = stamp
        if went_back:
            name = max(went_back, key=went_back.get)
            return FreshnessVerdict(f"{name} stamp went back {went_back[name]:.3f} s (clock jump, restarted source "
                                    "or reordered messages)", ages)
        ahead = {n: -a for n, a in ages.items() if -a > self.limits.max_skew_s}
        if ahead:
            name = max(ahead, key=ahead.get)
            return FreshnessVerdict(f"{name} is stamped {ahead[name]:.3f} s in the future (max_clock_skew_s "
                                    f"{self.limits.max_skew_s}): are the clocks synchronised?", ages)
        stale = {n: a for n, a in ages.items() if a > self.limits.max_age_s}
        if stale:
            name = max(stale, key=stale.get)
            return FreshnessVerdict(f"{name} is {stale[name]:.3f} s old (max_observation_age_s "
                                    f"{round(self.limits.max_age_s, 3)})", ages)
        if self.limits.max_spread_s and len(stamps_ns) > 1:
            oldest, newest = min(stamps_ns, key=stamps_ns.get), max(stamps_ns, key=stamps_ns.get)
            spread_s = (stamps_ns[newest] - stamps_ns[oldest]) / 1e9
            if spread_s > self.limits.max_spread_s:
                return FreshnessVerdict(f"{oldest} is {spread_s:.3f} s older than {newest} (max_input_spread_s "
                                        f"{round(self.limits.max_spread_s, 3)}): the inputs are not one moment", ages)
        return FreshnessVerdict(None, ages)
