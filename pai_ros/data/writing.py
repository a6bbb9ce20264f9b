"""Writing LeRobot datasets with LeRobot's own writer: what every writer here shares."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_hf_datasets() -> Iterator[None]:
    """Hide the progress bars of Hugging Face `datasets` that LeRobot's save_episode shows
    (a "Map: 100%" bar per episode): the writer's own bar says it all."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
