"""Pictures as files: matplotlib on its Agg backend, and a figure saved and closed in one call.

Every PNG the package writes (training curves, faithfulness curves, feature rankings, the demo's
report) gets matplotlib from :func:`pyplot`, so none of them needs a display (a robot's computer
over SSH, CI); :func:`save_figure` closes the figure even when saving fails, so none stays open
in a long-running process, and writes it through a staged file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pai_ros.staging import staged_file


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the file-only Agg backend (imported on first use: matplotlib is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, title: str = "", dpi: float | None = None) -> Path:
    """``fig`` (with ``title`` above it, when given) laid out, written to ``path`` and closed.

    Written through a staged file: a run that dies while saving leaves the previous picture or
    none, never a truncated PNG beside a finished report.
    """
    path = Path(path)
    try:
        if title:
            fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        with staged_file(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **({"dpi": dpi} if dpi else {}))
    finally:
        pyplot().close(fig)
    return path
