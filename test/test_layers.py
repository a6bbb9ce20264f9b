"""The package's layering, read from the source: ROS only in ros/, no cycles between subpackages or
between modules, command modules only under the `pai` command.

Lazy imports inside functions count: they are dependencies all the same, only later.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pai_ros"
ROS_ONLY = ("rclpy", "launch", "launch_ros", "rosidl_runtime_py", "rosbag2_py", "pai_ros.msg", "pai_ros.srv",
            "builtin_interfaces", "std_msgs", "sensor_msgs", "diagnostic_msgs", "trajectory_msgs")


def _imports() -> list[tuple[Path, str]]:
    """(file, absolute module name) for every import statement in the package, relative ones resolved."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        package = parts[:-1]  # a module's package, or for __init__.py the package itself
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(path, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
                module = ".".join(p for p in (base, node.module or "") if p)
                found.append((path, module))
                # `from pai_ros.x import y` may name a module y: count it as an import of x.y too
                found += [(path, f"{module}.{alias.name}") for alias in node.names]
    return found


def _unit(path: Path) -> str:
    """The subpackage a file belongs to (or the top-level module's name)."""
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def test_only_ros_adapters_import_ros() -> None:
    offenders = sorted({f"{p.relative_to(PACKAGE)}: {m}" for p, m in _imports()
                        if _unit(p) != "ros" and any(m == r or m.startswith(r + ".") for r in ROS_ONLY)})
    assert not offenders, "ROS imported outside pai_ros/ros/ (breaks `pip install .` without ROS):\n" + \
        "\n".join(offenders)


def test_subpackages_import_each_other_without_cycles() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if p.is_dir()}
    edges: dict[str, set[str]] = defaultdict(set)
    where: dict[tuple[str, str], str] = {}
    for path, module in _imports():
        parts = module.split(".")
        if parts[0] == "pai_ros" and len(parts) > 1 and parts[1] in modules and parts[1] != _unit(path):
            edges[_unit(path)].add(parts[1])
            where.setdefault((_unit(path), parts[1]), str(path.relative_to(PACKAGE)))

    def path_back(start: str, goal: str) -> list[str] | None:
        stack, seen = [[start]], set()
        while stack:
            trail = stack.pop()
            if trail[-1] == goal:
                return trail
            if trail[-1] not in seen:
                seen.add(trail[-1])
                stack += [trail + [n] for n in sorted(edges.get(trail[-1], ()))]
        return None

    cycles = []
    for a in sorted(edges):
        for b in sorted(edges[a]):
            back = path_back(b, a)
            if back:
                cycle = [a, *back]
                cycles.append(" -> ".join(cycle) + " (" + ", ".join(where[(x, y)] for x, y in zip(cycle, cycle[1:]))
                              + ")")
    assert not cycles, "subpackages import each other in a cycle:\n" + "\n".join(cycles)
    assert not edges.get("errors"), "pai_ros.errors is the bottom layer and imports nothing of the package"


def test_command_modules_are_imported_only_by_the_pai_command() -> None:
    offenders = sorted({f"{p.relative_to(PACKAGE)}: {m}" for p, m in _imports()
                        if m.startswith("pai_ros.") and m.split(".")[-1] == "commands" and p.name != "cli.py"})
    assert not offenders, "library code imports a command module (move the function into the library):\n" + \
        "\n".join(offenders)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_modules_import_each_other_without_cycles() -> None:
    # Within a subpackage too: two modules that need each other hide the order they are meant to be
    # read in, and one of them has to import the other lazily to load at all.
    known = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = defaultdict(set)
    for path, module in _imports():
        if module in known and module != _module_name(path) and not module.endswith("__init__"):
            if (PACKAGE.parent / module.replace(".", "/")).is_dir():
                continue  # a package's __init__: its face re-exports, a cycle through it is not a dependency
            edges[_module_name(path)].add(module)
    cycles: list[str] = []
    state: dict[str, str] = {}  # "open" while on the depth-first trail, then "done"

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":  # back to a module on the trail: a cycle
                cycles.append(" -> ".join([*trail[trail.index(nxt):], node, nxt] if nxt in trail else [node, nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert not cycles, "modules import each other in a cycle (lazy imports count):\n" + "\n".join(cycles)
