"""Launch files reference what exists: executables, parameter files, declared parameters, arguments.

`launch` and `launch_ros` are not installable here (no wheels), so the launch files run
against small recording stand-ins of the few classes they use; that is the only fake in the
test suite. Where the real `launch_ros` is importable (a ROS 2 distro), the files are also
loaded with it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARE = REPO / "install" / "pai_ros" / "share" / "pai_ros"
LIB = REPO / "install" / "pai_ros" / "lib" / "pai_ros"
LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))


class _Recorder:
    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(_Recorder):
    used: list[str] = []

    def __init__(self, name: str, **kwargs) -> None:
        super().__init__(name, **kwargs)
        self.name = name
        LaunchConfiguration.used.append(name)


class DeclareLaunchArgument(_Recorder):
    def __init__(self, name: str, default_value=None, description: str = "", **kwargs) -> None:
        super().__init__(name, **kwargs)
        self.name, self.default_value, self.description = name, default_value, description


def _fake_modules() -> dict[str, types.ModuleType]:
    mods = {name: types.ModuleType(name) for name in (
        "launch", "launch.actions", "launch.conditions", "launch.substitutions", "launch_ros",
        "launch_ros.actions", "launch_ros.substitutions")}
    mods["launch"].LaunchDescription = type("LaunchDescription", (_Recorder,), {})
    mods["launch.actions"].DeclareLaunchArgument = DeclareLaunchArgument
    mods["launch.conditions"].IfCondition = type("IfCondition", (_Recorder,), {})
    mods["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    mods["launch.substitutions"].PathJoinSubstitution = type("PathJoinSubstitution", (_Recorder,), {})
    mods["launch_ros.actions"].Node = type("Node", (_Recorder,), {})
    mods["launch_ros.substitutions"].FindPackageShare = type("FindPackageShare", (_Recorder,), {})
    return mods


def _load(path: Path, monkeypatch: pytest.MonkeyPatch):
    for name, mod in _fake_modules().items():
        monkeypatch.setitem(sys.modules, name, mod)
    LaunchConfiguration.used = []
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def _resolve_path(sub, arguments: dict[str, DeclareLaunchArgument]) -> Path:
    """PathJoinSubstitution([FindPackageShare('pai_ros'), 'config', 'x.yaml']) -> installed path."""
    if type(sub).__name__ == "LaunchConfiguration":
        return _resolve_path(arguments[sub.name].default_value, arguments)
    parts = []
    for part in sub.args[0]:
        if type(part).__name__ == "FindPackageShare":
            assert part.args[0] == "pai_ros"
            parts.append(str(SHARE))
        elif type(part).__name__ == "PathJoinSubstitution":
            parts.append(str(_resolve_path(part, arguments)))
        else:
            parts.append(part)
    return Path(*parts)


def _declared_parameters(executable: str) -> set[str]:
    module = importlib.import_module(f"pai_ros.ros.{executable}")
    return {p.name if hasattr(p, "name") else p for p in module.PARAMS}


def test_there_are_launch_files() -> None:
    assert {p.name for p in LAUNCH_FILES} >= {"policy_with_attention.launch.py", "replay_demo.launch.py"}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_references_exist(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ld = _load(path, monkeypatch)
    entities = ld.args[0]
    arguments = {e.name: e for e in entities if isinstance(e, DeclareLaunchArgument)}
    nodes = [e for e in entities if type(e).__name__ == "Node"]
    assert nodes, "no nodes"
    assert all(a.description for a in arguments.values()), "every launch argument needs a description"
    # Every argument is used, and every LaunchConfiguration names a declared argument.
    used = set(LaunchConfiguration.used)
    assert set(arguments) - used == set(), f"declared but unused: {set(arguments) - used}"
    assert used - set(arguments) == set(), f"used but not declared: {used - set(arguments)}"
    for node in nodes:
        kw = node.kwargs
        assert kw["package"] == "pai_ros"
        exe = LIB / kw["executable"]
        assert exe.is_file(), f"{path.name}: executable {kw['executable']} is not installed in {LIB}"
        declared = _declared_parameters(kw["executable"])
        for entry in kw.get("parameters", []):
            if isinstance(entry, dict):
                keys = set(entry)
            else:
                file = _resolve_path(entry, arguments)
                assert file.is_file(), f"{path.name}: parameter file {file} is not installed"
                content = yaml.safe_load(file.read_text())
                assert list(content) == [kw["name"]], f"{file.name} must hold parameters of {kw['name']} only"
                keys = set(content[kw["name"]]["ros__parameters"])
            unknown = keys - declared
            assert not unknown, f"{path.name}: {kw['executable']} does not declare {sorted(unknown)}"


def test_config_files_only_set_declared_parameters() -> None:
    for file in sorted((REPO / "config").glob("*.yaml")):
        content = yaml.safe_load(file.read_text())
        for node_name, body in content.items():
            declared = _declared_parameters(node_name)
            assert set(body["ros__parameters"]) <= declared, (file.name, set(body["ros__parameters"]) - declared)


def test_with_real_launch_ros_where_available() -> None:
    pytest.importorskip("launch_ros", reason="launch_ros is not installable here; checked against stand-ins above")
    from launch import LaunchDescription

    for path in LAUNCH_FILES:
        spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert isinstance(module.generate_launch_description(), LaunchDescription)
