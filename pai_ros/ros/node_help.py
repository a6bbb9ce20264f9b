"""``--help`` for the nodes: what a node does and every parameter it declares, without starting ROS.

``ros2 run pai_ros policy_node --help`` used to start the node, which then stopped with "parameter
policy_path is required": no way to learn the parameters short of the README or a running node
(``ros2 param describe``). The table comes from the same specifications the node declares.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from pai_ros.paramspec import Param

CONFIG = {"policy_node": "policy", "replay_node": "replay", "recorder_node": "recorder", "sim_node": "sim"}


def help_requested(args: Sequence[str] | None) -> bool:
    """``-h``/``--help`` anywhere on the command line (rcl has no such option: after ``--ros-args``
    it would be an unreadable ROS argument, so it is taken as a request for help there too)."""
    return any(a in ("-h", "--help") for a in list(args or [])[1:])


def _type(p: Param) -> str:
    if isinstance(p.default, list):
        return f"{p.array_type or 'string'}[]"
    return {bool: "bool", int: "integer", float: "double", str: "string"}.get(type(p.default), "string")


def node_help(name: str, doc: str, params: Sequence[Param]) -> str:
    """The help text: usage, the docstring's first paragraph, one entry per parameter."""
    about = " ".join((doc or "").strip().split("\n\n")[0].replace("``", "").split())
    config = CONFIG.get(name)
    lines = [f"usage: ros2 run pai_ros {name} --ros-args [-r __ns:=/robot1] [-p NAME:=VALUE ...]"
             + (f" [--params-file config/{config}.yaml]" if config else ""), "",
             *textwrap.wrap(about, 100), "", "parameters (-p NAME:=VALUE; values are YAML: 2.0 for a double, "
             "['a', 'b'] for a list):"]
    for p in params:
        limits = "" if p.min is None and p.max is None else f", {p.min if p.min is not None else ''}.." \
                 f"{p.max if p.max is not None else ''}"
        fixed = ", read-only" if p.read_only else ""
        lines.append(f"  {p.name} ({_type(p)}, default {p.default!r}{limits}{fixed})")
        lines += textwrap.wrap(p.description, 96, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)
