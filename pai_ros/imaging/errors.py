"""What can go wrong turning a camera message into pixels.

A ``ValueError``, not a :class:`~pai_ros.errors.UserError`: one bad frame is skipped (the bag
converter) or refused for one tick (the policy node), never the end of a command.
"""

from __future__ import annotations


class ImageConversionError(ValueError):
    """The message cannot be turned into an RGB image (unsupported or malformed)."""
