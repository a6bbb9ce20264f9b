"""Declared ROS parameters from one spec per node: descriptions, ranges, typed read-back.

Each node lists its parameters once as :class:`Param` entries; the same list declares them
(with descriptions and ranges that `ros2 param describe` shows), reads them back, and lets
tests check that every YAML file only sets parameters the node declares.
"""

from __future__ import annotations

from typing import Any

from pai_ros.paramspec import Param

__all__ = ["Param", "declare", "names"]


def declare(node: Any, params: list[Param]) -> dict[str, Any]:
    """Declare ``params`` on an rclpy node and return their current values by name."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.exceptions import ParameterUninitializedException
    from rclpy.parameter import Parameter

    # An empty list has no element type, so list parameters are declared by type instead.
    array_types = {"string": Parameter.Type.STRING_ARRAY, "double": Parameter.Type.DOUBLE_ARRAY,
                   "integer": Parameter.Type.INTEGER_ARRAY}
    values = {}
    for p in params:
        desc = ParameterDescriptor(description=p.description, read_only=p.read_only)
        if p.min is not None or p.max is not None:
            lo = p.min if p.min is not None else -1e300
            hi = p.max if p.max is not None else 1e300
            if isinstance(p.default, bool):
                pass
            elif isinstance(p.default, int):
                desc.integer_range = [IntegerRange(from_value=int(max(lo, -2**62)), to_value=int(min(hi, 2**62)), step=0)]
            else:
                desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
        if isinstance(p.default, list):
            node.declare_parameter(p.name, p.default or array_types[p.array_type or "string"], desc)
            try:
                value = node.get_parameter(p.name).value
            except ParameterUninitializedException:
                value = None
            values[p.name] = list(value) if value is not None else []
        else:
            node.declare_parameter(p.name, p.default, desc)
            values[p.name] = node.get_parameter(p.name).value
    return values


def names(params: list[Param]) -> set[str]:
    return {p.name for p in params}
