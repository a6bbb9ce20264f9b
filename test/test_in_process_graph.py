"""The demos' in-process graph (pai_ros.ros.in_process): whatever ends the run, every node is
stopped once and destroyed, and rclpy is shut down (real rclpy nodes, in a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.ros

SCRIPT = textwrap.dedent("""
    import json, sys
    import rclpy
    from rclpy.node import Node
    from pai_ros.ros.in_process import InProcessGraph

    events = []

    class Stoppable(Node):
        def __init__(self, name, fail_stop=False):
            super().__init__(name)
            self.fail_stop = fail_stop
        def shutdown(self):
            events.append("stop " + self.get_name())
            if self.fail_stop:
                raise RuntimeError("stop failed")
        def destroy_node(self):
            events.append("destroy " + self.get_name())
            super().destroy_node()

    class Failing(Node):
        def __init__(self):
            raise RuntimeError("cannot start")

    case = sys.argv[1]
    error = None
    try:
        with InProcessGraph() as graph:
            first = graph.add(Stoppable("first", fail_stop=case == "stop_fails"))
            second = graph.add(Stoppable("second", fail_stop=case == "newest_stop_fails"))
            if case == "constructor_fails":
                graph.add(Failing())
            graph.settle(0.1)
            if case == "recording_closed":
                class Recorder:
                    def drain(self, executor): events.append("drain")
                    def finish(self): events.append("finish"); return True
                graph.close_recording(second, Recorder())
    except RuntimeError as exc:
        error = str(exc)
    print(json.dumps({"events": events, "error": error, "rclpy_ok": rclpy.ok()}))
""")


def _run(case: str, env: dict) -> dict:
    res = subprocess.run([sys.executable, "-c", SCRIPT, case], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_a_node_that_fails_to_start_leaves_the_others_stopped_destroyed_and_rclpy_shut_down(ros_env: dict) -> None:
    out = _run("constructor_fails", ros_env)
    assert out["error"] == "cannot start"  # the error that ended the run comes through
    assert out["events"] == ["stop second", "destroy second", "stop first", "destroy first"]
    assert out["rclpy_ok"] is False


def test_a_node_stopped_by_close_recording_is_not_stopped_again(ros_env: dict) -> None:
    out = _run("recording_closed", ros_env)
    assert out["error"] is None
    assert out["events"] == ["stop second", "drain", "finish", "destroy second", "stop first", "destroy first"]
    assert out["rclpy_ok"] is False


def test_a_node_that_fails_to_stop_is_still_destroyed_and_so_are_the_others(ros_env: dict) -> None:
    out = _run("stop_fails", ros_env)
    assert out["error"] == "stop failed"
    assert out["events"] == ["stop second", "destroy second", "stop first", "destroy first"]
    assert out["rclpy_ok"] is False


def test_the_newest_node_failing_to_stop_still_lets_the_older_ones_stop(ros_env: dict) -> None:
    """Nodes are stopped newest first: one that fails must not leave the ones after it running."""
    out = _run("newest_stop_fails", ros_env)
    assert out["error"] == "stop failed"
    assert out["events"] == ["stop second", "destroy second", "stop first", "destroy first"]
    assert out["rclpy_ok"] is False
