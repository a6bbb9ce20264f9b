"""ROS names taken from parameters, resolved with one line for a name rcl refuses; rcl's reasons.

rclpy raises its own exception types (``RCLError``, ``InvalidTopicNameException``,
``InvalidServiceNameException``) with a C source location appended: for a user's typo in a
parameter that would be a traceback. Here it is a :class:`~pai_ros.errors.UserError` naming the
parameter and rcl's reason.
"""

from __future__ import annotations

import re
from typing import Any

from pai_ros.errors import UserError


def resolved_topic(node: Any, topic: str, parameter: str) -> str:
    """``topic`` expanded in ``node``'s namespace (remappings applied)."""
    try:
        return node.resolve_topic_name(topic)
    except Exception as exc:  # noqa: BLE001 - rclpy's several exception types, one meaning: an invalid name
        raise UserError(f"{parameter}: '{topic}' is not a valid ROS topic name ({rcl_reason(exc)})") from None


def resolved_service(node: Any, service: str, parameter: str) -> str:
    """``service`` expanded in ``node``'s namespace (remappings applied)."""
    try:
        return node.resolve_service_name(service)
    except Exception as exc:  # noqa: BLE001 - as above
        raise UserError(f"{parameter}: '{service}' is not a valid ROS service name ({rcl_reason(exc)})") from None


def rcl_reason(exc: Exception) -> str:
    """rcl's sentence without its prefix and the C file it came from."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = re.sub(r"^(failed to resolve name|failed to initialize rcl|Invalid (topic|service) name):\s*", "", text)
    return re.sub(r",? at [^ ]+\.c:\d+.*$", "", text).strip()
