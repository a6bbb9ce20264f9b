"""The colcon overlay has the layout `ros2 run` / `ros2 launch` and ament expect."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "install" / "pai_ros"
pytestmark = pytest.mark.ros


def test_executables_in_lib_pai_ros() -> None:
    lib = INSTALL / "lib" / "pai_ros"
    sources = sorted(p.name for p in (REPO / "scripts" / "ros").iterdir())
    assert sources, "no executables to install"
    for name in sources:
        exe = lib / name
        assert exe.is_file() and os.access(exe, os.X_OK), exe
        assert exe.read_text().startswith("#!"), f"{exe} has no shebang"


def test_share_has_package_xml_launch_and_config() -> None:
    share = INSTALL / "share" / "pai_ros"
    assert (share / "package.xml").is_file()
    for folder in ("launch", "config"):
        src = sorted(p.name for p in (REPO / folder).iterdir() if not p.name.startswith("."))
        installed = sorted(p.name for p in (share / folder).iterdir() if not p.name.startswith("."))
        assert installed == src, folder


def test_ament_index_knows_the_package() -> None:
    # `ros2 run`/`ros2 launch` find packages through the ament resource index.
    from ament_index_python.packages import get_package_prefix, get_package_share_directory

    assert Path(get_package_prefix("pai_ros")).resolve() == INSTALL.resolve()
    assert Path(get_package_share_directory("pai_ros")).resolve() == (INSTALL / "share" / "pai_ros").resolve()


def test_generated_message_and_python_modules_share_one_package() -> None:
    site = next((INSTALL / "lib").glob("python3.*/site-packages/pai_ros"))
    assert (site / "msg" / "__init__.py").is_file()
    assert (site / "cli.py").exists()
