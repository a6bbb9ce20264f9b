"""Start real ROS processes for integration tests and read their output with timeouts."""

from __future__ import annotations

import json
import os
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
        # Notified by the reader thread on every new line and at end of output: waits wake at once, not on a poll.
        self._changed = threading.Condition()
        self._eof = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        try:
            for line in self.popen.stdout:
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        finally:
            with self._changed:
                self._eof = True
                self._changed.notify_all()

    def mark(self) -> int:
        """How many lines the reader has taken so far: take it right BEFORE an action, then
        `wait_for_line(..., since=mark)` skips every earlier line that also matches. A line printed just
        before the mark but not yet read counts as after it: where that race matters, bound the
        predicate by time too (`recv_ns` of a probe message)."""
        with self._changed:
            return len(self.lines)

    def wait_for_line(self, predicate: Callable[[str], bool], timeout: float = 60, since: int = 0) -> str:
        """The first line from index `since` on (0: the first line ever printed) that satisfies `predicate`, waiting
        up to `timeout` seconds for it. TimeoutError, with the last 30 lines, if none comes in time or the process
        ends (its output closed, or it exited and printed nothing more for a second) without one."""
        deadline = time.monotonic() + timeout
        checked = since
        exited_at: float | None = None
        while True:
            with self._changed:
                new = self.lines[checked:]
                eof = self._eof
            checked += len(new)
            for line in new:  # outside the lock: a slow predicate must not stall the reader (or a full pipe the child)
                if predicate(line):
                    return line
            now = time.monotonic()
            if eof or now >= deadline:
                break
            if self.popen.poll() is not None:  # a grandchild may hold the output open after the process exited
                exited_at = now if exited_at is None else exited_at
                if now - exited_at > 1.0:
                    break
            with self._changed:
                if len(self.lines) == checked and not self._eof:
                    # Woken by the next line; the 0.5 s cap only bounds how late an exit (above) is noticed.
                    self._changed.wait(min(deadline - now, 0.5))
        where = f" from line {since} on" if since else ""
        ended = ""
        if eof or exited_at is not None:
            try:
                ended = f" (it ended, exit status {self.popen.wait(timeout=2)})"
            except subprocess.TimeoutExpired:
                ended = " (its output ended)"
        raise TimeoutError(f"{self.name}: no matching line{where} within {timeout} s{ended}; output:\n"
                           + "\n".join(self.lines[-30:]))

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

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float, since: int = 0) -> dict:
        """The first message printed from line `since` on (see Proc.mark) that satisfies `predicate`."""
        line = self.wait_for_line(lambda s: s.startswith("{") and predicate(json.loads(s)), timeout, since)
        return json.loads(line)
