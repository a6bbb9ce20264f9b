"""Strings received from peers that were not valid UTF-8 (ROS-free: the live tick's input checks).

A ROS ``string`` is UTF-8. When a peer sends bytes that are not, rclpy does not raise: its
generated message code decodes them with errors="replace", so the callback sees a name with
U+FFFD in place of each bad byte (measured with the Kilted wheels: b"gr\\xffpper" arrives as
"gr\\ufffdpper"). Such a name then silently fails to match the configured joint names; this
module lets a node say what really happened.
"""

from __future__ import annotations

from collections.abc import Iterable

from pai_ros.wording import listed

REPLACEMENT = "\ufffd"


def undecodable(values: Iterable[str]) -> list[str]:
    """The values that carry U+FFFD: bytes the sender put there were not valid UTF-8.

    (A sender that really meant U+FFFD is indistinguishable and just as unusable as a name.)
    """
    return [v for v in values if REPLACEMENT in v]


def undecodable_reason(field: str, values: Iterable[str]) -> str | None:
    """One line for /diagnostics naming the broken values of ``field``, or None when all decode."""
    bad = undecodable(values)
    if not bad:
        return None
    shown = listed([ascii(v) for v in bad], most=4)
    return (f"{field} has {len(bad)} value(s) that are not valid UTF-8 ({shown}; \\ufffd marks each undecodable "
            "byte): the publisher must send UTF-8 strings")
