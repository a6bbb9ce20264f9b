"""What can go wrong with a policy's input, as exceptions (checkpoint problems are plain
:class:`~pai_ros.errors.UserError` with the checkpoint's path)."""

from __future__ import annotations

from pai_ros.errors import UserError


class ObservationError(UserError):
    """The observation cannot be used (missing camera, wrong shape or dtype, NaN/inf)."""


class PolicyOutputError(UserError):
    """The policy computed an action that is not a finite number: nothing may act on it."""
