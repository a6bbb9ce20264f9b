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
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "ROS_DISTRO", "PAI_PYTHON"))}
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


def test_an_unexpected_failure_names_step_line_and_command(checkout: Path, tmp_path: Path) -> None:
    """A command that fails outside the explicit `fail` calls still says where (the ERR trap).

    A `sha256sum` that fails stands in for any broken tool: it runs in a command substitution
    of step 3, the case that `set -e` used to end without a word.
    """
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "sha256sum").write_text("#!/bin/sh\necho 'sha256sum: simulated failure' >&2\nexit 3\n")
    (shims / "sha256sum").chmod(0o755)
    res = _run(checkout, PATH=f"{shims}:{os.environ['PATH']}", PAI_VENV=str(tmp_path / "venv"))
    assert res.returncode == 3, res.stderr
    failed = [line for line in res.stderr.splitlines() if "FAILED" in line]
    # One line, naming the step, the script line and the whole command (not only the last
    # command of the pipeline inside the substitution).
    assert len(failed) == 1, res.stderr
    assert 'FAILED at step "virtual environment" (scripts/setup.sh line ' in failed[0]
    assert "exit 3" in failed[0] and 'PINS_HASH="$(sha256sum "$REQ" | cut -c1-12)"' in failed[0]
    assert not (tmp_path / "venv").exists()


def _prune_function() -> str:
    text = (REPO / "scripts" / "setup.sh").read_text()
    start = text.index("prune_stale_venvs() {")
    return text[start:text.index("\n}\n", start) + 3]


@pytest.mark.parametrize("others", [0, 1, 3])
def test_stale_venv_pruning_keeps_the_current_and_the_newest_other(tmp_path: Path, others: int) -> None:
    """The function as setup.sh defines it, under the script's own `set -Eeuo pipefail`.

    With no other venv it used to return 1 (a `grep` that selected nothing) and end the
    script silently on a machine that never ran it.
    """
    cache = tmp_path / "cache"
    (cache / "venv-current").mkdir(parents=True)
    for i in range(others):
        d = cache / f"venv-old{i}"
        d.mkdir()
        os.utime(d, (1_000_000 + i, 1_000_000 + i))  # old2 is the newest
    script = ("set -Eeuo pipefail\nsay() { echo \"$*\"; }\n" + _prune_function()
              + f'CACHE="{cache}"; VENV="{cache}/venv-current"\nprune_stale_venvs\necho pruned-ok\n')
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and "pruned-ok" in res.stdout, res.stderr
    left = sorted(p.name for p in cache.iterdir())
    expected = {0: ["venv-current"], 1: ["venv-current", "venv-old0"], 3: ["venv-current", "venv-old2"]}[others]
    assert left == expected


def test_a_venv_outside_the_cache_prunes_nothing(tmp_path: Path) -> None:
    """CI builds its venv elsewhere (PAI_VENV): the cached venvs of other checkouts are not stale."""
    text = (REPO / "scripts" / "setup.sh").read_text()
    guard = next(line.strip() for line in text.splitlines() if "prune_stale_venvs; fi" in line)
    cache = tmp_path / "cache"
    for i in range(3):
        (cache / f"venv-{i}").mkdir(parents=True)
    script = ("set -Eeuo pipefail\nsay() { echo \"$*\"; }\n" + _prune_function()
              + f'CACHE="{cache}"; VENV="{tmp_path}/ci/venv"\n{guard}\necho done\n')
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and "done" in res.stdout, res.stderr
    assert sorted(p.name for p in cache.iterdir()) == ["venv-0", "venv-1", "venv-2"]
    # ... while the same guard with the venv in the cache does prune.
    script = script.replace(f'VENV="{tmp_path}/ci/venv"', f'VENV="{cache}/venv-0"')
    subprocess.run(["bash", "-c", script], check=True, capture_output=True, timeout=30)
    assert len(list(cache.iterdir())) == 2


def _fake_distro(tmp_path: Path, python_version: str) -> Path:
    prefix = tmp_path / "opt_ros_jazzy"
    (prefix / "lib" / f"python{python_version}" / "site-packages" / "rclpy").mkdir(parents=True)
    return prefix


def test_a_python_other_than_the_sourced_distros_is_refused(checkout: Path, tmp_path: Path) -> None:
    """Jazzy's rclpy is built for 3.12: a 3.11 venv (the default pick) could not import it, after GBs of pip."""
    prefix = _fake_distro(tmp_path, "3.12")
    fake = tmp_path / "python3.11"
    fake.write_text("#!/bin/sh\necho 3.11\n")
    fake.chmod(0o755)
    res = _run(checkout, ROS_DISTRO="jazzy", AMENT_PREFIX_PATH=str(prefix), PAI_PYTHON=str(fake),
               PAI_VENV=str(tmp_path / "venv"))
    assert res.returncode != 0 and 'FAILED at step "python"' in res.stderr, res.stderr
    assert "rclpy, which is built for Python 3.12; set PAI_PYTHON=python3.12" in res.stderr
    assert not (tmp_path / "venv").exists()
    # Without PAI_PYTHON, setup looks for the distro's own version, not the first Python it knows.
    prefix = _fake_distro(tmp_path / "other", "3.99")
    res = _run(checkout, ROS_DISTRO="jazzy", AMENT_PREFIX_PATH=str(prefix), PAI_VENV=str(tmp_path / "venv"))
    assert res.returncode != 0 and "built for Python 3.99, and LeRobot 0.4.4 needs Python 3.10-3.12" in res.stderr
    if shutil.which("python3.10", path="/usr/bin:/bin"):
        return  # the last case needs a machine without a system Python 3.10
    prefix = _fake_distro(tmp_path / "third", "3.10")  # a supported version that is not on PATH
    res = _run(checkout, ROS_DISTRO="humble", AMENT_PREFIX_PATH=str(prefix), PAI_VENV=str(tmp_path / "venv"),
               PATH=f"{tmp_path / 'no_python'}:/usr/bin:/bin")
    assert res.returncode != 0 and "built for Python 3.10, and python3.10 is not on PATH" in res.stderr, res.stderr


def test_env_sh_refuses_another_distro_than_the_one_set_up_against(checkout: Path, tmp_path: Path) -> None:
    (checkout / ".pai").mkdir()
    (checkout / ".pai" / "venv_path").write_text(str(tmp_path / "venv") + "\n")
    (checkout / ".pai" / "underlay").write_text("system-jazzy\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "ROS_DISTRO"))}
    for distro, expected in (("humble", "set up against ROS 2 jazzy, not the sourced humble"),
                             (None, "set up against ROS 2 jazzy; source /opt/ros/jazzy/setup.bash first")):
        res = subprocess.run(["bash", "-c", f"source {checkout / 'scripts' / 'env.sh'}"], capture_output=True,
                             text=True, env={**env, **({"ROS_DISTRO": distro} if distro else {})}, timeout=60)
        assert res.returncode == 1 and expected in res.stderr, res.stderr
    # The distro it was set up against goes on to the venv.
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "activate").write_text("export PAI_TEST_ACTIVATED=1\n")
    res = subprocess.run(["bash", "-c", f"source {checkout / 'scripts' / 'env.sh'} && echo $PAI_TEST_ACTIVATED"],
                         capture_output=True, text=True, env={**env, "ROS_DISTRO": "jazzy"}, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "1", res.stderr
