"""Start real ROS processes for integration tests and read their output with timeouts."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

HELPERS = Path(__file__).parent / "helpers"


REPO = Path(__file__).resolve().parents[1]


def _default_sigint() -> None:
    """In the child, before exec: Ctrl-C (SIGINT) back to its default. A shell starts background jobs with SIGINT
    ignored and children inherit that, so a suite run as `make test &` sent Ctrl-C to Python commands that never
    saw it (no KeyboardInterrupt: `pai features ui` was killed after the stop timeout)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Proc:
    """A subprocess whose stdout+stderr lines are collected by a reader thread (so waits can time out)."""

    def __init__(self, args: list[str], env: dict[str, str], name: str = "process", stdin: bool = False) -> None:
        self.name = name
        self.popen = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, bufsize=1, preexec_fn=_default_sigint,
                                      stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line.rstrip("\n"))

    def wait_for_line(self, predicate: Callable[[str], bool], timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        for line in list(self.lines):
            if predicate(line):
                return line
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self.popen.poll() is not None and self._queue.empty():
                    break
                continue
            if predicate(line):
                return line
        raise TimeoutError(f"{self.name}: no matching line within {timeout} s; output:\n" + "\n".join(self.lines[-30:]))

    def send(self, line: str) -> None:
        assert self.popen.stdin is not None, "start the process with stdin=True"
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def wait(self, timeout: float = 60) -> int:
        """Exit status, once every output line has been read."""
        rc = self.popen.wait(timeout=timeout)
        self._thread.join(timeout=10)
        return rc

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def cpu_seconds(self) -> float:
        """utime + stime of the process so far (from /proc; Linux)."""
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._thread.join(timeout=5)
        return self.popen.returncode


class Probe(Proc):
    """test/helpers/topic_probe.py: JSON lines per received message."""

    def __init__(self, specs: list[str], env: dict[str, str]) -> None:
        super().__init__([sys.executable, str(HELPERS / "topic_probe.py"), *specs], env, "probe")
        self.wait_for_line(lambda line: line == "READY", 30)

    def messages(self, topic: str | None = None) -> list[dict]:
        out = []
        for line in list(self.lines):
            if line.startswith("{"):
                msg = json.loads(line)
                if topic is None or msg["topic"] == topic:
                    out.append(msg)
        return out

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float) -> dict:
        line = self.wait_for_line(lambda s: s.startswith("{") and predicate(json.loads(s)), timeout)
        return json.loads(line)
