"""``pai demo-assets``: build (or find) the embedded demo dataset, trained policy and its closed-loop score."""

from __future__ import annotations

import argparse
import contextlib
import sys

from pai_ros.cli_help import HelpFormatter
from pai_ros.path_args import output_path


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "demo-assets",
        help="build the synthetic demo dataset and train the demo ACT policy (cached)",
        description=(
            "Generate the synthetic reaching dataset (LeRobotDataset v3.0 with MP4 videos, two cameras, "
            "target pixel positions as ground truth) and train a small ACT on it with LeRobot's own "
            "training entry point, then let it drive the simulated demo robot over a fixed set of 50 episodes "
            "(its closed-loop success rate). Results are cached under the cache directory, keyed by the generator "
            "version and settings; a second run returns at once. Nothing is downloaded."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--cache-dir", type=output_path, default=None,
                   help="where to keep the assets (default: $PAI_CACHE_DIR or ~/.cache/pai_ros)")
    p.add_argument("--rebuild", action="store_true", help="discard cached assets and build them again")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the demo setting)")
    p.add_argument("--no-train", action="store_true", help="only generate the datasets")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--print-dir", action="store_true",
                   help="print only the assets' directory (for scripts: P=$(pai demo-assets --print-dir)/policy)")
    p.set_defaults(handler=_run, on_interrupt="the stages finished are kept: run it again to go on from there "
                                          "(a training cut short starts over)")


def _run(args: argparse.Namespace) -> int:
    from pai_ros.demo.assets import DemoSettings, ensure_demo_assets

    settings = DemoSettings()
    if args.steps is not None:
        settings = settings.with_steps(args.steps)
    # With --print-dir stdout is the directory and nothing else (scripts read P=$(...)/policy):
    # whatever building prints there (lerobot-train's and the evaluation's lines) goes to stderr.
    # Python-level writes only: native code writing to file descriptor 1 would not be caught (none does now).
    with contextlib.redirect_stdout(sys.stderr) if args.print_dir else contextlib.nullcontext():
        assets = ensure_demo_assets(cache_dir=args.cache_dir, settings=settings, rebuild=args.rebuild,
                                    train=not args.no_train, progress=not (args.print_dir or args.quiet))
        if assets.has_policy():
            from pai_ros.demo.closed_loop import ensure_closed_loop

            ensure_closed_loop(assets, rebuild=args.rebuild, progress=not (args.print_dir or args.quiet))
    print(assets.root if args.print_dir else assets.describe())
    return 0
