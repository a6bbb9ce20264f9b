"""Whether a path lies in a ``pai demo`` output that never finished (Ctrl-C, a crash).

The demo writes its bag, tables and features into one directory as it goes, marks the directory
first and writes ``report.json`` last. After an interrupted run a part of it (``OUT/features``)
lacks pieces, and a command pointed at that part should say that the run did not finish rather
than which piece is missing: otherwise `pai features ui` sends the user to `pai features analyse`,
and that to `pai features record`, for what one `pai demo --overwrite` makes. The marker's rules
live here, below both ``demo`` (which writes them) and ``features`` (which reads the demo's
output), because ``demo`` imports ``features``.
"""

from __future__ import annotations

from pathlib import Path

DEMO_MARKER = ".pai_demo"  # written first: what --overwrite may replace
REPORT_FILE = "report.json"  # written last: its presence says the run finished


def unfinished_demo(path: Path) -> Path | None:
    """The demo output directory holding ``path`` (or ``path`` itself) if that run never finished."""
    for directory in (path, *path.parents):
        if (directory / DEMO_MARKER).is_file():
            return None if (directory / REPORT_FILE).exists() else directory
    return None


def unfinished_demo_reason(path: Path) -> str | None:
    """One clause saying that ``path`` is part of an unfinished demo run and how to finish it, or None."""
    out = unfinished_demo(Path(path).resolve())
    if out is None:
        return None
    return (f"{out} is an unfinished `pai demo` run (no {REPORT_FILE}: interrupted?); "
            f"`pai demo --output-dir {out} --overwrite` runs it again")
