"""The ``pai`` commands' help layout: argparse's defaults, where they tell the reader something.

``ArgumentDefaultsHelpFormatter`` appends ``(default: X)`` to every option, which reads
``(default: None)`` on a required option and twice on one whose help already names its default.
"""

from __future__ import annotations

import argparse
import os
import sys


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown only for options that have a real one and do not state it themselves."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        # Identity, not ==: a default of 0 equals False, and `--episode` / `--seed` lost their "(default: 0)".
        no_default = action.default is None or action.default is argparse.SUPPRESS or action.default is False
        if no_default or action.required or action.nargs == 0 or "default" in text.lower():
            return action.help
        return super()._get_help_string(action)


class OneLineErrorParser(argparse.ArgumentParser):
    """A usage error in one line, as every other user error: argparse prints the whole usage block
    (a dozen lines for ``pai attention``) above the one line that says what is wrong."""

    def error(self, message: str) -> None:  # type: ignore[override]  # exits, as argparse's does
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def print_help(text: str) -> None:
    """Print help text; a reader that stops early (``--help | head``) is not an error, as for
    argparse's help (which ignores a failed write): no traceback, exit status 0."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        quiet_closed_stdout()


def quiet_closed_stdout() -> None:
    """After a BrokenPipeError on stdout: send whatever is left to /dev/null, or Python's own flush
    at exit raises it again, as a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
