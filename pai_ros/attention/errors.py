"""What can stop an attribution method, as exceptions."""

from __future__ import annotations

from pai_ros.errors import UserError


class NoGradientError(UserError):
    """The policy's graph gives no gradient to its attention maps (frozen or detached)."""
