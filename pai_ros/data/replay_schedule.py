"""When each frame of a replay is due: frame k at start + k periods, caught up after a late one.

Pure (no ROS): the replay node asks, at each timer tick, how many frames are due now. A frame
that was not decoded in time goes out as soon as it is, and the frames after it catch up at up
to ``MAX_PER_TICK`` per tick, so a decoding hiccup delays the replay for a moment instead of
stretching everything after it (it used to fall one period behind the dataset's time per late
frame, for good). A backlog of more than a second is not caught up (that would be seconds at
double speed): the replay then goes on from where it is. Several frames at once rather than
dropped ones: a recorder of the replay keeps every frame; a policy node reading the latest frame
acts on the newest.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_PER_TICK = 2  # catch up at twice the frame rate: a burst of late camera frames would flood the network


@dataclass
class ReplaySchedule:
    period_ns: int
    start_ns: int | None = None  # when frame 0 went out (None: not yet)
    sent: int = 0  # frames sent since start_ns

    def due(self, now_ns: int) -> int:
        """How many frames to send now (at most ``MAX_PER_TICK``): those whose time has come, not yet sent.

        Before the first frame went out: one (the schedule starts with it, not with the timer: a decoder
        that takes seconds to start is not a replay to catch up). A clock that went back (a simulator
        reset, a looping bag's /clock) starts it again rather than waiting out the jump.
        """
        if self.start_ns is not None and now_ns + self.period_ns < self.start_ns + (self.sent - 1) * self.period_ns:
            self.start_ns, self.sent = None, 0
        if self.start_ns is None:
            return 1
        # Frame k is due k periods after frame 0; the timer may fire a little early, so a slot counts from
        # half a period before.
        due = (now_ns - self.start_ns + self.period_ns // 2) // self.period_ns + 1
        backlog = due - self.sent
        if backlog > self.max_backlog:
            # More than a second behind (a stall longer than the decoded-ahead queue, a clock stepped forward):
            # caught up at twice the rate, it would play that long at double speed. Behind for good instead.
            self.start_ns += (backlog - 1) * self.period_ns
            backlog = 1
        return int(max(0, min(backlog, MAX_PER_TICK)))

    @property
    def max_backlog(self) -> int:
        """Frames of one second: a replay further behind than this is not caught up."""
        return max(2, -(-1_000_000_000 // self.period_ns))

    def sent_one(self, now_ns: int) -> None:
        if self.start_ns is None:
            self.start_ns = now_ns
        self.sent += 1
