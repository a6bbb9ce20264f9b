"""The ``pai`` command line: one entry point, one subcommand per capability.

Parsing must stay fast (``pai --help`` imports no torch), so each capability registers its
subcommand from a light ``commands`` module and imports heavy code only inside its handler.
User errors (:class:`pai_ros.errors.UserError`) and OS errors on user paths become one line on
stderr and a non-zero exit; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pai_ros import __version__
from pai_ros.cli_help import OneLineErrorParser, quiet_closed_stdout
from pai_ros.errors import UserError

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _registrations() -> list[Register]:
    from pai_ros.attention import commands as attention_commands
    from pai_ros.bags import commands as bag_commands
    from pai_ros.demo import commands as demo_commands
    from pai_ros.features import commands as feature_commands
    from pai_ros.ros import commands as ros_commands
    from pai_ros.sae import commands as sae_commands
    from pai_ros.ui import commands as ui_commands

    def features_and_browser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        ui_commands.register(feature_commands.register(sub))

    return [attention_commands.register, bag_commands.register, ros_commands.register,
            demo_commands.register, sae_commands.register, features_and_browser]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(  # its subcommands' parsers are of its class too
        prog="pai",
        description=(
            "Interpretability tools for LeRobot ACT policies: attention heatmaps, sparse-autoencoder "
            "features and recordings, offline on datasets and bags. The live ROS 2 nodes are started "
            "with `ros2 run pai_ros ...` (see README.md)."
        ),
        epilog="Run `pai <command> --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"pai {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", title="commands")
    for register in _registrations():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(argv)
    except BrokenPipeError:  # `pai ... | head`: the reader stopped; what it did not read is not an error
        quiet_closed_stdout()
        return 141  # as a shell reports a command stopped by SIGPIPE


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command's own parser, which names it and knows its options (parse_args: "pai")
        _chosen_parser(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    # "pai sae train", not "pai sae": the step the user ran, as argparse's own errors name it.
    step = getattr(args, f"{args.command.replace('-', '_')}_command", None)
    name = f"pai {args.command}" + (f" {step}" if step else "")
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        raise  # the reader of our output stopped (| head): main's, not a file error
    except OSError as exc:  # permissions, full disks, missing files on user-given paths
        from pai_ros.staging import describe_os_error

        print(f"{name}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # What is left and what to do next: each command says it (set_defaults(on_interrupt=...)).
        note = getattr(args, "on_interrupt", None)
        print(f"{name}: interrupted" + (f"; {note}" if note else ""), file=sys.stderr)
        return 130


def _chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub)command ``args`` ran: ``pai sae train``'s, not ``pai``'s."""
    while True:
        # argparse keeps its subcommands' parsers only in these private attributes.
        chosen = next((parser_of for action in parser._actions
                       if isinstance(action, argparse._SubParsersAction)
                       and (parser_of := action.choices.get(getattr(args, action.dest, None) or "")) is not None),
                      None)
        if chosen is None:
            return parser
        parser = chosen


if __name__ == "__main__":
    sys.exit(main())
