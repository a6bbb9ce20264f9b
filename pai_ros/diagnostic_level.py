"""The severity of a ``/diagnostics`` status, shared by the core (which decides it) and the nodes.

The values are those of ``diagnostic_msgs/DiagnosticStatus`` (OK 0, WARN 1, ERROR 2), so a node
copies a level into its message as it is; the core names them without importing ROS.
"""

from __future__ import annotations

from enum import IntEnum


class Level(IntEnum):
    """Severity, with the values of ``diagnostic_msgs/DiagnosticStatus``."""

    OK = 0
    WARN = 1
    ERROR = 2
