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
    return re.sub(r",? at [^ ]+\.c(?:pp)?:\d+.*$", "", text).strip()  # rcl_logging_spdlog is C++


def ros_arguments_hint(reason: str) -> str | None:
    """What to write instead, for an ``--ros-args`` rule rcl could not parse (``reason``: rcl's),
    or None where there is nothing better to say than rcl's reason itself."""
    if "Value type 'integer'" in reason or "Value type 'double'" in reason:
        return "a list holds one type: write 1.0, not 1, among doubles: -p \"state_scale:=[57.3, 57.3, 1.0]\""
    if "Value type 'bool'" in reason:
        return "quote strings in lists: -p \"names:=['a', 'y']\"; YAML reads a bare y, n, on or off as a boolean"
    if "params file" in reason:
        if "Error opening YAML file" in reason:
            return "no such file, or it cannot be read: check the path after --params-file"
        return ("a parameter file is YAML: '/**/node_name:', then 'ros__parameters:', then 'name: value' lines "
                "as in config/policy.yaml")
    rule = re.search(r"override rule: '-p ([^']*)'", reason)
    if rule:
        text = rule.group(1)
        if text.endswith(":="):
            return "a value is missing after ':=' (an empty string is -p \"name:=''\")"
        if text.count("[") > text.count("]"):
            return "the shell split the rule at a space: quote it whole: -p \"names:=['a', 'b']\""
        return "a parameter rule is name:=value, its value read as YAML: -p control_rate_hz:=30.0"
    namespace = re.search(r"remap rule: '(?:-r|--remap) (?:[^:' ]+:)?__ns:=([^'/][^']*)'", reason)
    if namespace:  # rcl's own reason ("Expected lexeme type 19, got 18") does not say this
        return f"a namespace is absolute: -r __ns:=/{namespace.group(1)}"
    if "remap rule" in reason:
        return "a remapping is from:=to: -r action:=/arm/command, or -r __ns:=/robot"
    return None
