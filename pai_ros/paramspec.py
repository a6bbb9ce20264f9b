"""A node parameter's specification, without ROS: name, default, description, range, mutability.

The ROS-free core owns the parameters it reads (e.g. :mod:`pai_ros.live.parameters`), so the
spec lives here; :func:`pai_ros.ros.params.declare` turns a list of them into declared ROS
parameters, and scripts/param_tables.py into the README's tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Param:
    name: str
    default: Any  # its Python type fixes the parameter type; [] needs `array_type`
    description: str
    min: float | None = None
    max: float | None = None
    array_type: str | None = None  # "string", "double", "integer" for list parameters
    read_only: bool = False


def defaults(params: list[Param]) -> dict[str, Any]:
    """Every parameter at its default value (lists copied, so callers may change them)."""
    return {p.name: list(p.default) if isinstance(p.default, list) else p.default for p in params}
