"""Path arguments of the ``pai`` commands (argparse ``type=``): ``~`` expanded, empty refused.

The shell expands ``~`` only at the start of a word: ``--output=~/x``, a quoted ``"~/x"`` and a
path from a script or a config reach the command as written. Taken literally, an output became a
folder named ``~`` inside the current directory (which a later ``rm -rf ~/...`` meant to clean it
up turns into a lost home directory), and an input was "not found".
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pai_ros.errors import UserError


def input_path(text: str) -> Path:
    """A file or directory the command reads."""
    return _path(text, "name the input")


def output_path(text: str) -> Path:
    """A file or directory the command writes: an empty one would write into the current directory."""
    return _path(text, "name the output")


def expand_home(path: str | Path) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded, for paths no shell expanded (options
    written ``--x=~/y``, node parameters, config files).

    pathlib raises RuntimeError for ``~someone`` who has no account here (a path copied from
    another machine) and for ``~`` without a home directory: that is the user's path, so it is
    a :class:`UserError` naming it."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        home = str(path).split("/", 1)[0]
        raise UserError(f"{path}: {home} is no home directory on this machine (no such user, or HOME is "
                        "unset); give the path without ~") from None


def _path(text: str, what_to_do: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"an empty path (an unset shell variable?); {what_to_do}")
    try:
        return expand_home(text)
    except UserError as exc:  # argparse turns ArgumentTypeError into its usage line
        raise argparse.ArgumentTypeError(str(exc)) from None
