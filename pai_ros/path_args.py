"""Path arguments of the ``pai`` commands (argparse ``type=``): ``~`` expanded, empty refused.

The shell expands ``~`` only at the start of a word: ``--output=~/x``, a quoted ``"~/x"`` and a
path from a script or a config reach the command as written. Taken literally, an output became a
folder named ``~`` inside the current directory (which a later ``rm -rf ~/...`` meant to clean it
up turns into a lost home directory), and an input was "not found".
"""

from __future__ import annotations

import argparse
from pathlib import Path


def input_path(text: str) -> Path:
    """A file or directory the command reads."""
    return _path(text, "name the input")


def output_path(text: str) -> Path:
    """A file or directory the command writes: an empty one would write into the current directory."""
    return _path(text, "name the output")


def _path(text: str, what_to_do: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"an empty path (an unset shell variable?); {what_to_do}")
    return Path(text).expanduser()
