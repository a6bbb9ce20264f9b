"""ROS time stamps <-> integer nanoseconds, written once for every message library.

rclpy's ``builtin_interfaces.msg.Time``, rosbags' deserialised ``Time`` and its ``QosTime``
(Duration) all carry ``sec`` and ``nanosec``; integer nanoseconds are what the core compares,
stores in Parquet and joins on.
"""

from __future__ import annotations

from typing import Any

NS_PER_S = 1_000_000_000


def stamp_to_ns(stamp: Any) -> int:
    """Nanoseconds of anything with ``sec`` and ``nanosec`` (a header stamp, a duration)."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_sec_nanosec(ns: int) -> tuple[int, int]:
    """``(sec, nanosec)`` with ``0 <= nanosec < 1e9`` (floor division, so negative times stay valid)."""
    ns = int(ns)
    return ns // NS_PER_S, ns % NS_PER_S


def header_ns(msg: Any) -> int:
    """The header stamp of a stamped message, in nanoseconds."""
    return stamp_to_ns(msg.header.stamp)
