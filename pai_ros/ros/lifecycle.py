"""Run one node as a process: init, spin, one-line errors, clean shutdown, exit status."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.signals import SignalHandlerOptions

from pai_ros.cli_help import print_help
from pai_ros.errors import UserError
from pai_ros.paramspec import Param
from pai_ros.ros.names import rcl_reason, ros_arguments_hint
from pai_ros.ros.node_help import help_requested, node_help

RCLError = _rclpy.RCLError  # rcl's errors (rclpy raises them; its own modules name them so too)


# rcl's own log lines: "[ERROR] [1796618474.91] [rcl]: Failed to parse global arguments" by default;
# RCUTILS_CONSOLE_OUTPUT_FORMAT may lay them out otherwise ("ERROR rcl: ...") and
# RCUTILS_COLORIZED_OUTPUT=1 colours them, so the logger's name is looked for as a word anywhere
# ("[rcl.rcl_init]", "ERROR,rcl,..."; not "rclpy").
_ANSI_COLOUR = re.compile(rb"\x1b\[[0-9;]*m")
_RCL_NAME = re.compile(rb"(?<![\w-])rcl(?![\w-])")


def _is_rcl_line(line: bytes) -> bool:
    return _RCL_NAME.search(_ANSI_COLOUR.sub(b"", line)) is not None


def init_ros(name: str, args: list[str] | None, **init_kwargs: Any) -> bool:
    """``rclpy.init``; False after one ``<name>: error: ...`` line when rcl refuses to start
    (mostly ``--ros-args`` it cannot parse).

    rcl's C code logs to the process's stderr before it fails ("Failed to parse global arguments",
    "Namespace not remapped to a fully qualified name"): those lines are held while it runs and
    dropped when the one line below says what is wrong; otherwise they are passed on unchanged.
    """
    held: list[bytes] = []
    try:
        with _stderr_held(held):
            rclpy.init(args=args, **init_kwargs)
    except RuntimeError as exc:  # rclpy's RCLError
        _write_stderr(b"".join(line for line in held if not _is_rcl_line(line)))
        reason = rcl_reason(exc)
        hint = ros_arguments_hint(str(exc))
        what = "cannot read the ROS arguments" if "parse" in str(exc).lower() else "cannot start ROS"
        print(f"{name}: error: {what}: {reason}{f' ({hint})' if hint else ''}", file=sys.stderr)
        return False
    except BaseException:  # Ctrl-C while starting, or a bug: whatever rcl said is the user's to see
        _write_stderr(b"".join(held))
        raise
    _write_stderr(b"".join(held))
    return True


@contextlib.contextmanager
def _stderr_held(held: list[bytes]) -> Iterator[None]:
    """What the process writes to file descriptor 2 meanwhile (C code included) goes into ``held``, as
    lines, not to the terminal. Nothing is held where there is no descriptor 2 to hold."""
    try:
        os.fstat(2)
    except OSError:  # started with stderr closed
        yield
        return
    try:
        spool = tempfile.TemporaryFile()
    except OSError:  # no writable temporary directory: rcl's lines are not worth refusing to start
        yield
        return
    if sys.stderr is not None:
        sys.stderr.flush()
    saved = os.dup(2)
    with spool:
        os.dup2(spool.fileno(), 2)
        try:
            yield
        finally:
            if sys.stderr is not None:
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            spool.seek(0)
            held.extend(spool.read().splitlines(keepends=True))


def _write_stderr(data: bytes) -> None:
    """``data`` to descriptor 2 as it was written there (bytes unchanged), if there is one."""
    with contextlib.suppress(OSError):
        while data:
            data = data[os.write(2, data):]


def run_node(name: str, factory: Callable[[], Any], args: list[str] | None = None,
             spin: Callable[[Any], None] | None = None, params: Sequence[Param] = (), doc: str = "",
             publishes_when_stopped: bool = False) -> int:
    """0 after a normal end or Ctrl-C; 1 with ``<name>: error: ...`` on stderr for a user error.

    ``-h``/``--help`` prints the node's help (``doc`` and ``params``) and starts nothing.

    ``publishes_when_stopped``: the node's ``shutdown()`` still publishes after Ctrl-C or SIGTERM (the
    policy node tells a trajectory controller where to stop). rclpy's own signal handler shuts the
    ROS context down before any Python code runs, after which nothing can be sent; here
    :class:`_StopSignals` ends the spin instead, and the context goes down after ``shutdown()``.
    """
    if help_requested(sys.argv if args is None else args):
        print_help(node_help(name, doc, params))
        return 0
    signals: _StopSignals | None = None
    if publishes_when_stopped:
        if spin is not None:
            raise TypeError("run_node: publishes_when_stopped spins the node itself")
        if not init_ros(name, args, signal_handler_options=SignalHandlerOptions.NO):
            return 1
        signals = _StopSignals(name)
        spin = signals.spin
    elif not init_ros(name, args):
        return 1
    spin = spin or rclpy.spin
    node = None
    try:
        try:
            node = factory()
            if signals is not None:
                signals.running = True
        except KeyboardInterrupt:
            print(f"{name}: stopped while starting", file=sys.stderr)
            return 0
        except (UserError, ExternalShutdownException):
            raise
        except Exception:
            # Ctrl-C or SIGTERM while the node was starting (loading a policy takes seconds): rclpy's
            # signal handler shut the context down, and the next create_subscription raised. That
            # is the user stopping the node, not a bug to show a traceback for.
            if rclpy.ok():
                raise
            print(f"{name}: stopped while starting", file=sys.stderr)
            return 0
        try:
            spin(node)
        except RCLError:
            # The same while running: a callback that was publishing when the signal handler shut
            # the context down gets rcl's "publisher's context is invalid". Only rcl's own error,
            # and only once the context is down: any other error (a bug) keeps its traceback.
            if rclpy.ok():
                raise
    except UserError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        try:
            if node is not None:
                if hasattr(node, "shutdown"):
                    node.shutdown()
                node.destroy_node()
        except KeyboardInterrupt:  # a second Ctrl-C while closing: stop now, without a traceback
            pass
        rclpy.try_shutdown()
        if signals is not None:
            signals.restore()
    return 0


class _StopSignals:
    """SIGINT and SIGTERM for a node that still publishes in its ``shutdown()``.

    While the node starts, a signal stops it at once (KeyboardInterrupt: there is nothing to send
    yet). Once it runs, the first signal only sets a flag that :meth:`spin` reads when it wakes (at
    most 0.1 s later): an exception raised wherever the main thread happens to be could land inside
    the executor or a callback. Later signals are ignored, with a line, while ``shutdown()`` sends its
    last messages (a tick in progress and 1 s for the stop to be acknowledged): ``ros2 launch``
    follows SIGINT with SIGTERM after 5 s, and a second Ctrl-C is a reflex. ``kill -9`` stops it
    without them.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.running = False  # the node exists: signals now ask it to stop
        self.requested = threading.Event()
        self._previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if not self.running:
            raise KeyboardInterrupt(signal.Signals(signum).name)
        if self.requested.is_set():
            _write_stderr(f"{self.name}: already stopping (sending its last messages; kill -9 stops it without "
                          "them)\n".encode())
            return
        self.requested.set()

    def spin(self, node: Any) -> None:
        """Spin until a signal asks to stop. The executor wakes every 0.1 s to look: without rclpy's
        signal handler nothing else wakes a wait with no timer due."""
        executor = SingleThreadedExecutor(context=node.context)
        executor.add_node(node)
        try:
            while rclpy.ok(context=node.context) and not self.requested.is_set():
                executor.spin_once(timeout_sec=0.1)
        finally:
            executor.remove_node(node)
            executor.shutdown(timeout_sec=1.0)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
