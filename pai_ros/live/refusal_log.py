"""What the node's log says about refused ticks, so a terminal shows why no action goes out.

``/diagnostics`` carries every refusal, but a user on a fresh set-up watches the terminal, where
the node said "ready" and then nothing while it refused every tick (and ``ros2 topic echo`` is
not there on a wheels-only install). The rule: the first refusal after acting (or at start) is
logged at once; a refusal of another kind at most once a second; the same kind again every
``remind_s`` with how many ticks were refused meanwhile; and the return to acting once. Kinds
are the reasons without their numbers ("0.41 s old" and "0.44 s old" are one kind).
"""

from __future__ import annotations

from pai_ros.live.health import reason_kind, refusal_words
from pai_ros.timestamps import NS_PER_S


class RefusalLog:
    """Turns the tick's outcomes into a few log lines (see the module docstring)."""

    def __init__(self, remind_s: float = 5.0, other_kind_s: float = 1.0, *, observe_only: bool = False) -> None:
        self.remind_ns, self.other_kind_ns = int(remind_s * NS_PER_S), int(other_kind_s * NS_PER_S)
        # Observe-only sends no action either way: what a refused tick loses there is its pictures.
        self.lost, self.resumed = refusal_words(observe_only)
        self.kind: str | None = None
        self.logged_ns: int | None = None
        self.refused_since_logged = 0
        self.refused_in_a_row = 0

    def refused(self, reason: str, now_ns: int) -> str | None:
        """The line to log for this refusal, or None (said recently)."""
        self.refused_in_a_row += 1
        self.refused_since_logged += 1
        kind = reason_kind(reason)
        since = None if self.logged_ns is None else now_ns - self.logged_ns
        due = (since is None or since >= self.remind_ns or since < 0
               or (kind != self.kind and since >= self.other_kind_ns))
        if not due:
            return None
        more = self.refused_since_logged - 1
        line = f"{self.lost}: {reason}" + (f" ({more} more tick(s) refused since the last report)" if more else "")
        self.kind, self.logged_ns, self.refused_since_logged = kind, now_ns, 0
        return line

    def acted(self) -> str | None:
        """The line to log when acting resumes after refusals, else None."""
        if not self.refused_in_a_row:
            return None
        line = f"{self.resumed} after {self.refused_in_a_row} refused tick(s)"
        self.kind, self.logged_ns, self.refused_since_logged, self.refused_in_a_row = None, None, 0, 0
        return line
