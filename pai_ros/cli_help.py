"""The ``pai`` commands' help layout: argparse's defaults, where they tell the reader something.

``ArgumentDefaultsHelpFormatter`` appends ``(default: X)`` to every option, which reads
``(default: None)`` on a required option and twice on one whose help already names its default.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
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

    _arguments: list[str] = []

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]  # argparse's signature
        if args is not None:
            args = list(args)
        self._arguments = list(sys.argv[1:]) if args is None else args  # for error()'s hint below
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:  # type: ignore[override]  # exits, as argparse's does
        self.exit(2, f"{self.prog}: error: {message}{self._dash_value_hint(message)}"
                     f"{self._misspelt_option_hint(message)} (`{self.prog} --help` lists the options)\n")

    def _misspelt_option_hint(self, message: str) -> str:
        """The options given that this command lacks, with the nearest one it has. argparse names them
        only once every required option is there, so a misspelt required one (``--episodes`` for
        ``--episode``) read as "the following arguments are required" and nothing more."""
        required = message.startswith("the following arguments are required")
        if not (required or message.startswith("unrecognized arguments")):
            return ""
        hints = []
        for word in self._arguments:
            if word == "--":
                break  # what follows is positional
            head = word.split("=", 1)[0]
            if not head.startswith("--") or self._option_named(word) is not None:
                continue
            # Compared without the "--" every option shares: with it, --verbose was "--overwrite?".
            names = [o[2:] for o in self._option_string_actions if o.startswith("--")]
            near = difflib.get_close_matches(head[2:], names, n=1)
            if near:
                hints.append(f"{head}: did you mean --{near[0]}?")
            elif required:
                hints.append(f"{head} is not an option of {self.prog}")
        return "; " + "; ".join(hints) if hints else ""

    def _dash_value_hint(self, message: str) -> str:
        """argparse reads a value such as ``-5GB`` as an option, and then says the option "expected one
        argument": say how such a value is given. Not when the next word is an option (the value was
        left out), nor for a list option (``--opt=-x`` gives it one value only)."""
        match = re.match(r"argument (\S+): expected one argument", message)
        if not match:
            return ""
        options = match.group(1).split("/")
        for given, value in zip(self._arguments, self._arguments[1:]):
            # "--word" is an option the user misspelt or this command lacks, not a value.
            if (self._option_named(given) in options and value.startswith("-") and not value.startswith("--")
                    and self._option_named(value) is None):
                return f"; {value} was read as an option: a value that starts with '-' is given as {given}={value}"
        return ""

    def _option_named(self, word: str) -> str | None:
        """The option string ``word`` names (itself, ``--opt=value``, or an abbreviation of a long option)."""
        head = word.split("=", 1)[0]
        if head in self._option_string_actions:
            return head
        matches = [o for o in self._option_string_actions if head.startswith("--") and o.startswith(head)]
        return matches[0] if len(matches) == 1 else None


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
