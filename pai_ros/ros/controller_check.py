"""Ask a ros2_control controller for its ``joints`` and check our action names against them.

The answer arrives asynchronously (the controller may start after the policy node); until it
does, the gate's verdict says the joints are not verified yet.
"""

from __future__ import annotations

import time
from typing import Any

from rcl_interfaces.srv import GetParameters
from rclpy.node import Node

from pai_ros.live.controllers import ControllerGate, joint_mismatch

FIRST_SAID_AFTER_S = 2.0  # a controller that is up answers well within this: no warning on a healthy start
REMIND_EVERY_S = 10.0  # then a reminder while it lasts, as for refused ticks


class ControllerCheck:
    """Asks until the controller answers, then writes the verdict into ``gate`` (the tick reads it)."""

    def __init__(self, node: Node, gate: ControllerGate, action_names: list[str], retry_s: float = 2.0) -> None:
        self.node, self.gate, self.action_names = node, gate, action_names
        self.controller, self.outputs = gate.controller, gate.checked_outputs
        self.client = node.create_client(GetParameters, f"{self.controller.rstrip('/')}/get_parameters")
        self._pending: Any = None
        self._started = time.monotonic()
        self._said_at: float | None = None  # when the hold was last said in the log
        self._timer = node.create_timer(retry_s, self._ask)
        self._ask()

    def _ask(self) -> None:
        if self.gate.verdict.verified:
            return
        self._say_hold()
        if self._pending is not None and not self._pending.done():
            return  # asked, no answer yet (a controller that never answers is reminded of above)
        if not self.client.service_is_ready():
            return
        self._pending = self.client.call_async(GetParameters.Request(names=["joints"]))
        self._pending.add_done_callback(self._answered)

    def _say_hold(self) -> None:
        """The hold in the log, not only on /diagnostics: a user watching the terminal while the arm
        does not move must see why. First once an answer is overdue, then every REMIND_EVERY_S."""
        now = time.monotonic()
        waited = now - self._started
        if waited < FIRST_SAID_AFTER_S or (self._said_at is not None and now - self._said_at < REMIND_EVERY_S):
            return
        again = "still " if self._said_at is not None else ""
        self._said_at = now
        self.node.get_logger().warning(
            f"{again}not sending {', '.join(self.outputs)} to {self.controller} after {waited:.0f} s: "
            f"{self.gate.verdict.problem} (`ros2 control list_controllers` shows whether it is active)")

    def _answered(self, future: Any) -> None:
        values = future.result().values if future.result() is not None else []
        joints = list(values[0].string_array_value) if values else []
        if not joints:
            self.gate.unusable(f"{self.controller} has no 'joints' parameter: is it a ros2_control controller?")
            return
        problems = [p for p in (joint_mismatch(o, self.controller, self.action_names, joints) for o in self.outputs) if p]
        problem = "; ".join(problems) or None
        self.gate.answered(problem)  # one assignment: a tick on the worker thread reads all of it or none
        self._timer.cancel()
        log = self.node.get_logger()
        if problem:
            log.error(problem)
        else:
            log.info(f"{self.controller} joints {joints} match the actions")
