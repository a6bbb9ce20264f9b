"""Several real nodes in one process on one executor: what both demos (`pai demo`, open and closed
loop) run, so that starting, spinning and stopping them is written once.

The nodes talk over DDS as separate processes would (``ros2 topic echo`` on the same domain sees
their topics); one executor keeps the demo a single command with a single progress bar. Closing
the recording is ordered: the policy stops first (no new ticks), then the recorder writes what it
has received and closes its bag, and only then are the nodes destroyed.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from pai_ros.ros import topics

if TYPE_CHECKING:
    from pai_ros.demo.assets import DemoAssets
    from pai_ros.ros.policy_node import PolicyNode
    from pai_ros.ros.recorder_node import RecorderNode

SPIN_TIMEOUT_S = 0.05  # one executor turn: short, so the progress bar and the stop condition stay current
SETTLE_S = 1.0  # after the source stops: the last ticks and summaries reach the recorder

N = TypeVar("N")


class InProcessGraph:
    """``with InProcessGraph() as graph:`` rclpy started, nodes added as they are made, and on
    leaving (normally or by an error) every node destroyed and rclpy shut down."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.executor = None
        self._stopped: set[int] = set()  # ids of nodes already shut down (shutdown is not always idempotent)
        self._closed: set[int] = set()  # ids of recorders whose bag is closed
        self._interrupted = False
        self._previous_handlers: dict[int, object] = {}

    def __enter__(self) -> InProcessGraph:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        # Ctrl-C and SIGTERM set a flag that spin_while turns into KeyboardInterrupt between executor
        # turns: never inside a callback, where it could cut a bag write in half and the bag would
        # then be closed around a damaged chunk (rclpy's own handler would shut the context at once).
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous_handlers[sig] = signal.signal(sig, self._on_signal)
        self.executor = SingleThreadedExecutor()
        return self

    def _on_signal(self, _signum: int, _frame: object) -> None:
        self._interrupted = True

    def add(self, node: N) -> N:
        """Spin ``node`` with the others; it is destroyed with the graph even if a later node fails to start."""
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def spin_while(self, running: Callable[[], bool], after_each: Callable[[], None] | None = None) -> None:
        """Spin until ``running()`` is false, calling ``after_each`` (a progress update) after every turn."""
        while running():
            self.executor.spin_once(timeout_sec=SPIN_TIMEOUT_S)
            if self._interrupted:
                raise KeyboardInterrupt
            if after_each is not None:
                after_each()

    def settle(self, seconds: float = SETTLE_S) -> None:
        end = time.monotonic() + seconds
        self.spin_while(lambda: time.monotonic() < end)

    def close_recording(self, policy: PolicyNode, recorder: RecorderNode) -> bool:
        """Stop the policy, let the recorder write everything it received, close the bag; True if lossless."""
        self._stop(policy)
        recorder.drain(self.executor)
        self._closed.add(id(recorder))
        return recorder.finish()

    def _stop(self, node) -> None:
        """The node's own ``shutdown`` (threads joined, hooks removed) once, where it has one."""
        if id(node) not in self._stopped and hasattr(node, "shutdown"):
            self._stopped.add(id(node))
            node.shutdown()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Every node stopped (a replay's reader thread left inside the video decoder aborts the
        interpreter at exit) and destroyed, newest first, each on its own: one that fails to stop
        must not keep the others alive or hide the error that ended the run."""
        import rclpy

        from pai_ros.ros.recorder_node import RecorderNode

        failed: BaseException | None = None
        try:
            # Ended early (Ctrl-C, an error): a recorder's bag is still closed, so what was recorded is
            # a complete bag, not one that needs `pai bag recover`.
            for node in self.nodes:
                if isinstance(node, RecorderNode) and id(node) not in self._closed:
                    self._closed.add(id(node))
                    try:
                        node.finish()
                    except Exception as err:  # noqa: BLE001 - the nodes are still stopped below
                        failed = failed or err
            for node in reversed(self.nodes):
                try:
                    self._stop(node)
                except Exception as err:  # noqa: BLE001 - the rest are still stopped; the first error is raised
                    failed = failed or err
                finally:
                    self.executor.remove_node(node)
                    node.destroy_node()
        finally:
            rclpy.try_shutdown()
            for sig, handler in self._previous_handlers.items():
                signal.signal(sig, handler)
        if failed is not None and exc is None:  # an error that ended the run comes first
            raise failed


def demo_recorder_parameters(bag_dir: str, cameras: list[str], topic_names: list[str]) -> list:
    """The recorder as both demos run it: heatmaps recorded, cameras with sensor QoS, then ``topic_names``."""
    from rclpy.parameter import Parameter

    return [Parameter("output", value=bag_dir), Parameter("record_heatmaps", value=True),
            Parameter("camera_topics", value=[topics.CAMERA_IMAGE.format(camera=c) for c in cameras]),
            Parameter("topics", value=list(topic_names))]


def observation_age_for(rate_hz: float) -> float:
    """The demos' ``max_observation_age_s``: observations arrive every 1/``rate_hz`` s, so half a second,
    or two of them when they come slower than that."""
    return max(0.5, 2.0 / rate_hz)


def demo_policy_parameters(assets: DemoAssets, state_names: list[str], action_names: list[str],
                           rate_hz: float, **extra: object) -> list:
    """The policy node as both demos run it: the demo policy (and its SAE when built) ticking at
    ``rate_hz`` with :func:`observation_age_for`; ``extra`` sets further parameters (``mode=...``)."""
    from rclpy.parameter import Parameter

    values = {"policy_path": str(assets.policy_dir), "state_joint_names": list(state_names),
              "action_names": list(action_names), "control_rate_hz": float(rate_hz),
              "max_observation_age_s": observation_age_for(rate_hz),
              "sae_path": str(assets.sae_dir) if assets.has_sae() else "", **extra}
    return [Parameter(name, value=value) for name, value in values.items()]
