"""Run one node as a process: init, spin, one-line errors, clean shutdown, exit status."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException

from pai_ros.errors import UserError


def run_node(name: str, factory: Callable[[], Any], args: list[str] | None = None,
             spin: Callable[[Any], None] = rclpy.spin) -> int:
    """0 after a normal end or Ctrl-C; 1 with ``<name>: error: ...`` on stderr for a user error."""
    rclpy.init(args=args)
    node = None
    try:
        node = factory()
        spin(node)
    except UserError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            if hasattr(node, "shutdown"):
                node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
