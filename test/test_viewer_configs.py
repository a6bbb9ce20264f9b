"""The shipped viewer configs (RViz2, Foxglove) name only topics that the nodes publish.

pai_ros/ros/topics.py is the one list of published topics; this test checks the viewer files
against it (names, message types, field paths, QoS), and the nodes' create_publisher calls
against it too, so that a renamed topic cannot leave a viewer showing nothing. No ROS needed:
message fields are looked up in the bag reader's type store.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from pai_ros.bags.typestore import typestore
from pai_ros.ros import topics

REPO = Path(__file__).resolve().parents[1]
RVIZ = REPO / "rviz" / "pai_ros.rviz"
FOXGLOVE = REPO / "foxglove" / "pai_ros_layout.json"
RVIZ_TYPES = {"rviz_default_plugins/Image": {"sensor_msgs/msg/Image"}}


def _published(topic: str) -> topics.Published:
    found = topics.find(topic)
    assert found is not None, f"{topic!r} is not a topic any pai_ros node publishes (pai_ros/ros/topics.py)"
    return found


def test_rviz_displays_show_published_images_with_matching_qos() -> None:
    config = yaml.safe_load(RVIZ.read_text())
    displays = config["Visualization Manager"]["Displays"]
    shown = set()
    for d in displays:
        topic = d["Topic"]["Value"]
        assert not topic.startswith("/"), f"{topic}: relative names follow rviz2's namespace (--ros-args -r __ns:=...)"
        entry = _published(topic)
        assert entry.msg_type in RVIZ_TYPES[d["Class"]], (topic, entry.msg_type, d["Class"])
        # A reliable subscription never matches a best-effort (sensor QoS) publisher.
        if entry.sensor_qos:
            assert d["Topic"]["Reliability Policy"] == "Best Effort", topic
        shown.add(topic)
    cams = topics.DEMO_CAMERAS
    assert shown == {topics.CAMERA_IMAGE.format(camera=c) for c in cams} | {topics.HEATMAP.format(camera=c) for c in cams}


def _leaves(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    return _leaves(node["first"]) + _leaves(node["second"])


def _message_paths(panel_id: str, config: dict) -> list[str]:
    kind = panel_id.split("!", 1)[0]
    if kind == "Image":
        return [config["imageMode"]["imageTopic"]]
    if kind in ("Plot", "StateTransitions"):
        return [p["value"] for p in config["paths"]]
    if kind == "RawMessages":
        return [config["topicPath"]]
    if kind in ("DiagnosticSummary", "DiagnosticStatusPanel"):
        return [config["topicToRender"]]
    raise AssertionError(f"{panel_id}: no rule for this panel type in the test")


def _check_field_path(msgtype: str, path: str) -> None:
    """`position[0]`, `reconstruction_error`, `header.stamp.sec` exist in the message type."""
    store = typestore()
    current = msgtype
    for part in path.split("."):
        m = re.fullmatch(r"([a-z_][a-z0-9_]*)(\[\d+\])?", part)
        assert m, f"cannot read field path {path!r}"
        fields = dict(store.fielddefs[current][1])
        assert m.group(1) in fields, f"{msgtype} has no field {m.group(1)!r} (path {path!r})"
        kind, detail = fields[m.group(1)]
        if m.group(2):
            assert kind.name in ("SEQUENCE", "ARRAY"), f"{path!r}: {m.group(1)} is not an array"
            kind, detail = detail[0]
        current = detail if kind.name == "NAME" else None  # a nested message, or a value (last part)


def test_foxglove_layout_names_published_topics_and_real_fields() -> None:
    layout = json.loads(FOXGLOVE.read_text())
    panels = layout["configById"]
    assert sorted(_leaves(layout["layout"])) == sorted(panels), "every panel placed once, none missing"
    named = set()
    for panel_id, config in panels.items():
        for path in _message_paths(panel_id, config):
            topic, _, fields = path.partition(".")
            # Foxglove shows absolute names: the layout is for nodes launched without a namespace.
            assert topic.startswith("/"), (panel_id, topic)
            entry = _published(topic)
            if panel_id.startswith("Image!"):
                assert entry.msg_type in ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"), panel_id
            if panel_id.startswith("Diagnostic"):
                assert entry.pattern == topics.DIAGNOSTICS
            if fields:
                _check_field_path(entry.msg_type, fields)
            named.add(entry.pattern)
    # The brief for this layout: heatmaps, actions (all three outputs), features, diagnostics.
    assert {topics.HEATMAP, topics.ACTION, topics.ACTION_TRAJECTORY, topics.ACTION_COMMANDS, topics.FEATURES,
            topics.DIAGNOSTICS} <= named


def _module_values(tree: ast.Module) -> dict[str, ast.expr]:
    """Module constants, and local names assigned exactly once anywhere (a topic chosen before a loop)."""
    values = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
              for t in node.targets if isinstance(t, ast.Name)}
    local: dict[str, list[ast.expr]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and node not in tree.body:
            for t in node.targets:
                if isinstance(t, ast.Name):
                    local.setdefault(t.id, []).append(node.value)
    return {**{k: v[0] for k, v in local.items() if len(v) == 1 and k not in values}, **values}


def _candidates(expr: ast.expr, module: dict[str, ast.expr]) -> list[ast.expr]:
    """What an expression can be: names of module constants (and of locals assigned once in the
    node's source) and subscripts of dicts/tuples resolved."""
    if isinstance(expr, ast.Name) and expr.id in module:
        return _candidates(module[expr.id], module)
    if isinstance(expr, ast.IfExp):
        return _candidates(expr.body, module) + _candidates(expr.orelse, module)
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr == "format":
        return _candidates(expr.func.value, module)  # topics.HEATMAP.format(camera=c): the pattern itself
    if isinstance(expr, ast.Subscript):
        out = []
        for base in _candidates(expr.value, module):
            key = expr.slice
            if isinstance(base, ast.Dict):
                out += [v for k, v in zip(base.keys, base.values)
                        if not isinstance(key, ast.Constant) or (isinstance(k, ast.Constant) and k.value == key.value)]
            elif isinstance(base, (ast.Tuple, ast.List)) and isinstance(key, ast.Constant):
                out.append(base.elts[key.value])
            else:
                out.append(expr)
        return [c for item in out for c in _candidates(item, module)]
    return [expr]


def _topic_regex(arg: ast.expr) -> str | None:
    """A regex for one topic expression; None where it is a topics.* reference."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return re.escape(arg.value)
    if isinstance(arg, ast.Attribute) and isinstance(arg.value, ast.Name) and arg.value.id == "topics":
        assert hasattr(topics, arg.attr), arg.attr
        return None
    if isinstance(arg, ast.JoinedStr):
        return "".join(re.escape(v.value) if isinstance(v, ast.Constant) else ".*" for v in arg.values)
    raise AssertionError(f"cannot read the topic {ast.unparse(arg)!r} of a create_publisher call")


def _example(pattern: str) -> str:
    return pattern.format(camera=topics.DEMO_CAMERAS[0], feature=7)


def unlisted_publishers(node: str, source: str) -> list[str]:
    """Topics that ``create_publisher`` calls in a node's source name and topics.py does not list."""
    tree = ast.parse(source)
    module = _module_values(tree)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr == "create_publisher"]
    assert calls, f"no create_publisher in {node}"
    missing = []
    for call in calls:
        for arg in _candidates(call.args[1], module):
            regex = _topic_regex(arg)
            if regex is not None and not [e for e in topics.PUBLISHED
                                          if re.fullmatch(regex, _example(e.pattern)) and node in e.nodes]:
                missing.append(ast.unparse(arg))
    return missing


@pytest.mark.parametrize("node", ["policy_node", "replay_node", "recorder_node", "sim_node"])
def test_every_topic_a_node_publishes_is_listed(node: str) -> None:
    missing = unlisted_publishers(node, (REPO / "pai_ros" / "ros" / f"{node}.py").read_text())
    assert not missing, f"{node} publishes {missing}, which pai_ros/ros/topics.py does not list"


def test_topics_from_a_table_of_outputs_are_resolved() -> None:
    """A publisher whose topic comes from a module-level table is read through the table."""
    source = """
OUTPUTS = {"joint_state": ("action", JointState), "commands": ("action_commands", X), "odd": ("not_listed", Y)}
class N:
    def __init__(self):
        self.pubs = {o: self.create_publisher(OUTPUTS[o][1], OUTPUTS[o][0], 10) for o in OUTPUTS}
"""
    assert unlisted_publishers("policy_node", source) == ["'not_listed'"]


def test_viewer_configs_are_installed_with_the_package() -> None:
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert re.search(r"install\(DIRECTORY[^)]*\brviz\b[^)]*\bfoxglove\b[^)]*share/\$\{PROJECT_NAME\}", cmake)
    share = REPO / "install" / "pai_ros" / "share" / "pai_ros"
    if share.is_dir():  # after make setup / make build
        assert (share / "rviz" / "pai_ros.rviz").is_file() and (share / "foxglove" / "pai_ros_layout.json").is_file()
