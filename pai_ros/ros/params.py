"""Declared ROS parameters from one spec per node: descriptions, ranges, typed read-back.

Each node lists its parameters once as :class:`Param` entries; the same list declares them
(with descriptions and ranges that `ros2 param describe` shows), reads them back, and lets
tests check that every YAML file only sets parameters the node declares.

A parameter file that does not reach the node is the silent failure of ROS parameters: rcl
applies a file's section only when its key matches the node's fully qualified name, so a
file keyed ``policy_node:`` (read as ``/policy_node``) is ignored without a word when the node
runs as ``/robot1/policy_node``, and a misspelt parameter name is dropped just as quietly.
:func:`declare` therefore reads the ``--params-file`` arguments of the process
(:func:`params_file_problems` finds the problems, without ROS). A section keyed with this node's
name is meant for it alone, as a ``-p`` override on the command line is
(:func:`command_line_unknowns`): an undeclared name there, or such a section keyed for another
namespace, stops the node with one line. A wildcard section or a file of other nodes' sections may
serve several nodes: what this node lacks there is logged as one line.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from pai_ros.errors import UserError
from pai_ros.paramspec import Param

# Parameters that rclpy itself declares (qos_overrides.* come with publishers created later).
_BUILTIN_PARAMS = {"use_sim_time", "start_type_description_service"}
_BUILTIN_PREFIXES = ("qos_overrides.",)


__all__ = ["Param", "declare", "names"]


def declare(node: Any, params: list[Param], argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Declare ``params`` on an rclpy node and return their current values by name.

    A value of the wrong type or outside its range (``-p rate_factor:=2`` is an integer where
    the node declares a double) raises :class:`UserError` with one line, not rclpy's traceback.
    Each ``--params-file`` in ``argv`` (default: ``sys.argv``, what the nodes pass to
    ``rclpy.init``) that misses this node or sets a parameter it does not declare (rclpy ignores
    both without a word) stops it with one line, or where the file may serve other nodes, logs one
    (:func:`params_file_problems`).
    """
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    values = {}
    for p in params:
        try:
            values[p.name] = _declare_one(node, p)
        except InvalidParameterTypeException as exc:
            got = re.search(r"to '(.*)' of type '(\w+)'", str(exc))
            given = f"got {got.group(1)} ({got.group(2).lower()})" if got else str(exc)
            raise UserError(f"parameter '{p.name}' of {node.get_fully_qualified_name()} must be {_kind(p)}; "
                            f"{given}") from None
        except InvalidParameterValueException as exc:
            lo = p.min if p.min is not None else "-inf"
            hi = p.max if p.max is not None else "inf"
            got = re.search(r"value \((.*?)\) for parameter", str(exc))
            raise UserError(f"parameter '{p.name}' of {node.get_fully_qualified_name()} must lie in [{lo}, {hi}]; "
                            f"got {got.group(1) if got else exc}") from None
    argv = sys.argv if argv is None else argv
    unknown = command_line_unknowns(node.get_fully_qualified_name(), argv, names(params))
    if unknown:
        raise UserError(f"{node.get_fully_qualified_name()} has no parameter {'; '.join(unknown)} (given with -p; "
                        f"`ros2 param list {node.get_fully_qualified_name()}` lists them)")
    refusals, warnings = params_file_problems(node.get_fully_qualified_name(), argv, names(params))
    if refusals:
        raise UserError("; ".join(refusals))
    for warning in warnings:
        node.get_logger().error(warning)
    return values


def _kind(p: Param) -> str:
    if isinstance(p.default, list):
        return f"a list of {p.array_type or 'string'}s"
    return {bool: "true or false", int: "an integer", float: "a number",
            str: "a string (quote it: '123')"}[type(p.default)]


def _declare_one(node: Any, p: Param) -> Any:
    """Declare one parameter; its value (a list parameter's as a list)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.exceptions import ParameterUninitializedException
    from rclpy.parameter import Parameter

    desc = ParameterDescriptor(description=p.description, read_only=p.read_only)
    if p.min is not None or p.max is not None:
        lo = p.min if p.min is not None else -1e300
        hi = p.max if p.max is not None else 1e300
        if isinstance(p.default, bool):
            pass
        elif isinstance(p.default, int):
            desc.integer_range = [IntegerRange(from_value=int(max(lo, -2**62)), to_value=int(min(hi, 2**62)), step=0)]
        else:
            desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    if not isinstance(p.default, list):
        _declare_numbers_as_doubles(node, p, p.default, desc)
        return node.get_parameter(p.name).value
    # A list is declared writable and made read-only afterwards where the spec says so: an empty
    # list has no element type, and rclpy leaves a parameter given one ("-p topics:=[]", or "[]"
    # in a file) uninitialised, as it does a list parameter declared by type with no default.
    # Uninitialised, it would raise on every read (a traceback at start) and GetParameters
    # (`ros2 param get`, `ros2 param dump`) would answer nothing for the whole request; it is set
    # to the empty list it stands for, which the node's own checks then take or refuse in one line.
    kind = {"string": Parameter.Type.STRING_ARRAY, "double": Parameter.Type.DOUBLE_ARRAY,
            "integer": Parameter.Type.INTEGER_ARRAY}[p.array_type or "string"]
    _declare_numbers_as_doubles(node, p, p.default or kind, ParameterDescriptor(description=p.description))
    try:
        value = list(node.get_parameter(p.name).value)
    except ParameterUninitializedException:
        node.set_parameters([Parameter(p.name, kind, [])])
        value = []
    if p.read_only:
        node.set_descriptor(p.name, ParameterDescriptor(description=p.description, read_only=True, type=kind.value))
    return value


def _declare_numbers_as_doubles(node: Any, p: Param, declared_as: Any, desc: Any) -> None:
    """Declare ``p`` (``declared_as``: its default or its type); integers given for doubles become doubles.

    rcl reads ``-p control_rate_hz:=30`` (or ``30`` in a parameter file) as an integer and rclpy
    refuses it for a parameter declared as a double: the most common first-run stumble with ROS
    parameters. An integer is an exact double, so such a value is read through a dynamically
    typed declaration, and the parameter is declared again, statically typed and range-checked
    as before, with the value converted. Any other mismatch keeps rclpy's error.
    """
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.exceptions import InvalidParameterTypeException

    try:
        node.declare_parameter(p.name, declared_as, desc)
        return
    except InvalidParameterTypeException:
        if not (isinstance(p.default, float) or (isinstance(p.default, list) and p.array_type == "double")):
            raise
    node.declare_parameter(p.name, None, ParameterDescriptor(dynamic_typing=True))
    given = node.get_parameter(p.name).value
    node.undeclare_parameter(p.name)
    if isinstance(p.default, float) and type(given) is int:
        value: Any = float(given)
    elif isinstance(p.default, list) and not isinstance(given, (str, bytes)) and hasattr(given, "__len__") \
            and len(given) and all(isinstance(v, int) and not isinstance(v, bool) for v in given):
        value = [float(v) for v in given]
    else:  # declared again as before, so that rclpy raises its type error (translated by the caller)
        node.declare_parameter(p.name, declared_as, desc)
        return
    node.declare_parameter(p.name, value, desc, ignore_override=True)


def names(params: list[Param]) -> set[str]:
    return {p.name for p in params}


# ------------------------------------------------------------------ parameter files vs the node

def params_files(argv: Sequence[str]) -> list[str]:
    """The ``--params-file`` paths among the ROS arguments of a command line, in order."""
    files, in_ros_args, i = [], False, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--ros-args":
            in_ros_args = True
        elif arg == "--" and in_ros_args:
            in_ros_args = False
        elif in_ros_args and arg == "--params-file" and i + 1 < len(argv):
            files.append(argv[i + 1])
            i += 1
        i += 1
    return files


def command_line_unknowns(fqn: str, argv: Sequence[str], declared: set[str]) -> list[str]:
    """The ``-p [node:]name:=value`` names of ``argv`` meant for node ``fqn`` that it does not declare.

    rcl keeps such an override without a word and the node runs on the default: for a typo on
    the command line (one node, one intent) that is an error, each with the nearest declared name.
    """
    node_name = fqn.rsplit("/", 1)[-1]
    unknown, in_ros_args = [], False
    for i, arg in enumerate(argv):
        if arg == "--ros-args":
            in_ros_args = True
        elif arg == "--" and in_ros_args:
            in_ros_args = False
        elif in_ros_args and arg in ("-p", "--param") and i + 1 < len(argv) and ":=" in argv[i + 1]:
            key = argv[i + 1].split(":=", 1)[0]
            target, _, name = key.rpartition(":")
            if target and target.strip("/") not in (node_name, fqn.strip("/")):
                continue  # meant for another node of the process
            if not _is_declared(name, declared):
                unknown.append(name)
    return _with_nearest(unknown, declared)


def key_matches(key: str, fqn: str) -> bool:
    """Whether a parameter file's node key applies to the node ``fqn`` (rcl's rules).

    A key without a leading slash is absolute all the same (``policy_node`` is ``/policy_node``);
    ``*`` stands for exactly one name token, ``**`` for any number of them (none included).
    """
    pattern = [t for t in key.strip().split("/") if t]
    name = [t for t in fqn.split("/") if t]

    def match(pi: int, ni: int) -> bool:
        if pi == len(pattern):
            return ni == len(name)
        if pattern[pi] == "**":
            return any(match(pi + 1, k) for k in range(ni, len(name) + 1))
        if ni < len(name) and pattern[pi] in ("*", name[ni]):
            return match(pi + 1, ni + 1)
        return False

    return match(0, 0)


def _flat_names(body: Any, prefix: str = "") -> list[str]:
    """Parameter names of a ros__parameters mapping; nested mappings are dotted names."""
    if not isinstance(body, dict):
        return []
    out = []
    for key, value in body.items():
        name = f"{prefix}{key}"
        out.extend(_flat_names(value, name + ".") if isinstance(value, dict) else [name])
    return out


def _sections(content: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(node key, ros__parameters) of a parameter file; nested mappings above it are namespaces."""
    if not isinstance(content, dict):
        return []
    out = []
    for key, value in content.items():
        if key == "ros__parameters":
            out.append((prefix or "/", value))
        elif isinstance(value, dict):
            out.extend(_sections(value, f"{prefix}/{str(key).strip('/')}"))
    return out


def params_file_problems(fqn: str, argv: Sequence[str], declared: set[str]) -> tuple[list[str], list[str]]:
    """What the parameter files of ``argv`` get wrong for node ``fqn``: (refusals, warnings), a line each.

    A section named for this node (``/**/policy_node:``, ``/robot1/policy_node:``) is meant for it
    alone: a name it does not declare there is a typo, refused like the same typo after ``-p``
    (``acton_max`` would start an acting node without its clamp), and so is a file whose only
    sections for this node's name are keyed for another namespace (it would run on its defaults).
    A wildcard section (``/**:``) may serve several nodes, and a file may hold only other nodes'
    sections: those are warnings.
    """
    node_name = fqn.rsplit("/", 1)[-1]
    refusals: list[str] = []
    warnings: list[str] = []
    for path in params_files(argv):
        try:
            sections = _sections(yaml.safe_load(Path(path).read_text()))
        except (OSError, yaml.YAMLError):
            continue  # rcl has refused an unreadable file already, at init
        matching = [(key, body) for key, body in sections if key_matches(key, fqn)]
        # Sections with this node's name that miss it (keyed for another namespace), when none that
        # reaches it has its name: a wildcard section beside them (/**: use_sim_time) does not count.
        elsewhere = [key for key, _ in sections if _names_node(key, node_name) and not key_matches(key, fqn)]
        if elsewhere and not any(_names_node(key, node_name) for key, _ in matching):
            shown = ", ".join(f"'{key}'" for key in elsewhere)
            refusals.append(f"parameter file {path} does not apply to this node ({fqn}): its section(s) {shown} "
                            f"are keyed for another namespace, so none of their values is used; key it "
                            f"'/**/{node_name}:' to apply in any namespace")
        elif sections and not matching:
            shown = ", ".join(f"'{key}'" for key, _ in sections)
            warnings.append(f"parameter file {path} does not apply to this node ({fqn}): its section(s) {shown} "
                            "name other nodes, so none of its values is used")
            continue
        for key, body in matching:
            unknown = sorted({n for n in _flat_names(body) if not _is_declared(n, declared)})
            if not unknown:
                continue
            if _names_node(key, node_name):
                refusals.append(f"parameter file {path} sets {', '.join(_with_nearest(unknown, declared))} in its "
                                f"section '{key}', and {fqn} has no such parameter "
                                f"(`ros2 param list {fqn}` lists them)")
            else:
                warnings.append(f"parameter file {path} sets {', '.join(unknown)} in its section '{key}', which "
                                f"{fqn} does not declare: ignored (the section may serve other nodes)")
    return refusals, warnings


def _is_declared(name: str, declared: set[str]) -> bool:
    """Declared by the node, or one rclpy declares for every node (use_sim_time, qos_overrides.*)."""
    return name in declared or name in _BUILTIN_PARAMS or name.startswith(_BUILTIN_PREFIXES)


def _names_node(key: str, node_name: str) -> bool:
    """Whether a section key ends in this node's own name (not a wildcard)."""
    tokens = [t for t in key.strip().split("/") if t]
    return bool(tokens) and tokens[-1] == node_name


def _with_nearest(unknown: list[str], declared: set[str]) -> list[str]:
    """Each name quoted, with the declared name nearest to it (a typo's intent)."""
    out = []
    for name in unknown:
        near = difflib.get_close_matches(name, sorted(declared), n=1)
        out.append(f"'{name}'" + (f" (did you mean '{near[0]}'?)" if near else ""))
    return out
