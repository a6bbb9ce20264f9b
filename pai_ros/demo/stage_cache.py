"""Sealed stages of a build cache: built aside, swapped in whole, checked against their manifest.

The demo assets (:mod:`pai_ros.demo.assets`) are built in stages (datasets, policy, report, SAE,
closed loop), each minutes to an hour of work. A stage is built in a staging directory and
swapped into place only when complete, then sealed with a manifest of its files and sizes
(:data:`MANIFEST`). On every later use the manifest is compared with the disk: a stage that does
not match is said to be corrupt and rebuilt, and a directory without a manifest (an interrupted
build from before staging) is rebuilt too. A lock file serialises concurrent builders.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pai_ros.errors import UserError
from pai_ros.jsonfile import json_text
from pai_ros.staging import staged_directory

MANIFEST = ".pai-complete.json"


def say(msg: str) -> None:
    """A progress line of the asset build (stderr, flushed: builds run for minutes)."""
    print(f"[demo-assets] {msg}", file=sys.stderr, flush=True)


def default_cache_dir() -> Path:
    """PAI_CACHE_DIR, else $XDG_CACHE_HOME/pai_ros, else ~/.cache/pai_ros."""
    env = os.environ.get("PAI_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pai_ros"


# ------------------------------------------------------------------------------- sealing

def _files(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_size
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != MANIFEST}


def seal(directory: Path, info: dict | None = None) -> None:
    """Write the manifest of ``directory``'s files and sizes, with ``info`` (what the build measured)."""
    payload = {"files": _files(directory), "info": info or {}, "sealed_at": time.time()}
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json_text(payload, indent=1))
    os.replace(tmp, directory / MANIFEST)


def is_sealed(directory: Path) -> bool:
    """Finished once: a manifest is there (whether the files still match it is :func:`verify_stage`)."""
    return (directory / MANIFEST).is_file()


def verify_stage(directory: Path) -> str | None:
    """``None`` when the sealed stage matches its manifest, else what is wrong (one line)."""
    try:
        recorded = json.loads((directory / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"unreadable manifest {directory / MANIFEST}"
    actual = _files(directory)
    for name, size in recorded.items():
        if name not in actual:
            return f"{directory / name} is missing"
        if actual[name] != size:
            return f"{directory / name} has {actual[name]} bytes, expected {size}"
    return None


def build_stage(final: Path, build: Callable[[Path], dict | None]) -> None:
    """Build in a staging directory, seal it, then swap it into place."""
    with staged_directory(final, create=False) as partial:
        seal(partial, build(partial))


def ensure_stage(final: Path, label: str, build: Callable[[Path], dict | None], rebuild: bool) -> None:
    """Keep ``final`` if it is sealed and intact (and ``rebuild`` is false), else build it again."""
    if is_sealed(final) and not rebuild:
        problem = verify_stage(final)
        if problem is None:
            return
        say(f"cached {label} is corrupt ({problem}); rebuilding it")
    elif final.exists() and not rebuild:
        say(f"found an unfinished {label} at {final}; rebuilding it")
    build_stage(final, build)


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold the cache's lock: one builder at a time (others wait, then find the stages built)."""
    with open(directory / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prepare_root(cache_dir: Path, key: str) -> Path:
    """``cache_dir/demo/key``, created and checked writable (one line why not)."""
    root = cache_dir / "demo" / key
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        hint = "" if exc.errno == errno.ENOSPC else "; set PAI_CACHE_DIR or --cache-dir to a writable directory"
        raise UserError(f"cannot write the demo cache at {root}: {reason}{hint}") from None
    return root

