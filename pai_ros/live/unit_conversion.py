"""Unit conversion between the robot's ROS values and the policy's, as ``value * scale + offset``.

A LeRobot dataset recorded on an SO-101 holds joint positions in degrees; ``sensor_msgs/JointState``
carries radians. ``state_scale``/``state_offset`` take the robot's state into the policy's units
and ``action_scale``/``action_offset`` (the same numbers) take actions back out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pai_ros.errors import UserError

Conversion = tuple[np.ndarray, np.ndarray]  # (scale, offset) per dimension


def unit_conversion(what: str, scale: Sequence[float], offset: Sequence[float],
                    dim: int) -> Conversion | None:
    """``(scale, offset)`` for ``dim`` values, or None when neither is set (no conversion)."""
    if not scale and not offset:
        return None
    s = np.asarray(scale or [1.0] * dim, dtype=np.float32)
    o = np.asarray(offset or [0.0] * dim, dtype=np.float32)
    wrong = [f"{what}_{name} has {len(values)}" for name, values in (("scale", scale), ("offset", offset))
             if values and len(values) != dim]
    if wrong:
        raise UserError(f"{' and '.join(wrong)} value(s); it needs {dim}, one per dimension of the policy's {what} "
                        "(or none: scale 1, offset 0)")
    return s, o
