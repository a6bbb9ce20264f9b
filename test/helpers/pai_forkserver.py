"""Runs `pai` command lines for the tests in forked children of one process that imported torch and
LeRobot once (the conftest's ``run_pai``; ``PAI_TEST_FRESH_PROCESSES=1`` turns it off).

Importing LeRobot's ACT takes 3-6 s here; the suite runs `pai` about 140 times, and that import was
about a sixth of its time. Each command still runs in its own process, as ``python -m pai_ros.cli``
from the repository would: its own argv, environment, working directory, output files and exit
status, with the interpreter's exit-status rules (an uncaught ``SystemExit`` or exception ends it as
it would end a fresh interpreter) and its exit steps (threads joined, atexit handlers run, streams
flushed). What differs: what was imported before it started, and at exit the modules are not torn
down (objects left to module teardown are not finalised; weakref.finalize runs, it is an atexit
handler). Because of the imports, the conftest uses this server only when the test's environment is
the one the server started with (a variable read at import time would otherwise be stale), and the
tests of what a command imports start interpreters of their own.

Protocol, on this process's standard input and output (one JSON object per line):
    -> {"argv": [...], "cwd": "...", "env": {...}, "stdout": PATH, "stderr": PATH}
    <- {"pid": N}    the child runs; the client may kill N when its timeout passes
    <- {"rc": N}     as subprocess reports it (negative: ended by that signal)
The first line the server writes is {"ready": true, "said": TEXT}, once the imports are done (TEXT: what
they printed on stderr).
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import runpy
import signal
import sys
import tempfile
import threading
from typing import NoReturn

# What `pai` commands import between them, slowest first. Only imports: no torch operation runs here,
# so no thread pool exists yet that a child could inherit half-made.
PRELOAD = ("torch", "torchvision", "lerobot.policies.act.modeling_act", "lerobot.datasets.lerobot_dataset",
           "cv2", "pyarrow.parquet", "safetensors.torch")


def run_child(request: dict, repo: str) -> NoReturn:
    """In the forked child: be ``python -m pai_ros.cli ARGV`` run in ``cwd``, and end as it would."""
    for stream, path in ((1, request["stdout"]), (2, request["stderr"])):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, stream)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()  # the test's environment now (the client checked that import-time variables match)
    os.environ.update(request["env"])
    sys.argv = [os.path.join(repo, "pai_ros", "cli.py"), *request["argv"]]
    interrupted = False
    try:
        runpy.run_module("pai_ros.cli", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:  # the interpreter's rules for an uncaught SystemExit
        if exc.code is None or isinstance(exc.code, int):
            code = (exc.code or 0) & 0xFF
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException as exc:  # an uncaught exception: its traceback and status 1
        sys.excepthook(type(exc), exc, exc.__traceback__)
        code = 1
        interrupted = isinstance(exc, KeyboardInterrupt)
    # An interpreter's exit, in its order (threads joined, atexit handlers, streams flushed), without
    # tearing down the modules: in a child of a process that imported torch that took ~1 s of
    # copy-on-write page faults, where the command itself may take 0.2 s.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    gc.collect()  # the interpreter's last collection: a file object in a cycle is flushed and closed here
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    if interrupted:  # as Python ends on an uncaught KeyboardInterrupt: killed by SIGINT (status -2)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code)


def preload() -> str:
    """Import PRELOAD; what the imports printed on stderr (a fresh interpreter would print it in each command
    that imports them, a forked child never: the client does not use a server whose imports said anything)."""
    sys.stderr.flush()
    kept = os.dup(2)
    with tempfile.TemporaryFile() as said:
        os.dup2(said.fileno(), 2)
        try:
            for name in PRELOAD:
                __import__(name)
        finally:
            sys.stderr.flush()
            os.dup2(kept, 2)
            os.close(kept)
        said.seek(0)
        return said.read().decode(errors="replace")


def main(repo: str) -> None:
    protocol_in = os.fdopen(os.dup(0), "r")
    protocol_out = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):  # a child's stdin is empty, and nothing a child prints can reach the protocol
        os.dup2(devnull, fd)
    sys.path[0] = repo  # as `python -m` run from the repository has it (not this file's folder)
    said = preload()
    gc.freeze()  # what was imported stays out of the children's collections (fewer pages copied on write)
    print(json.dumps({"ready": True, "said": said}), file=protocol_out)
    for line in protocol_in:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            protocol_in.close()
            protocol_out.close()
            os.close(devnull)
            run_child(request, repo)
        print(json.dumps({"pid": pid}), file=protocol_out)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), file=protocol_out)


if __name__ == "__main__":
    main(sys.argv[1])
