"""Inputs that cannot arrive because their topic carries another message type.

A subscription of the wrong type matches nothing, so the tick only sees "no message yet" on a
topic that is busy (a ``CompressedImage`` camera configured without ``:compressed``, a joint
topic that is not ``JointState``), or, when a driver restarts with another type after messages
arrived, an input that only grows old. The ROS graph knows each topic's types: this names the
one found and the fix, once per input.
"""

from __future__ import annotations

from typing import Any

COMPRESSED, RAW = "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/Image"


def type_name(msg_type: Any) -> str:
    """``sensor_msgs.msg.Image`` -> ``sensor_msgs/msg/Image``."""
    return f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"


class InputTypeCheck:
    """Subscribed inputs, and what to say when the graph shows another type on one of them."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.expected: dict[str, tuple[str, str]] = {}  # input name -> (resolved topic, type)
        self.said: set[str] = set()

    def add(self, name: str, topic: str, msg_type: Any) -> None:
        self.expected[name] = (self.node.resolve_topic_name(topic), type_name(msg_type))

    def check(self, heard_ns: dict[str, int], now_ns: int, max_age_s: float) -> list[str]:
        """Lines for quiet inputs whose topic carries other types; each said once.

        ``heard_ns`` holds when each input last arrived; an input is quiet with no message yet or
        none within ``max_age_s`` (the age at which the tick refuses it anyway).
        """
        quiet = {n for n in self.expected if n not in heard_ns or now_ns - heard_ns[n] > max_age_s * 1e9}
        todo = [n for n in quiet if n not in self.said]
        if not todo:
            return []
        lines = []
        for name in sorted(todo):
            topic, want = self.expected[name]
            # The publishers' types only: the graph's own list holds this node's subscription type too.
            have = sorted({i.topic_type for i in self.node.get_publishers_info_by_topic(topic)})
            if have and want not in have:
                self.said.add(name)
                hint = {(RAW, COMPRESSED): f": write '{name}:{topic}:compressed' in cameras",
                        (COMPRESSED, RAW): f": drop ':compressed' from {name}'s entry in cameras"}.get(
                            (want, have[0]), "")
                lines.append(f"{name}: {topic} carries {', '.join(have)}, but it is subscribed as {want}, so "
                             f"nothing arrives{hint}")
        return lines
