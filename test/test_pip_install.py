"""`pip install .` gives the offline toolkit: the `pai` command, no ROS imports on its paths."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Build from a copy: setuptools writes build/ and *.egg-info next to setup.py, and build/
    # is colcon's in the checkout.
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(REPO / "pai_ros", src / "pai_ros", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "README.md"):
        shutil.copy(REPO / name, src / name)
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(src)], check=True, capture_output=True, timeout=300)
    return target


def _clean_env(target: Path) -> dict[str, str]:
    # Only the installed copy and the venv's own site-packages: no overlay, no checkout.
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH")}
    env["PYTHONPATH"] = str(target)
    return env


def test_console_script_and_package_installed(installed: Path) -> None:
    assert (installed / "bin" / "pai").is_file()
    assert (installed / "pai_ros" / "cli.py").is_file()
    assert not (installed / "pai_ros" / "msg").exists()


def test_offline_toolkit_imports_no_ros(installed: Path) -> None:
    code = (
        "import sys, pai_ros, pai_ros.cli, pai_ros.policy.loading, pai_ros.demo.assets, pai_ros.sim.scene\n"
        "assert pai_ros.__file__.startswith(sys.argv[1]), pai_ros.__file__\n"
        "bad = [m for m in sys.modules if m.startswith(('rclpy', 'pai_ros.msg', 'rosidl'))]\n"
        "print('ROS modules:', bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(installed)], capture_output=True, text=True,
                         env=_clean_env(installed), cwd="/")
    assert res.returncode == 0, res.stdout + res.stderr


def test_pai_help_runs_from_the_install(installed: Path) -> None:
    res = subprocess.run([sys.executable, str(installed / "bin" / "pai"), "--help"], capture_output=True,
                         text=True, env=_clean_env(installed), cwd="/")
    assert res.returncode == 0, res.stderr
    assert "demo-assets" in res.stdout


def test_pai_demo_without_ros_is_one_line(installed: Path, tmp_path: Path) -> None:
    """`pai demo` runs the ROS nodes; in a plain pip install (no rclpy) it was a ModuleNotFoundError traceback."""
    blocker = tmp_path / "no_ros" / "rclpy"  # an rclpy that is not there, ahead of the venv's
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'rclpy'\", name='rclpy')\n")
    env = _clean_env(installed)
    env["PYTHONPATH"] = f"{blocker.parent}:{installed}"
    res = subprocess.run([sys.executable, str(installed / "bin" / "pai"), "demo", "--output-dir",
                          str(tmp_path / "out")], capture_output=True, text=True, env=env, cwd="/", timeout=120)
    lines = [s for s in res.stderr.splitlines() if s.strip()]
    assert res.returncode == 1 and len(lines) == 1, res.stderr
    assert lines[0].startswith("pai demo: error: pai demo needs ROS 2 (rclpy") and "No module named 'rclpy'" in lines[0]
    assert not (tmp_path / "out").exists()
