"""From the policy's actions to the robot's: joint names, units and limits, checked once at start.

A policy trained with LeRobot acts in its dataset's units (an SO-101 dataset: degrees); a ROS
controller takes SI units (radians). ``action_scale``/``action_offset`` convert back the way
``state_scale``/``state_offset`` convert the robot's state in, and ``action_min``/``action_max``
clamp what goes out. Every configuration error is a :class:`UserError` when the node starts,
never a surprise at the first tick.
"""

from __future__ import annotations

import numpy as np

from pai_ros.errors import UserError
from pai_ros.live.config import LiveConfig
from pai_ros.live.unit_conversion import unit_conversion


class ActionMapping:
    """The names the actions are published under and the conversion applied to every published action."""

    def __init__(self, config: LiveConfig, action_dim: int) -> None:
        self.dim = action_dim
        self.names = self._names(config)
        self.clamp = self._clamp(config)
        # From the policy's units to the robot's: state_scale/state_offset's conversion, the other way.
        self.conversion = unit_conversion("action", config.action_scale, config.action_offset, action_dim)

    def _names(self, config: LiveConfig) -> tuple[str, ...]:
        names = config.action_names
        if names:
            if len(names) != self.dim:
                raise UserError(f"action_names has {len(names)} names, the policy's action has {self.dim} dimensions")
            return names
        if len(config.state_joint_names) == self.dim:  # the usual case: the policy commands the joints it reads
            return config.state_joint_names
        return tuple(f"action_{i}" for i in range(self.dim))

    def _clamp(self, config: LiveConfig) -> tuple[np.ndarray, np.ndarray] | None:
        lo, hi = config.action_min, config.action_max
        if not lo and not hi:
            return None
        lo_a = np.asarray(lo or [-np.inf] * self.dim, dtype=np.float32)
        hi_a = np.asarray(hi or [np.inf] * self.dim, dtype=np.float32)
        if lo_a.shape != (self.dim,) or hi_a.shape != (self.dim,) or np.any(lo_a > hi_a):
            raise UserError(f"action_min/action_max must have {self.dim} values each with min <= max")
        return lo_a, hi_a

    def to_robot(self, actions: np.ndarray) -> np.ndarray:
        """Policy actions (``[..., dim]``) in the robot's units, clamped."""
        return self.clamped(self.in_robot_units(actions))

    def in_robot_units(self, actions: np.ndarray) -> np.ndarray:
        """Policy actions (``[..., dim]``) in the robot's units, not clamped (may overflow to inf)."""
        if self.conversion is None:
            return actions
        scale, offset = self.conversion
        with np.errstate(over="ignore"):  # the tick refuses a non-finite action and says why
            return ((actions - offset) / scale).astype(np.float32)

    def clamped(self, actions: np.ndarray) -> np.ndarray:
        """``actions`` (robot units) inside ``action_min``/``action_max``."""
        return np.clip(actions, *self.clamp) if self.clamp is not None else actions
