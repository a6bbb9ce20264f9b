"""The tests' way to run the real `pai` command line: each command in a process of its own.

By default a command runs in a child forked from helpers/pai_forkserver.py, a process that imported
torch and LeRobot once for the whole run (see its docstring for what is the same as a fresh
``python -m pai_ros.cli`` and what is not). A fresh interpreter is used instead when the test runs
the command with another environment than the server started with, when the server could not
start or stopped answering (the run's last lines say so), or when ``PAI_TEST_FRESH_PROCESSES=1``
asks for it (to rule the server out when a test fails).
"""

from __future__ import annotations

import atexit
import json
import locale
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVER = Path(__file__).resolve().parent / "helpers" / "pai_forkserver.py"


class ForkServer:
    """One running pai_forkserver.py and the environment it started with."""

    def __init__(self) -> None:
        self.env = _compared(os.environ)
        self._lock = threading.Lock()
        self._dir = tempfile.TemporaryDirectory(prefix="pai-forkserver-")
        self.commands_run = 0
        self.broken: str | None = None  # why the server is no longer used (its commands then run fresh)
        self._buffer = b""
        self.popen = subprocess.Popen([sys.executable, str(SERVER), str(REPO)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, cwd=REPO)
        try:
            ready = self._reply(120)
        except (RuntimeError, ValueError) as exc:
            ready = {"error": str(exc)}
        if ready is None or not ready.get("ready"):
            self.close()
            raise RuntimeError(f"it did not start: {ready or 'no answer in 120 s'}")
        if ready.get("said"):
            # A fresh interpreter would print these lines in every command that imports those modules.
            self.close()
            raise RuntimeError(f"its imports printed {ready['said'][:300]!r}")

    def _reply(self, timeout: float) -> dict | None:
        """The server's next line, or None when none is complete within ``timeout`` seconds. Read from the
        descriptor, not a buffered file: a buffer could hold the next line where select() cannot see it."""
        assert self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"pai_forkserver ended (exit status {self.popen.wait()})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def run(self, args: list[str], env: Mapping[str, str], timeout: float) -> subprocess.CompletedProcess:
        """As ``subprocess.run([python, -m, pai_ros.cli, *args], capture_output=True, text=True, env=env,
        cwd=REPO, timeout=timeout)`` would answer."""
        with self._lock:
            try:
                return self._run(args, env, timeout)
            except (OSError, RuntimeError, ValueError, KeyError) as exc:  # the server died or answered nonsense
                self.broken = f"{type(exc).__name__}: {exc}"
                raise

    def _run(self, args: list[str], env: Mapping[str, str], timeout: float) -> subprocess.CompletedProcess:
        self.commands_run += 1
        out, err = (Path(self._dir.name) / f"{self.commands_run}.{name}" for name in ("out", "err"))
        assert self.popen.stdin is not None
        self.popen.stdin.write((json.dumps({"argv": args, "cwd": str(REPO), "env": dict(env), "stdout": str(out),
                                            "stderr": str(err)}) + "\n").encode())
        self.popen.stdin.flush()
        started = self._reply(30)
        if started is None:
            raise RuntimeError("it did not start a command within 30 s")
        done = self._reply(timeout)
        if done is None:
            try:
                os.kill(started["pid"], signal.SIGKILL)
            except ProcessLookupError:  # it ended just now and the server reaped it: its status is on the way
                pass
            if self._reply(30) is None:
                raise RuntimeError(f"a command killed after its timeout did not end: pid {started['pid']}")
        said = _text(out), _text(err)
        for path in (out, err):
            path.unlink(missing_ok=True)
        if done is None:
            raise subprocess.TimeoutExpired(command(args), timeout, *said)
        return subprocess.CompletedProcess(command(args), done["rc"], *said)

    def close(self) -> None:
        if self.popen.poll() is None:
            assert self.popen.stdin is not None
            self.popen.stdin.close()  # the server's loop ends on end of input
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._dir.cleanup()


# Variables that no PRELOAD module of the server reads at import, set by what the pytest process itself
# imports rather than by a test: PYTEST_CURRENT_TEST changes with each test; OpenCV's import prepends
# its library folder to LD_LIBRARY_PATH (read by the loader at a process's start only: the server has
# its libraries loaded); pygame's import sets its prompt switch; pai_ros.ui.app sets Gradio's analytics
# switch (Gradio is not preloaded: a child imports it with the environment it is given). The first CI
# run with the server sent 105 of 267 commands to fresh interpreters over the last one.
NOT_COMPARED = frozenset({"PYTEST_CURRENT_TEST", "LD_LIBRARY_PATH", "PYGAME_HIDE_SUPPORT_PROMPT",
                          "GRADIO_ANALYTICS_ENABLED"})


def _compared(env: Mapping[str, str]) -> dict[str, str]:
    """The environment as far as it decides whether a forked command would see what a fresh one sees."""
    return {k: v for k, v in env.items() if k not in NOT_COMPARED}


def _text(path: Path) -> str:
    """What ``text=True`` makes of a captured stream: the locale's decoding and universal newlines
    (tqdm's carriage returns become line ends)."""
    data = path.read_bytes() if path.exists() else b""
    return data.decode(locale.getpreferredencoding(False)).replace("\r\n", "\n").replace("\r", "\n")


def command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "pai_ros.cli", *args]


_server: list[ForkServer] = []
# Why no server is used, when it could not start (every command then runs in a fresh interpreter).
unavailable: list[str] = []
# Commands run in fresh interpreters because their environment differed, by the variables that differed
# (conftest prints it at the end: a variable missing from NOT_COMPARED shows here as lost time).
fresh_runs: dict[str, int] = {}


def _fork_server() -> ForkServer | None:
    if not _server and not unavailable:
        try:
            _server.append(ForkServer())
        except RuntimeError as exc:
            unavailable.append(f"pai_forkserver: {exc}")
            return None
        atexit.register(_server[0].close)
    return _server[0] if _server and _server[0].broken is None else None


def run_pai(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real `pai` command line in a process of its own (see the module docstring)."""
    used = env if env is not None else os.environ
    server = None if os.environ.get("PAI_TEST_FRESH_PROCESSES") == "1" else _fork_server()
    if server is not None:
        now = _compared(used)
        if now == server.env:
            return server.run(list(args), used, timeout)
        differ = " ".join(sorted(k for k in set(now) | set(server.env) if now.get(k) != server.env.get(k)))
        fresh_runs[differ] = fresh_runs.get(differ, 0) + 1
    return subprocess.run(command(list(args)), capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)


def summary_lines() -> list[str]:
    """What the run's end says: how many commands forked, how many ran fresh and why."""
    server = _server[0] if _server else None
    forked, fresh = server.commands_run if server else 0, sum(fresh_runs.values())
    lines = []
    if forked or fresh:
        why = "; ".join(f"{n} with {keys} differing" for keys, n in fresh_runs.items())
        lines.append(f"pai commands: {forked} forked from one process, {fresh} in fresh interpreters"
                     + (f" (environment: {why})" if why else ""))
    stopped = [f"pai_forkserver stopped: {server.broken}"] if server and server.broken else []
    return lines + [f"{reason}; later commands ran in fresh interpreters" for reason in unavailable + stopped]
