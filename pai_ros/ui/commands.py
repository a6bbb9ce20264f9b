"""``pai features ui``: the feature browser, registered under ``pai features``."""

from __future__ import annotations

import argparse
import sys

from pai_ros.cli_help import HelpFormatter
from pai_ros.path_args import input_path

Sub = "argparse._SubParsersAction[argparse.ArgumentParser]"


def register(inner: Sub) -> None:
    """Add ``ui`` to the ``pai features`` steps (``inner`` is what features' register returns)."""
    _register_ui(inner)


def port(text: str) -> int:
    """A TCP port: argparse turns the ValueError into its one-line usage error."""
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(text)
    return port


def _register_ui(inner: Sub) -> None:
    p = inner.add_parser(
        "ui", help="open the feature browser (Gradio) on an analysed results directory",
        formatter_class=HelpFormatter,
        description="Serve a browser UI over RESULTS (a `pai features record` or `pai bag2parquet` directory on "
                    "which `pai features analyse` has run): the ranked feature list (named features first), each "
                    "feature's top frames with its heatmap per camera, its activation over an episode, its "
                    "statistics, and name/description fields saved to RESULTS/names.json. Binds 127.0.0.1 unless "
                    "--host says otherwise.")
    p.add_argument("results", type=input_path, help="results directory with analysis/analysis.json")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=port, default=7860, help="TCP port, 0-65535 (0: pick a free one)")
    p.set_defaults(handler=_ui)


def _ui(args: argparse.Namespace) -> int:
    from pai_ros.errors import UserError
    from pai_ros.features.results import ResultsDir

    try:
        from pai_ros.ui.app import serve
    except ModuleNotFoundError as exc:
        if exc.name != "gradio":  # only the optional install is the user's to fix; anything else is ours
            raise
        raise UserError('the feature browser needs Gradio, an optional install: pip install ".[ui]" in the '
                        "pai_ros checkout (make setup installs it)") from None

    results = ResultsDir(args.results)
    results.analysis()  # refuse early, with one line, when there is nothing to show
    for note in (results.stale_analysis(), results.unrecorded_episodes()):
        if note:
            print(f"note: {note}", file=sys.stderr)
    serve(results, host=args.host, port=args.port)
    return 0
