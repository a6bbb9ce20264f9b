"""Repair the CMake exports of the ROS 2 wheels installed in a virtual environment.

The message packages' exported targets (e.g. ``std_msgs::std_msgs__rosidl_generator_py``)
name the Python and NumPy include directories of the machine that built the wheels
(``/opt/python/cp3XX-cp3XX/...``). CMake's generate step rejects targets whose include
directories do not exist, so building any package that depends on those messages fails.
This rewrites those prefixes to this venv's real paths. Idempotent: a second run finds
nothing to change.

Usage: python fix_ros_wheel_cmake.py VENV
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

# NumPy first: its path starts with the Python prefix pattern's text.
_NUMPY_INCLUDE = re.compile(
    r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/(?:_core|core)/include"
)
_PYTHON_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")


def repair(share_dir: Path, python_include: str, numpy_include: str) -> int:
    """Rewrite builder paths in every .cmake file under ``share_dir``; return files changed."""
    changed = 0
    for path in share_dir.rglob("*.cmake"):
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        new = _NUMPY_INCLUDE.sub(numpy_include, text)
        new = _PYTHON_INCLUDE.sub(python_include, new)
        if new != text:
            path.write_text(new, encoding="utf-8", errors="surrogateescape")
            changed += 1
    return changed


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    venv = Path(argv[1])
    import numpy  # the venv's numpy: this script runs with the venv's interpreter

    python_include = sysconfig.get_paths()["include"]
    if not Path(python_include, "Python.h").is_file():
        print(f"Python headers not found at {python_include}: install python3-dev", file=sys.stderr)
        return 1
    changed = repair(venv / "share", python_include, numpy.get_include())
    print(f"[setup] ROS wheel CMake exports: {changed} file(s) repaired")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
