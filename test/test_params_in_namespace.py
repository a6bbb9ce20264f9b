"""The shipped parameter files apply under a namespace, and a file that misses the node says so.

rcl applies a parameter file's section only when its key matches the node's fully qualified
name. The files in config/ are keyed ``/**/<node>``; keyed by the bare node name they were
silently ignored under ``namespace:=robot1`` (the node ran on its defaults). Each node is started
here as a real process with the shipped YAML in namespace /robot7, and its parameters are read
back from another process through the standard ``/robot7/<node>/get_parameters`` service.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ros_processes import HELPERS, Probe, Proc

from pai_ros.ros.params import command_line_unknowns, key_matches, params_file_problems, params_files

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config"


# ------------------------------------------------------------------ without ROS

def test_params_files_are_read_from_the_ros_arguments_only() -> None:
    argv = ["node", "--params-file", "not_ros.yaml", "--ros-args", "-r", "__ns:=/a", "--params-file", "one.yaml",
            "-p", "x:=1", "--", "--params-file", "user.yaml", "--ros-args", "--params-file", "two.yaml"]
    assert params_files(argv) == ["one.yaml", "two.yaml"]


def test_command_line_overrides_the_node_does_not_declare_are_named() -> None:
    argv = ["node", "-p", "not_ros:=1", "--ros-args", "-p", "contrl_rate_hz:=10.0", "--param", "mode:=queue",
            "-p", "recorder_node:speed:=3", "-p", "policy_node:sped:=3", "-p", "/robot1/policy_node:x:=1",
            "-p", "use_sim_time:=true", "-p", "qos_overrides./tf.publisher.depth:=5"]
    assert command_line_unknowns("/robot1/policy_node", argv, {"control_rate_hz", "mode"}) == [
        "'contrl_rate_hz' (did you mean 'control_rate_hz'?)", "'sped'", "'x'"]


@pytest.mark.parametrize("key, fqn, applies", [
    ("/**", "/robot1/policy_node", True),
    ("/**/policy_node", "/policy_node", True),
    ("/**/policy_node", "/a/b/policy_node", True),
    ("/**/policy_node", "/robot1/recorder_node", False),
    ("policy_node", "/policy_node", True),            # a bare name is absolute ...
    ("policy_node", "/robot1/policy_node", False),    # ... so it misses every namespace
    ("/*/policy_node", "/robot1/policy_node", True),
    ("/*/policy_node", "/policy_node", False),        # * is exactly one token
    ("/robot1/policy_node", "/robot2/policy_node", False),
    ("/robot*/policy_node", "/robot1/policy_node", False),  # no partial-token wildcards
])
def test_key_matching_follows_rcl(key: str, fqn: str, applies: bool) -> None:
    assert key_matches(key, fqn) is applies


def test_a_file_that_misses_the_node_or_sets_unknown_names_is_named(tmp_path: Path) -> None:
    bare = tmp_path / "bare.yaml"
    bare.write_text("policy_node:\n  ros__parameters:\n    control_rate_hz: 15.0\n")
    typo = tmp_path / "typo.yaml"
    typo.write_text("/**/policy_node:\n  ros__parameters:\n    contol_rate_hz: 15.0\n    qos_overrides:\n"
                    "      /action:\n        publisher:\n          depth: 3\n")
    nested = tmp_path / "nested.yaml"
    nested.write_text("robot1:\n  policy_node:\n    ros__parameters:\n      control_rate_hz: 15.0\n")
    shared = tmp_path / "shared.yaml"  # one wildcard section for several nodes, and another node's own
    shared.write_text("/**:\n  ros__parameters:\n    use_sim_time: true\n    rate_factor: 0.5\n"
                      "/**/replay_node:\n  ros__parameters:\n    loop: true\n")
    declared = {"control_rate_hz"}

    def problems(fqn: str, path: Path) -> tuple[list[str], list[str]]:
        return params_file_problems(fqn, ["x", "--ros-args", "--params-file", str(path)], declared)

    # This node's section keyed for another namespace: refused (the node would run on its defaults).
    refusals, warnings = problems("/robot1/policy_node", bare)
    assert len(refusals) == 1 and not warnings and "\n" not in refusals[0]
    for needle in (str(bare), "/robot1/policy_node", "'/policy_node' are keyed for another namespace",
                   "none of their values is used", "'/**/policy_node:'"):
        assert needle in refusals[0], (needle, refusals[0])
    assert problems("/policy_node", bare) == ([], [])
    # ... also beside a wildcard section that does reach the node (a shared file: /**: use_sim_time).
    bare_and_shared = tmp_path / "bare_and_shared.yaml"
    bare_and_shared.write_text("/**:\n  ros__parameters:\n    use_sim_time: true\n" + bare.read_text())
    refusals, _ = problems("/robot1/policy_node", bare_and_shared)
    assert len(refusals) == 1 and "'/policy_node' are keyed for another namespace" in refusals[0]
    assert problems("/policy_node", bare_and_shared) == ([], [])

    # A typo in this node's own section: refused with the name it meant, as after -p.
    refusals, warnings = problems("/robot1/policy_node", typo)
    assert len(refusals) == 1 and not warnings
    assert "sets 'contol_rate_hz' (did you mean 'control_rate_hz'?)" in refusals[0]
    assert "qos_overrides" not in refusals[0]

    # The nested form names the namespace by mapping levels: /robot1/policy_node.
    assert problems("/robot1/policy_node", nested) == ([], [])
    assert "'/robot1/policy_node'" in problems("/robot2/policy_node", nested)[0][0]

    # A section that may serve other nodes: what this node lacks there is a warning, not a refusal.
    refusals, warnings = problems("/robot1/policy_node", shared)
    assert not refusals and len(warnings) == 1 and "sets rate_factor in its section '/**'" in warnings[0]
    # A file of another node's sections only: a warning (launch may hand one file to every node).
    other = tmp_path / "other.yaml"
    other.write_text("/**/replay_node:\n  ros__parameters:\n    loop: true\n")
    refusals, warnings = problems("/robot1/policy_node", other)
    assert not refusals and len(warnings) == 1 and "'/**/replay_node' name other nodes" in warnings[0]
    # The same file for the node its own section names: that section is for it alone.
    refusals, _ = problems("/robot1/replay_node", shared)
    assert len(refusals) == 1 and "sets 'loop' in its section '/**/replay_node'" in refusals[0]


def test_every_shipped_file_applies_in_any_namespace() -> None:
    for file in sorted(CONFIG.glob("*.yaml")):
        node = file.stem + "_node"
        for fqn in (f"/{node}", f"/robot7/{node}", f"/lab/arm2/{node}"):
            declared = set(_file_values(file))
            assert params_file_problems(fqn, ["x", "--ros-args", "--params-file", str(file)], declared) == ([], []), fqn


def _file_values(file: Path) -> dict:
    (body,) = yaml.safe_load(file.read_text()).values()
    return body["ros__parameters"]


# ------------------------------------------------------------------ real processes

def _defaults(node: str) -> dict:
    import importlib

    return {p.name: p.default for p in importlib.import_module(f"pai_ros.ros.{node}").PARAMS}


def _same(got, want) -> bool:
    if isinstance(want, list):
        return list(got) == want
    if isinstance(want, float):
        return isinstance(got, float) and got == want
    return got == want and type(got) is type(want)


@pytest.mark.ros
@pytest.mark.slow
def test_each_node_applies_the_shipped_yaml_under_a_namespace(tiny_act: Path, tiny_dataset, ros_env: dict,
                                                              tmp_path: Path) -> None:
    dataset_root, _ = tiny_dataset
    ns = "/robot7"
    extra = {
        "policy_node": ["-p", f"policy_path:={tiny_act}"],
        # loop keeps the replay alive while its parameters are read (it exits at the end otherwise).
        "replay_node": ["-p", f"dataset_root:={dataset_root}", "-p", "loop:=true"],
        "recorder_node": ["-p", f"output:={tmp_path / 'bag'}"],
        "sim_node": ["-p", "loop:=true"],
    }
    files = {"policy_node": "policy.yaml", "replay_node": "replay.yaml", "recorder_node": "recorder.yaml",
             "sim_node": "sim.yaml"}
    expected = {node: {k: v for k, v in _file_values(CONFIG / f).items()
                       if not (node in ("replay_node", "sim_node") and k == "loop")}
                for node, f in files.items()}
    for node, values in expected.items():
        # Else this test could not tell the file's values from the node's defaults.
        assert any(not _same(_defaults(node)[k], v) for k, v in values.items()), f"{files[node]} sets only defaults"

    procs = [Proc([sys.executable, "-m", f"pai_ros.ros.{node}", "--ros-args", "-r", f"__ns:={ns}",
                   "--params-file", str(CONFIG / files[node]), *extra[node]], ros_env, node) for node in files]
    try:
        # Every declared parameter, not only the file's: GetParameters answers nothing at all when
        # one name of the request has no value (an empty list declared by type only, once).
        specs = [f"{ns}/{node}={','.join(_defaults(node))}" for node in expected]
        reader = Proc([sys.executable, str(HELPERS / "get_params.py"), *specs, "--timeout", "120"], ros_env, "reader")
        assert reader.wait(timeout=180) == 0, "\n".join(reader.lines)
        results = {r["node"]: r for r in (json.loads(line) for line in reader.lines if line.startswith("{"))}
    finally:
        for p in procs:
            p.stop()
    for node, values in expected.items():
        result = results[f"{ns}/{node}"]
        assert "error" not in result, (result, "\n".join(next(p for p in procs if p.name == node).lines[-20:]))
        wrong = {k: (result["values"][k], v) for k, v in values.items() if not _same(result["values"][k], v)}
        assert not wrong, f"{ns}/{node} (got, file): {wrong}"
    for p in procs:  # and none of them complained about its file
        assert not [line for line in p.lines if "parameter file" in line], (p.name, p.lines)


@pytest.mark.ros
@pytest.mark.parametrize("content, needle", [
    # The namespace typo: this node's section keyed for /recorder_node, and the node runs as /robot7/...
    ("recorder_node:\n  ros__parameters:\n    flush_period_s: 0.5\n",
     "does not apply to this node (/robot7/recorder_node): its section(s) '/recorder_node' are keyed for another "
     "namespace"),
    # A misspelt name in its own section (with -p the same typo stops it too).
    ("/**/recorder_node:\n  ros__parameters:\n    recrod_heatmaps: true\n",
     "sets 'recrod_heatmaps' (did you mean 'record_heatmaps'?) in its section '/**/recorder_node'"),
])
def test_a_file_that_misses_its_node_stops_it_with_one_line(content: str, needle: str, ros_env: dict,
                                                           tmp_path: Path) -> None:
    """It used to log an error and go on with the defaults: a robot's YAML with `acton_max:` would start an
    acting node without its clamp."""
    params = tmp_path / "recorder.yaml"
    params.write_text(content)
    res = subprocess.run([sys.executable, "-m", "pai_ros.ros.recorder_node", "--ros-args", "-r", "__ns:=/robot7",
                          "--params-file", str(params), "-p", f"output:={tmp_path / 'bag'}"],
                         capture_output=True, text=True, env=ros_env, timeout=120, cwd=REPO)
    lines = [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]
    assert res.returncode == 1 and len(lines) == 1, (res.returncode, lines)
    assert lines[0].startswith(f"recorder_node: error: parameter file {params}") and needle in lines[0], lines
    assert not (tmp_path / "bag").exists()


@pytest.mark.ros
def test_a_wildcard_section_for_other_nodes_is_one_error_line_and_the_node_runs(ros_env: dict,
                                                                               tmp_path: Path) -> None:
    shared = tmp_path / "shared.yaml"
    shared.write_text("/**:\n  ros__parameters:\n    rate_factor: 0.5\n")
    rec = Proc([sys.executable, "-m", "pai_ros.ros.recorder_node", "--ros-args", "-r", "__ns:=/robot7",
                "--params-file", str(shared), "-p", f"output:={tmp_path / 'bag'}"], ros_env, "recorder_node")
    try:
        rec.wait_for_line(lambda s: "recording to" in s, 60)
    finally:
        rec.stop()
    said = [line for line in rec.lines if str(shared) in line]
    assert len(said) == 1 and "[ERROR]" in said[0] and "sets rate_factor in its section '/**'" in said[0], rec.lines


@pytest.mark.ros
def test_an_integer_for_a_double_is_taken_as_that_double(ros_env: dict, tmp_path: Path) -> None:
    """`-p rate_hz:=10` and `settle_s: 1` in a file are integers to rcl; rclpy refused them for doubles."""
    params = tmp_path / "sim.yaml"
    params.write_text("/**/sim_node:\n  ros__parameters:\n    settle_s: 1\n")
    probe = Probe(["/diagnostics:DiagnosticArray"], ros_env)
    sim = Proc([sys.executable, "-m", "pai_ros.ros.sim_node", "--ros-args", "-r", "__ns:=/robot7", "-p", "rate_hz:=10",
                "-p", "loop:=true", "--params-file", str(params)], ros_env, "sim_node")
    try:
        reader = Proc([sys.executable, str(HELPERS / "get_params.py"), "/robot7/sim_node=rate_hz,settle_s",
                       "--timeout", "120"], ros_env, "reader")
        assert reader.wait(timeout=180) == 0, "\n".join(reader.lines + sim.lines[-20:])
        result = next(json.loads(line) for line in reader.lines if line.startswith("{"))
        # Status names carry the namespace: two robots' sim_node statuses used to be one name.
        probe.wait_for(lambda m: any(s["name"] == "robot7/sim_node: sim" for s in m["status"]), 60)
    finally:
        sim.stop()
        probe.stop()
    assert "error" not in result, result
    # Doubles on the wire (a float in the JSON of the reader), and the declared type stays double.
    assert _same(result["values"]["rate_hz"], 10.0) and _same(result["values"]["settle_s"], 1.0), result


@pytest.mark.ros
@pytest.mark.parametrize("node, arg, needle", [
    ("replay_node", "rate_factor:=fast", "parameter 'rate_factor' of /robot7/replay_node must be a number; "
                                         "got fast (string)"),
    ("replay_node", "rate_factor:=200", "parameter 'rate_factor' of /robot7/replay_node must lie in"),
    ("recorder_node", "output:=123", "parameter 'output' of /robot7/recorder_node must be a string"),
    # rcl keeps an undeclared -p override without a word: the node would run at the default rate.
    ("sim_node", "rate_hz_:=10.0", "/robot7/sim_node has no parameter 'rate_hz_' (did you mean 'rate_hz'?)"),
    # A list rcl cannot parse (a bare y is a boolean in YAML): rclpy.init's own error, as one line.
    ("replay_node", "episodes:=[1,y]", "replay_node: error: cannot read the ROS arguments: Couldn't parse parameter "
                                       "override rule: '-p episodes:=[1,y]'"),
    ("recorder_node", "topics:=[x,y]", "recorder_node: error: cannot read the ROS arguments: Couldn't parse "
                                       "parameter override rule: '-p topics:=[x,y]'"),
    # Numbers of two YAML types in one list: the hint is about 1 vs 1.0, not about quoting strings.
    ("sim_node", "action_min:=[0.5, 1]", "Sequence should be of same type. Value type 'integer' do not belong "
                                         "at line_num 1 (a list holds one type: write 1.0, not 1, among doubles"),
    # Each hint is about its own mistake (the quoting hint was given for all of them).
    ("replay_node", "dataset_root:=", "'-p dataset_root:='. Error: error not set (a value is missing after ':='"),
    ("replay_node", "episodes:=[1,", "(the shell split the rule at a space: quote it whole"),
])
def test_a_value_of_the_wrong_type_is_one_line_and_exit_1(node: str, arg: str, needle: str, ros_env: dict) -> None:
    """launch_ros and `-p` read values as YAML: 2 is an integer, 123 a number. One line, no traceback."""
    res = subprocess.run([sys.executable, "-m", f"pai_ros.ros.{node}", "--ros-args", "-r", "__ns:=/robot7", "-p", arg],
                         capture_output=True, text=True, env=ros_env, timeout=120, cwd=REPO)
    # rcl's own "[ERROR] [rcl]: Failed to parse global arguments" is not shown: the line says what is wrong.
    lines = [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]
    assert res.returncode == 1 and len(lines) == 1 and needle in lines[0], (res.returncode, lines)


def test_a_relative_namespace_is_one_line_in_any_console_format(ros_env: dict) -> None:
    """rcl's warning and error lines are dropped in the user's own console format and colours too,
    and the line says what rcl's reason ("Expected lexeme type 19, got 18") does not."""
    env = {**ros_env, "RCUTILS_CONSOLE_OUTPUT_FORMAT": "[{severity}] {name} {message}",
           "RCUTILS_COLORIZED_OUTPUT": "1"}
    res = subprocess.run([sys.executable, "-m", "pai_ros.ros.replay_node", "--ros-args", "-r", "__ns:=robot7"],
                         capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    lines = [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]
    assert res.returncode == 1 and len(lines) == 1, (res.returncode, lines)
    assert lines[0].startswith("replay_node: error: cannot read the ROS arguments: Couldn't parse remap rule")
    assert lines[0].endswith("(a namespace is absolute: -r __ns:=/robot7)"), lines
    from pai_ros.ros.names import ros_arguments_hint  # the other spellings of the same rule

    for rule in ("--remap __ns:=robot7", "-r replay_node:__ns:=robot7"):
        assert ros_arguments_hint(f"Couldn't parse remap rule: '{rule}'. Error: Expected lexeme type 19, got 18") \
            == "a namespace is absolute: -r __ns:=/robot7", rule


@pytest.mark.parametrize("node, params_module", [
    ("policy_node", "pai_ros.live.parameters"), ("replay_node", "pai_ros.ros.replay_node"),
    ("recorder_node", "pai_ros.ros.recorder_node"), ("sim_node", "pai_ros.sim.parameters"),
])
def test_help_lists_every_parameter_and_starts_nothing(node: str, params_module: str) -> None:
    """--help used to start the node, which then stopped for want of a required parameter."""
    import importlib

    res = subprocess.run([str(REPO / "scripts" / "ros" / node), "--help"], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr
    assert res.stdout.startswith(f"usage: ros2 run pai_ros {node} --ros-args")
    for param in importlib.import_module(params_module).PARAMS:
        assert f"\n  {param.name} (" in res.stdout, param.name
    # After --ros-args too (rcl has no --help: it used to be "cannot read the ROS arguments: ['--help']").
    late = subprocess.run([str(REPO / "scripts" / "ros" / node), "--ros-args", "-p", "x:=1", "--help"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert late.returncode == 0 and late.stdout == res.stdout, late.stderr
