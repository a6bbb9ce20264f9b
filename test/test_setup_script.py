"""`make setup` fails with one clear message on an unsupported Python or without the index.

The script runs from a throw-away copy of the checkout so that it can never touch the real
venv record in .pai/.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    for name in ("setup.sh", "env.sh", "fix_ros_wheel_cmake.py"):
        shutil.copy(REPO / "scripts" / name, root / "scripts" / name)
    shutil.copy(REPO / "requirements.txt", root / "requirements.txt")
    return root


def _run(checkout: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "ROS_DISTRO"))}
    full_env.update(env)
    return subprocess.run(["bash", str(checkout / "scripts" / "setup.sh")], capture_output=True, text=True,
                          env=full_env, timeout=300)


def test_unsupported_python_is_named(checkout: Path, tmp_path: Path) -> None:
    fake = tmp_path / "python3.8"
    fake.write_text("#!/bin/sh\necho 3.8\n")
    fake.chmod(0o755)
    res = _run(checkout, PAI_PYTHON=str(fake), PAI_VENV=str(tmp_path / "venv"))
    assert res.returncode != 0
    assert 'FAILED at step "python"' in res.stderr
    assert "Python 3.8" in res.stderr and "3.10-3.12" in res.stderr
    assert not (tmp_path / "venv").exists()


def test_unreachable_package_index_is_named(checkout: Path, tmp_path: Path) -> None:
    # Port 9 (discard) on loopback refuses at once: the same as an index that cannot be reached.
    res = _run(checkout, PAI_VENV=str(tmp_path / "venv"), PIP_INDEX_URL="http://127.0.0.1:9/simple",
               PIP_CONFIG_FILE=os.devnull, PIP_FIND_LINKS="", PIP_EXTRA_INDEX_URL="", PIP_NO_CACHE_DIR="1")
    assert res.returncode != 0
    assert 'FAILED at step "virtual environment"' in res.stderr
    assert "cannot reach the Python package index" in res.stderr
    assert "Traceback" not in res.stderr
    # The venv was not marked complete, so the next run installs again instead of trusting it.
    assert not (tmp_path / "venv" / ".pai-pins-complete").exists()


def test_cmake_export_repair_is_idempotent(tmp_path: Path) -> None:
    import sys

    share = tmp_path / "venv" / "share" / "std_msgs" / "cmake"
    share.mkdir(parents=True)
    target = share / "export_std_msgs__rosidl_generator_pyExport.cmake"
    target.write_text(
        'INTERFACE_INCLUDE_DIRECTORIES "/opt/python/cp311-cp311/include/python3.11;'
        '/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include"\n')
    script = REPO / "scripts" / "fix_ros_wheel_cmake.py"
    first = subprocess.run([sys.executable, str(script), str(tmp_path / "venv")], capture_output=True, text=True)
    assert first.returncode == 0 and "1 file(s) repaired" in first.stdout
    text = target.read_text()
    assert "/opt/python" not in text
    import numpy
    import sysconfig

    assert numpy.get_include() in text and sysconfig.get_paths()["include"] in text
    second = subprocess.run([sys.executable, str(script), str(tmp_path / "venv")], capture_output=True, text=True)
    assert "0 file(s) repaired" in second.stdout
