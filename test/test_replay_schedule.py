"""ReplaySchedule: frame k due k periods after the first; late frames catch up; a clock that goes back restarts it."""

from pai_ros.data.replay_schedule import MAX_PER_TICK, ReplaySchedule

P = 100_000_000  # 10 Hz


def run(schedule: ReplaySchedule, ticks: list[int], ready: set[int] | None = None) -> list[int]:
    """Frames sent per tick; ``ready``: the ticks at which decoding has frames (None: always)."""
    sent_per_tick = []
    for i, now in enumerate(ticks):
        n = 0
        if ready is None or i in ready:
            n = schedule.due(now)
            for _ in range(n):
                schedule.sent_one(now)
        sent_per_tick.append(n)
    return sent_per_tick


def test_one_frame_per_period_on_time_and_with_a_timer_a_little_early() -> None:
    s = ReplaySchedule(P)
    assert run(s, [1000 + k * P - (P // 10 if k % 2 else 0) for k in range(20)]) == [1] * 20
    assert s.sent == 20


def test_late_frames_catch_up_at_most_two_per_tick_then_keep_the_original_time() -> None:
    """Decoding stalls for ticks 3..6: 4 frames late. Before, the replay stayed 4 periods behind for good."""
    s = ReplaySchedule(P)
    ticks = [k * P for k in range(16)]
    sent = run(s, ticks, ready=set(range(16)) - {3, 4, 5, 6})
    assert sent[:3] == [1, 1, 1] and sent[3:7] == [0, 0, 0, 0]
    assert sent[7:11] == [MAX_PER_TICK] * 4 and sent[11:] == [1] * 5  # 4 late frames caught up over 4 ticks
    assert sum(sent) == 16  # on time again: frame 15 at tick 15


def test_the_schedule_starts_with_the_first_frame_not_the_timer() -> None:
    """A decoder that takes a second to start: its frames are not late, and go out one per period."""
    s = ReplaySchedule(P)
    assert run(s, [k * P for k in range(20)], ready=set(range(10, 20))) == [0] * 10 + [1] * 10


def test_a_clock_that_goes_back_restarts_the_schedule() -> None:
    """A simulator reset: waiting for the old time to come back would stop the replay for the jump."""
    s = ReplaySchedule(P)
    run(s, [100 * P + k * P for k in range(5)])
    assert s.due(10 * P) == 1 and s.start_ns is None and s.sent == 0
    s.sent_one(10 * P)
    assert s.due(11 * P) == 1 and s.due(11 * P + P // 10) == 1


def test_a_backlog_of_more_than_a_second_is_not_caught_up() -> None:
    """A 3 s stall (a clock stepped forward, a decoder stuck longer than its queue): catching up would play
    3 s at double speed. One frame, then on time from there."""
    s = ReplaySchedule(P)
    run(s, [k * P for k in range(3)])
    assert s.due(33 * P) == 1
    s.sent_one(33 * P)
    assert [s.due(t) for t in (34 * P, 35 * P)] == [1, 2]  # frame 4 due at 34 P; 35 P: frames 4 and 5
