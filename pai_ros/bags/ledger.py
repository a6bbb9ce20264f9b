"""A recording's ledger: what a recorder was asked to record, what it received and what reached the bag.

ROS-free, so that what the recorder reports (its ``/diagnostics`` status and its closing summary)
is decided here and tested without a ROS graph; ``pai_ros.ros.recorder_node`` only counts into it
and publishes or logs what it says. Counts written come from the
:class:`~pai_ros.bags.writer.BagWriter` (``counts``, or ``durable_counts`` after a write error:
only what was flushed is in the bag then).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pai_ros.bags.errors import BagWriteError
from pai_ros.diagnostic_level import Level

# A configured topic with no publisher this long after the start is said once: a typo in `topics`
# would otherwise record nothing of it for the whole session and say so only at shutdown.
ABSENT_AFTER_S = 5.0


@dataclass
class TopicTally:
    """One recorded topic: its type, how it is subscribed, and its counters."""

    topic: str
    msgtype: str
    reliable: bool
    received: int = 0
    failed: int = 0  # received but not handed to the writer (after a write error, or a message it refused)


@dataclass
class Summary:
    """What the recorder says when it stops: log lines, whether nothing was lost here, its last status."""

    lines: list[tuple[Level, str]] = field(default_factory=list)
    ok: bool = True
    closed: tuple[Level, str] | None = None  # the status once the bag is closed (None after a write error)


class RecordingLedger:
    """Counters of one recording, and the status and summary they make."""

    def __init__(self, output: str, wanted: set[str], *, absent_after_s: float = ABSENT_AFTER_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.output = output
        self.wanted = set(wanted)  # resolved topic names asked for (heatmaps matched by pattern are not listed)
        self.tallies: dict[str, TopicTally] = {}
        self.refused: set[str] = set()  # topics that cannot be recorded (unknown type, writer refused)
        self.fatal: BagWriteError | None = None  # the first write error: recording stopped
        self.closed: tuple[Level, str] | None = None  # (level, message) once the bag is closed: the last word
        self._clock = clock
        self._started = clock()
        self._absent_after_s = absent_after_s
        self._absent_said = False

    def known(self, topic: str) -> bool:
        """Already recorded or refused: nothing more to discover about it."""
        return topic in self.tallies or topic in self.refused

    def record(self, tally: TopicTally) -> None:
        """Count ``tally``'s topic as recorded (once it is subscribed: a failed subscription is not)."""
        self.tallies[tally.topic] = tally

    def refuse(self, topic: str) -> None:
        self.refused.add(topic)

    def stop_for(self, error: BagWriteError) -> bool:
        """Note the first write error; False for a later one (already said)."""
        if self.fatal is not None:
            return False
        self.fatal = error
        return True

    def total_received(self) -> int:
        return sum(t.received for t in self.tallies.values())

    def absent(self) -> list[str]:
        """Configured topics not recorded (no publisher yet), after the grace period."""
        if self._clock() - self._started <= self._absent_after_s:
            return []
        return sorted(t for t in self.wanted if not self.known(t))

    def newly_absent(self) -> list[str]:
        """:meth:`absent`, the first time the grace period has passed; then never again (said once)."""
        if self._absent_said or self._clock() - self._started <= self._absent_after_s:
            return []
        self._absent_said = True
        return self.absent()

    def status(self, written: dict[str, int]) -> tuple[Level, str, dict[str, str]]:
        """``(level, message, values)`` of the recorder's ``/diagnostics`` report, ``written`` per topic."""
        values = {"output": str(self.output), "messages_written": str(sum(written.values()))}
        for topic in sorted(self.tallies):
            values[topic] = f"received {self.tallies[topic].received}, written {written.get(topic, 0)}"
        if self.fatal is not None:
            values.update(errno=str(self.fatal.errno), messages_on_disk=values["messages_written"])
            return Level.ERROR, str(self.fatal), values
        if self.closed is not None:
            return *self.closed, values
        problems = []
        absent = self.absent()
        if absent:
            problems.append(f"no publisher on {', '.join(absent)}")
        if self.refused:
            problems.append(f"cannot record {', '.join(sorted(self.refused))} (see the log)")
        failed = sorted(t for t, tally in self.tallies.items() if tally.failed)
        if failed:
            problems.append(f"messages not written on {', '.join(failed)} (see the log)")
        recording = f"recording {values['messages_written']} messages on {len(self.tallies)} topic(s)"
        if problems:
            return Level.WARN, f"{recording}; {'; '.join(problems)}", values
        return Level.OK, recording, values

    def summarise(self, written: dict[str, int], files: list[str]) -> Summary:
        """The closing summary, per topic received vs ``written`` (on disk, after a write error), and the
        status to publish last (also kept as :attr:`closed`)."""
        what = "on disk" if self.fatal is not None else "written"
        summary = Summary(ok=self.fatal is None)
        for topic in sorted(self.tallies):
            tally = self.tallies[topic]
            n = written.get(topic, 0)
            line = f"summary {topic} [{tally.msgtype}]: received {tally.received}, {what} {n}"
            if n != tally.received:
                summary.ok = False
                summary.lines.append((Level.WARN, f"{line} ({tally.received - n} not written)"))
            else:
                summary.lines.append((Level.OK, line))
        never = sorted(self.wanted - set(self.tallies) - self.refused)
        for topic in never:
            summary.lines.append((Level.WARN, f"summary {topic}: never published while recording; nothing recorded"))
        total = sum(written.values())
        if self.fatal is not None:
            summary.lines.append((Level.WARN, f"bag left unfinished: {self.output} ({total} messages on disk); "
                                              f"`pai bag recover {self.output}` writes them as a complete bag"))
            return summary
        closed = f"bag closed: {self.output} ({total} messages on {len(written)} topics; {', '.join(files)})"
        summary.lines.append((Level.OK, closed))
        problems = ([] if summary.ok else ["some messages received were not written (see the log)"]) + (
            [f"never published: {', '.join(never)}"] if never else [])
        self.closed = summary.closed = (Level.WARN, f"{closed}; {'; '.join(problems)}") if problems else \
            (Level.OK, closed)
        return summary
