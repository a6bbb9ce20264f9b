"""``use_sim_time`` without a ``/clock``: say so, instead of falling silent.

With ``use_sim_time:=true`` a node's clock reads 0 until the first ``/clock`` message, and every
timer on that clock (the control tick, the replay, the status reports) waits for it. A simulator
that is not started, or publishes ``/clock`` in another domain or namespace, leaves the node
silent, ``/diagnostics`` included: standard rclpy behaviour that looks like a hang. This watch
runs on the steady clock, so it fires regardless, and reports on the node's own ``/diagnostics``
publisher (WARN, name ``<node>: clock``) and in the log while no simulated time has arrived, then
once OK under the same name when it does (a monitor would otherwise keep showing the WARN).
"""

from __future__ import annotations

import time
from typing import Any

from rclpy.clock import Clock, ClockType

from pai_ros.diagnostic_level import Level
from pai_ros.ros.messages import diagnostic_array, status_name

WARN_AFTER_S = 3.0  # a simulator that is starting publishes /clock within a second or two
CHECK_PERIOD_S = 1.0


class SimClockWatch:
    """Reports while ``use_sim_time`` is on and the node's clock has not started; nothing otherwise."""

    def __init__(self, node: Any, diagnostics_publisher: Any) -> None:
        self.node, self.publisher = node, diagnostics_publisher
        self.waiting = False  # True while reporting that no /clock has arrived
        self._started = time.monotonic()
        self.timer = None
        if node.get_parameter("use_sim_time").value:
            self.timer = node.create_timer(CHECK_PERIOD_S, self.check, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def check(self) -> None:
        no_clock = self.node.get_clock().now().nanoseconds == 0
        if not no_clock:
            if self.waiting:  # clear the WARN a monitor shows under this name
                self.node.get_logger().info("simulated time has started (/clock received)")
                self._publish(Level.OK, "simulated time has started (/clock received)", {"use_sim_time": "true"})
            self.waiting = False
            self.timer.cancel()  # time only stops again if the simulator restarts from 0: not watched
            return
        waited = time.monotonic() - self._started
        if waited < WARN_AFTER_S:
            return
        clock_topic = self.node.resolve_topic_name("/clock")
        message = (f"use_sim_time is true and no {clock_topic} message has arrived in {waited:.0f} s: this node "
                   "runs on simulated time and waits for it (start the simulator, or set use_sim_time:=false)")
        if not self.waiting:
            self.node.get_logger().warning(message)
            self.waiting = True
        self._publish(Level.WARN, message, {"use_sim_time": "true", "waited_s": f"{waited:.0f}"})

    def time_runs(self) -> None:
        """Told by a timer on the node's clock that fired (so simulated time runs): say so now. The
        watch's own check comes once a second, and a short replay can end before it."""
        if self.timer is not None and not self.timer.is_canceled():
            self.check()

    def _publish(self, level: Level, message: str, values: dict[str, str]) -> None:
        self.publisher.publish(diagnostic_array(status_name(self.node, "clock"), level, message, values, "",
                                                self.node.get_clock().now().to_msg()))
