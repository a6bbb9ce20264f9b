"""Pictures as files: matplotlib on its Agg backend, and a figure saved and closed in one call.

Every PNG the package writes (training curves, faithfulness curves, feature rankings, the demo's
report) gets matplotlib from :func:`pyplot`, so none of them needs a display (a robot's computer
over SSH, CI); :func:`save_figure` closes the figure even when saving fails, so none stays open
in a long-running process (``features effects`` saves through a staged file and closes its own).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the file-only Agg backend (imported on first use: matplotlib is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, title: str = "") -> Path:
    """``fig`` (with ``title`` above it, when given) laid out, written to ``path`` and closed."""
    try:
        if title:
            fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        pyplot().close(fig)
    return path
