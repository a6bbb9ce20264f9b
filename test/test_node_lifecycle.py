"""How a node process ends: signals during start-up (real rclpy signal handling, in a subprocess)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest
from ros_processes import Probe, Proc

pytestmark = pytest.mark.ros

SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    import rclpy
    from std_msgs.msg import String
    from pai_ros.ros.lifecycle import run_node

    def factory():
        node = rclpy.create_node("slow_starter")
        os.kill(os.getpid(), signal.SIG{sig})  # the user stops it while it loads a policy
        deadline = time.monotonic() + 10
        while rclpy.ok() and time.monotonic() < deadline:
            time.sleep(0.01)
        node.create_subscription(String, "x", lambda m: None, 1)  # raises: the context is gone
        return node

    sys.exit(run_node("slow_starter", factory, args=[]))
""")


@pytest.mark.parametrize("sig", ["INT", "TERM"])
def test_a_signal_while_starting_ends_without_a_traceback(sig: str, ros_env: dict) -> None:
    """policy_node took 3-6 s to load; Ctrl-C then printed a 21-line RCLError and exited 1."""
    res = subprocess.run([sys.executable, "-c", SCRIPT.replace("{sig}", sig)], capture_output=True, text=True,
                         env=ros_env, timeout=60)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    # SIGINT may also reach Python as KeyboardInterrupt first (rclpy chains the default handler):
    # then nothing is said at all, as for a Ctrl-C later on.
    said = res.stderr.strip().splitlines()
    assert said == ["slow_starter: stopped while starting"] or (sig == "INT" and said == []), said


def test_an_error_while_spinning_keeps_its_traceback(ros_env: dict) -> None:
    """Only start-up is covered: a bug after a signal during spin must not pass as 'stopped while starting'."""
    script = textwrap.dedent("""
        import os, signal, sys, time
        import rclpy
        from pai_ros.ros.lifecycle import run_node

        def spin(node):
            os.kill(os.getpid(), signal.SIGTERM)
            while rclpy.ok():
                time.sleep(0.01)
            None.missing  # a bug

        sys.exit(run_node("spinner", lambda: rclpy.create_node("spinner"), args=[], spin=spin))
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ros_env, timeout=60)
    assert res.returncode == 1 and "AttributeError" in res.stderr and "stopped while starting" not in res.stderr


def test_a_publish_cut_off_by_a_signal_while_spinning_ends_without_a_traceback(ros_env: dict) -> None:
    """replay_node's timer published as Ctrl-C shut the context down: RCLError "publisher's context is
    invalid", a traceback and exit 1 (2 of 10 stops in a walkthrough). rcl's error after the shutdown
    is the stop; the test above keeps any other error's traceback."""
    script = textwrap.dedent("""
        import os, signal, sys, time
        import rclpy
        from std_msgs.msg import String
        from pai_ros.ros.lifecycle import run_node

        def spin(node):
            pub = node.create_publisher(String, "x", 1)
            os.kill(os.getpid(), signal.SIGTERM)
            while rclpy.ok():
                time.sleep(0.01)
            pub.publish(String(data="late"))  # what a timer callback did at that moment

        sys.exit(run_node("publisher", lambda: rclpy.create_node("publisher"), args=[], spin=spin))
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ros_env, timeout=60)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr


def test_rcl_lines_are_held_only_to_drop_them_when_the_one_line_says_it_all(ros_env: dict) -> None:
    """rcl's C code writes to descriptor 2 while rclpy.init runs: dropped when init fails with our line,
    given back byte for byte when it starts, or when something else (Ctrl-C, a bug) stops it."""
    script = textwrap.dedent("""
        import os, sys
        import rclpy
        from pai_ros.ros import lifecycle

        def init(args=None, **_):
            os.write(2, "[WARN] [1.5] [rcl]: said by rcl \\u00e9\\n".encode())
            os.write(2, b"another library's line\\n")
            # rcl's lines in a format of the user's (RCUTILS_CONSOLE_OUTPUT_FORMAT), and coloured
            os.write(2, b"ERROR rcl: Failed to parse global arguments\\n")
            os.write(2, b"\\x1b[31m[ERROR] [1.5] [rcl]: coloured\\x1b[0m\\n")
            os.write(2, b"[ERROR] [rcl.rcl_init]: with its function name\\n")
            if sys.argv[1] == "parse":
                raise RuntimeError("failed to initialize rcl: Couldn't parse remap rule: '-r x'")
            if sys.argv[1] == "other":  # as rcl says it, with the C++ file it came from
                raise RuntimeError("failed to initialize logging: Failed to create log directory '/proc/x': 2, "
                                   "at /project/src/rcl_logging_spdlog.cpp:153")
            if sys.argv[1] == "bug":
                raise ValueError("a bug")

        lifecycle.rclpy.init = init
        print(lifecycle.init_ros("n", []), file=sys.stderr)
    """)

    def run(mode: str) -> list[str]:
        res = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, env=ros_env, timeout=60)
        return res.stderr.decode("utf-8").splitlines()

    parse = run("parse")
    assert parse[0] == "another library's line" and parse[2] == "False", parse
    assert parse[1].startswith("n: error: cannot read the ROS arguments: Couldn't parse remap rule: '-r x' ("), parse
    assert run("other") == ["another library's line", "n: error: cannot start ROS: failed to initialize logging: "
                            "Failed to create log directory '/proc/x': 2", "False"]
    assert run("ok") == ["[WARN] [1.5] [rcl]: said by rcl \u00e9", "another library's line",
                         "ERROR rcl: Failed to parse global arguments", "\x1b[31m[ERROR] [1.5] [rcl]: coloured\x1b[0m",
                         "[ERROR] [rcl.rcl_init]: with its function name", "True"]
    bug = run("bug")
    assert bug[:2] == ["[WARN] [1.5] [rcl]: said by rcl \u00e9", "another library's line"]
    assert bug[-1] == "ValueError: a bug"


def test_a_node_started_with_stderr_closed_still_says_what_is_wrong(ros_env: dict) -> None:
    """Nothing to hold on descriptor 2: Python's sys.stderr is None, and the line goes to stdout."""
    res = subprocess.run(f"{sys.executable} -m pai_ros.ros.replay_node --ros-args -p dataset_root:=/nonexistent 2>&-",
                         shell=True, capture_output=True, text=True, env=ros_env, timeout=120)
    assert res.returncode == 1 and "replay_node: error: " in res.stdout and "/nonexistent" in res.stdout, res


STOPPER = textwrap.dedent("""
    import sys, time
    from rclpy.duration import Duration
    from rclpy.node import Node
    from std_msgs.msg import String
    from pai_ros.ros.lifecycle import run_node

    class Stopper(Node):
        def __init__(self):
            super().__init__("stopper")
            if sys.argv[1] == "slow_start":
                print("STARTING", flush=True)
                time.sleep(30)  # loading a policy
            self.pub = self.create_publisher(String, "last_word", 10)
            self.create_timer(0.2, lambda: self.pub.publish(String(data="running")))

        def shutdown(self):
            print("SHUTDOWN", flush=True)
            if sys.argv[1] == "slow_stop":
                time.sleep(1.0)  # a tick in progress
            self.pub.publish(String(data="stop here"))
            self.pub.wait_for_all_acked(Duration(seconds=2.0))

    sys.exit(run_node("stopper", Stopper, args=[], publishes_when_stopped=True))
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_node_that_publishes_when_stopped_still_can(sig: int, ros_env: dict) -> None:
    """policy_node tells a trajectory controller where to stop in its shutdown(); with rclpy's signal
    handler the context was already down by then and nothing could be sent. The node publishes its
    last word on the signal, a subscriber in another process gets it, and the exit is clean."""
    probe = Probe(["last_word:String:reliable"], ros_env)  # reliable: the node waits for its ack
    node = Proc([sys.executable, "-c", STOPPER, "plain"], ros_env, "stopper")
    try:
        probe.wait_for(lambda m: m["data"] == "running", 60)
        assert node.stop(sig) == 0
        probe.wait_for(lambda m: m["data"] == "stop here", 10)
        assert "Traceback" not in "\n".join(node.lines), node.lines
    finally:
        for p in (node, probe):
            p.stop()


def test_a_second_signal_while_stopping_does_not_cut_the_last_word(ros_env: dict) -> None:
    """ros2 launch follows SIGINT with SIGTERM; a second Ctrl-C is a reflex. Raised as KeyboardInterrupt
    inside shutdown(), it skipped the stop without a word."""
    probe = Probe(["last_word:String:reliable"], ros_env)  # reliable: the node waits for its ack
    node = Proc([sys.executable, "-c", STOPPER, "slow_stop"], ros_env, "stopper")
    try:
        probe.wait_for(lambda m: m["data"] == "running", 60)
        node.popen.send_signal(signal.SIGINT)
        node.wait_for_line(lambda line: line == "SHUTDOWN", 10)
        node.popen.send_signal(signal.SIGTERM)
        node.popen.send_signal(signal.SIGINT)
        assert node.wait(30) == 0
        probe.wait_for(lambda m: m["data"] == "stop here", 10)
        said = [line for line in node.lines if "already stopping" in line]
        assert len(said) == 2 and said[0] == ("stopper: already stopping (sending its last messages; kill -9 stops "
                                              "it without them)"), node.lines
        assert "Traceback" not in "\n".join(node.lines), node.lines
    finally:
        for p in (node, probe):
            p.stop()


def test_a_signal_while_a_node_that_publishes_when_stopped_starts_stops_it_at_once(ros_env: dict) -> None:
    node = Proc([sys.executable, "-c", STOPPER, "slow_start"], ros_env, "stopper")
    try:
        node.wait_for_line(lambda line: line == "STARTING", 60)
        node.popen.send_signal(signal.SIGINT)
        assert node.wait(10) == 0  # not after the 30 s load
        assert node.lines[-1] == "stopper: stopped while starting" and "SHUTDOWN" not in node.lines, node.lines
    finally:
        node.stop()
