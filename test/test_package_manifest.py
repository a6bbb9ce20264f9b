"""package.xml declares what the code and the launch files import, so rosdep installs it.

Every top-level import of pai_ros/, launch/ and scripts/ros/ is one of: the standard library,
pai_ros itself, a ROS package (an exec_depend), a Python library with a rosdep key (an
exec_depend on that key), or a pip-only library named in package.xml's pip-only comment.
Imports guarded by ``except ImportError`` are optional and only need to be mentioned.
"""

from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROS_PYTHON_PACKAGES = {"rclpy", "launch", "launch_ros", "ament_index_python", "cv_bridge"}
ROSDEP_KEYS = {"numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml",
               "ruamel": "python3-ruamel.yaml", "matplotlib": "python3-matplotlib", "tqdm": "python3-tqdm"}
# import name -> the pip name the comment must mention (starlette comes with gradio)
PIP_NAMES = {"torch": "torch", "torchvision": "torchvision", "lerobot": "lerobot", "torchcodec": "torchcodec",
             "av": "av", "rosbags": "rosbags", "mcap": "mcap", "mcap_ros2": "mcap-ros2-support", "pyarrow": "pyarrow",
             "safetensors": "safetensors", "lz4": "lz4", "gradio": "gradio", "starlette": "gradio",
             "backports": "backports.zstd", "datasets": "datasets",
             "huggingface_hub": "huggingface_hub"}


def _guarded(tree: ast.Module) -> set[int]:
    """ids of import nodes inside a try whose handlers catch ImportError (optional imports)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            caught = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
            if caught & {"ImportError", "ModuleNotFoundError", "(ImportError, AttributeError)", "Exception"} or any(
                    "ImportError" in c for c in caught):
                out.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return out


def imports() -> tuple[set[str], set[str]]:
    """(required, optional) top-level module names; import_module("x") counts as optional."""
    required, optional = set(), set()
    files = [*(REPO / "pai_ros").rglob("*.py"), *(REPO / "launch").glob("*.py"), *(REPO / "scripts" / "ros").iterdir()]
    for path in files:
        tree = ast.parse(path.read_text())
        guarded = _guarded(tree)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args
                  and isinstance(node.args[0], ast.Constant)):
                optional.add(node.args[0].value.split(".")[0])
            for name in names:
                (optional if id(node) in guarded else required).add(name.split(".")[0])
    stdlib = set(sys.stdlib_module_names) | {"compression"}  # compression.zstd: the standard library from 3.14
    return required - stdlib - {"pai_ros"}, optional - stdlib - {"pai_ros"} - required


def _manifest() -> tuple[set[str], str]:
    root = ET.parse(REPO / "package.xml").getroot()
    deps = {e.text.strip() for e in root if e.tag in ("depend", "exec_depend") and e.text}
    comments = " ".join(re.findall(r"<!--(.*?)-->", (REPO / "package.xml").read_text(), re.S))
    return deps, comments


def _is_ros_package(module: str) -> bool:
    return module in ROS_PYTHON_PACKAGES or module.endswith(("_msgs", "_srvs", "_interfaces"))


def test_every_required_import_is_declared() -> None:
    required, _ = imports()
    deps, comments = _manifest()
    missing = []
    for module in sorted(required):
        if _is_ros_package(module):
            ok = module in deps
        elif module in ROSDEP_KEYS:
            ok = ROSDEP_KEYS[module] in deps
        elif module in PIP_NAMES:
            ok = re.search(rf"(?<![\w.-]){re.escape(PIP_NAMES[module])}(?![\w-])", comments) is not None
        else:
            raise AssertionError(f"{module}: new import; add it to package.xml and to this test's tables")
        if not ok:
            missing.append(module)
    assert not missing, f"package.xml does not declare (or, pip-only, mention): {missing}"


def test_optional_imports_are_mentioned() -> None:
    _, optional = imports()
    _, comments = _manifest()
    assert "cv_bridge" in optional, "cv_bridge is expected to be optional (guarded import)"
    for module in optional:
        assert module in comments or PIP_NAMES.get(module, "\0") in comments or module == "ament_index_python", module


def test_colcon_test_runs_the_unit_tests() -> None:
    deps = {e.tag: set() for e in ET.parse(REPO / "package.xml").getroot()}
    for e in ET.parse(REPO / "package.xml").getroot():
        deps[e.tag].add((e.text or "").strip())
    assert {"ament_cmake_pytest", "python3-pytest"} <= deps["test_depend"]
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert re.search(r"if\(BUILD_TESTING\).*ament_add_pytest_test\(\w+ test\b.*not ros and not slow", cmake, re.S)


def test_ros_packages_the_tests_import_are_declared() -> None:
    """rosgraph_msgs (the /clock publisher of the sim-time tests) was imported by a test only, undeclared."""
    root = ET.parse(REPO / "package.xml").getroot()
    declared = {e.text.strip() for e in root if e.tag in ("depend", "exec_depend", "test_depend") and e.text}
    used = set()
    for path in (REPO / "test").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                used |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                used.add(node.module.split(".")[0])
    ros = {m for m in used if _is_ros_package(m) and m != "pai_ros"}
    assert "rosgraph_msgs" in ros and not ros - declared, sorted(ros - declared)
