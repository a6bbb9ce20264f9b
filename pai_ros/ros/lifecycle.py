"""Run one node as a process: init, spin, one-line errors, clean shutdown, exit status."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

from pai_ros.cli_help import print_help
from pai_ros.errors import UserError
from pai_ros.paramspec import Param
from pai_ros.ros.names import rcl_reason, ros_arguments_hint
from pai_ros.ros.node_help import help_requested, node_help

RCLError = _rclpy.RCLError  # rcl's errors (rclpy raises them; its own modules name them so too)


# rcl's own log lines, "[ERROR] [1796618474.91] [rcl]: Failed to parse global arguments"
_RCL_LINE = re.compile(r"^\[[A-Z]+\] \[[0-9.]+\] \[rcl\]: ")


def init_ros(name: str, args: list[str] | None, **init_kwargs: Any) -> bool:
    """``rclpy.init``; False after one ``<name>: error: ...`` line for ROS arguments rcl cannot parse.

    rcl's C code logs to the process's stderr before it fails ("Failed to parse global arguments",
    "Namespace not remapped to a fully qualified name"): those lines are held while it runs and
    dropped when the one line below says what is wrong; after a good start they are passed on.
    """
    with tempfile.TemporaryFile() as held:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            rclpy.init(args=args, **init_kwargs)
            error = None
        except RuntimeError as exc:  # rclpy's RCLError: a --ros-args rule rcl cannot parse
            error = exc
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        held.seek(0)
        said = held.read().decode("utf-8", errors="replace").splitlines(keepends=True)
    if error is None:
        sys.stderr.write("".join(said))
        return True
    sys.stderr.write("".join(line for line in said if not _RCL_LINE.match(line)))
    hint = ros_arguments_hint(str(error))
    print(f"{name}: error: cannot read the ROS arguments: {rcl_reason(error)}{f' ({hint})' if hint else ''}",
          file=sys.stderr)
    return False


def run_node(name: str, factory: Callable[[], Any], args: list[str] | None = None,
             spin: Callable[[Any], None] = rclpy.spin, params: Sequence[Param] = (), doc: str = "") -> int:
    """0 after a normal end or Ctrl-C; 1 with ``<name>: error: ...`` on stderr for a user error.

    ``-h``/``--help`` prints the node's help (``doc`` and ``params``) and starts nothing.
    """
    if help_requested(sys.argv if args is None else args):
        print_help(node_help(name, doc, params))
        return 0
    if not init_ros(name, args):
        return 1
    node = None
    try:
        try:
            node = factory()
        except (UserError, KeyboardInterrupt, ExternalShutdownException):
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
    return 0
