"""Launch files reference what exists: executables, parameter files, declared parameters, arguments.

`launch` and `launch_ros` are not installable here (no wheels), so the launch files run
against small recording stand-ins of the few classes they use; that is the only fake in the
test suite. Where the real `launch_ros` is importable (a ROS 2 distro), the files are also
loaded with it.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
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

    def perform(self, context: dict[str, str]) -> str:
        return context[self.name]


class OpaqueFunction(_Recorder):
    def __init__(self, *, function, **kwargs) -> None:
        super().__init__(function=function, **kwargs)
        self.function = function


class DeclareLaunchArgument(_Recorder):
    def __init__(self, name: str, default_value=None, description: str = "", choices=None, **kwargs) -> None:
        super().__init__(name, **kwargs)
        self.name, self.default_value, self.description, self.choices = name, default_value, description, choices


class ParameterValue(_Recorder):
    def __init__(self, value, *, value_type=None) -> None:
        super().__init__(value, value_type=value_type)
        self.value, self.value_type = value, value_type


def _fake_modules() -> dict[str, types.ModuleType]:
    mods = {name: types.ModuleType(name) for name in (
        "launch", "launch.actions", "launch.conditions", "launch.substitutions", "launch_ros",
        "launch_ros.actions", "launch_ros.parameter_descriptions", "launch_ros.substitutions")}
    mods["launch"].LaunchDescription = type("LaunchDescription", (_Recorder,), {})
    mods["launch.actions"].DeclareLaunchArgument = DeclareLaunchArgument
    mods["launch.actions"].OpaqueFunction = OpaqueFunction
    mods["launch.conditions"].IfCondition = type("IfCondition", (_Recorder,), {})
    mods["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    mods["launch.substitutions"].PathJoinSubstitution = type("PathJoinSubstitution", (_Recorder,), {})
    mods["launch_ros.actions"].Node = type("Node", (_Recorder,), {})
    mods["launch_ros.parameter_descriptions"].ParameterValue = ParameterValue
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


def _entities(ld, given: dict[str, str] | None = None) -> list:
    """The launch description's entities, each OpaqueFunction run with the arguments' defaults
    (and ``given``) as the context, as launch runs them."""
    entities = ld.args[0]
    context = {e.name: e.default_value for e in entities if isinstance(e, DeclareLaunchArgument)}
    context.update(given or {})
    out = []
    for e in entities:
        out.extend(e.function(context) if isinstance(e, OpaqueFunction) else [e])
    return out


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


def _declared_types(executable: str) -> dict[str, type]:
    """The Python type launch_ros must coerce each parameter to (bool before int: bool is an int)."""
    module = importlib.import_module(f"pai_ros.ros.{executable}")
    out = {}
    for p in module.PARAMS:
        out[p.name] = next(t for t in (bool, int, float, str, list) if isinstance(p.default, t))
    return out


def _sections(file: Path) -> dict[str, dict]:
    """node key -> ros__parameters of a parameter file."""
    return {key: body["ros__parameters"] for key, body in yaml.safe_load(file.read_text()).items()}


def test_there_are_launch_files() -> None:
    assert {p.name for p in LAUNCH_FILES} >= {"policy_with_attention.launch.py", "replay_demo.launch.py"}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_references_exist(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ld = _load(path, monkeypatch)
    entities = _entities(ld)
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
                sections = _sections(file)
                # /**/<name>: the section applies under any namespace (a bare <name>: would not).
                assert list(sections) == [f"/**/{kw['name']}"], \
                    f"{file.name} must hold parameters of {kw['name']} only, keyed /**/{kw['name']}"
                keys = set(sections[f"/**/{kw['name']}"])
            unknown = keys - declared
            assert not unknown, f"{path.name}: {kw['executable']} does not declare {sorted(unknown)}"


def test_config_files_only_set_declared_parameters() -> None:
    from pai_ros.ros.params import key_matches

    for file in sorted((REPO / "config").glob("*.yaml")):
        for key, body in _sections(file).items():
            node_name = key.rsplit("/", 1)[-1]
            declared = _declared_parameters(node_name)
            assert set(body) <= declared, (file.name, set(body) - declared)
            # Applies to the node at the root and under any namespace.
            for fqn in (f"/{node_name}", f"/robot1/{node_name}", f"/site/arm2/{node_name}"):
                assert key_matches(key, fqn), f"{file.name}: section {key!r} does not apply to {fqn}"


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_node_parameters_from_arguments_are_typed(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """launch_ros reads `name:=value` as YAML: `rate_factor:=2` would be an int, a path `123` a number.

    Every launch argument that becomes a node parameter goes through ParameterValue with the
    type that the node declares for it.
    """
    ld = _load(path, monkeypatch)
    nodes = [e for e in _entities(ld, {"sae_path": "/sae"}) if type(e).__name__ == "Node"]
    checked = 0
    for node in nodes:
        types_ = _declared_types(node.kwargs["executable"])
        for entry in node.kwargs.get("parameters", []):
            if not isinstance(entry, dict):
                continue
            for name, value in entry.items():
                if isinstance(value, LaunchConfiguration):
                    raise AssertionError(f"{path.name}: {node.kwargs['name']}.{name} takes launch argument "
                                         f"{value.name!r} untyped: wrap it in ParameterValue(..., value_type=...)")
                if isinstance(value, ParameterValue):
                    assert value.value_type is types_[name], \
                        f"{path.name}: {node.kwargs['name']}.{name} is a {types_[name].__name__}, coerced to {value.value_type}"
                    checked += 1
                else:  # a literal
                    assert isinstance(value, types_[name]), (path.name, name, value)
    assert checked, "no typed parameter found"


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_bool_arguments_offer_choices_and_bag_default_is_fresh(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ld = _load(path, monkeypatch)
    arguments = {e.name: e for e in ld.args[0] if isinstance(e, DeclareLaunchArgument)}
    for arg in arguments.values():
        assert re.match(r"\[(string|path|bool|float|int)\] ", arg.description), f"{arg.name}: say its type first"
        if arg.description.startswith("[bool]"):
            assert arg.choices == ["true", "false"] and arg.default_value in arg.choices, arg.name
    # The recorder refuses an existing path: a fixed default would break every second launch.
    bag = arguments["bag_path"].default_value
    assert re.fullmatch(r"pai_(replay_|sim_)?bag_\d{8}_\d{6}", bag), bag


def test_with_real_launch_ros_where_available() -> None:
    pytest.importorskip("launch_ros", reason="launch_ros is not installable here; checked against stand-ins above")
    from launch import LaunchDescription

    for path in LAUNCH_FILES:
        spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert isinstance(module.generate_launch_description(), LaunchDescription)


@pytest.mark.parametrize("path", [p for p in LAUNCH_FILES if "sae_path" in p.read_text()], ids=lambda p: p.name)
def test_sae_path_overrides_the_params_file_only_when_given(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The launch argument's default, empty, was passed on: it overrode the sae_path of a robot's policy.yaml."""
    ld = _load(path, monkeypatch)

    def policy_overrides(given: dict[str, str]) -> dict:
        (policy,) = [e for e in _entities(ld, given) if type(e).__name__ == "Node"
                     and e.kwargs["executable"] == "policy_node"]
        (overrides,) = [entry for entry in policy.kwargs["parameters"] if isinstance(entry, dict)]
        assert type(policy.kwargs["parameters"][0]).__name__ == "LaunchConfiguration"  # params_file first
        return overrides

    assert "sae_path" not in policy_overrides({})
    given = policy_overrides({"sae_path": "/data/sae"})["sae_path"]
    assert isinstance(given, ParameterValue) and given.value_type is str
