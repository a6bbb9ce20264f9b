"""``pai attention``: the seed's post-hoc dataset analysis, with raw numbers and correct videos."""

from __future__ import annotations

import argparse
from pathlib import Path

from pai_ros.cli_help import HelpFormatter
from pai_ros.data.source import add_dataset_arguments
from pai_ros.path_args import output_path
from pai_ros.policy.loading import add_policy_arguments
from pai_ros.require import require


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "attention",
        help="run an ACT policy over dataset episodes; write attention Parquet, actions and heatmap MP4s",
        description=(
            "Run a LeRobot ACT checkpoint over recorded episodes of a LeRobotDataset v3.0 and write, per "
            "episode, OUTPUT/episode_EEEEEE/: attention.parquet (raw per-cell attention per frame and camera, "
            "token-type shares), actions.parquet (predicted vs recorded actions), one H.264 MP4 per camera "
            "and a combined MP4 with the shares as bars. The policy runs exactly as on the robot (--mode); "
            "nothing is downloaded."
        ),
        formatter_class=HelpFormatter,
    )
    add_dataset_arguments(p)
    p.add_argument("--episode", type=int, nargs="+", required=True, metavar="E", help="episode index(es)")
    add_policy_arguments(p)
    p.add_argument("--output-dir", type=output_path, required=True, help="where episode_EEEEEE/ folders are written")
    p.add_argument("--method", default=None,
                   help="attribution method: cross_attention (the default: the raw attention the decoder pays, not "
                        "an explanation of the actions: it scores near random on deletion/insertion; for where the "
                        "policy looks, use input_gradient: README, 'Which method to trust'), rollout, relevance "
                        "(gradient-weighted relevance propagation, one backward pass per frame), relevance_cross (last "
                        "cross-attention x its gradient), input_gradient (gradient x (image - blurred image) per token "
                        "cell, one backward pass through the backbone), integrated_gradients (tens of backward passes "
                        "per frame: slow)")
    p.add_argument("--relevance-target", default=None,
                   help="relevance, relevance_cross and input_gradient: the output explained: chunk (the default: "
                        "every action of the chunk: where the arm is going; what bench_faithfulness measures, as "
                        "policy_node's default), first (the first action, the one decided now), dim:K (action "
                        "dimension K of the first action); --queries does not apply to them")
    p.add_argument("--queries", default=None,
                   help="cross_attention, rollout and integrated_gradients: decoder queries to explain: mean (the "
                        "default), executed (the action sent this tick), K, or A:B")
    p.add_argument("--mode", default=None, choices=("auto", "ensemble", "queue", "replan", "chunk"),
                   help="how actions are executed (auto, the default: as the checkpoint's config says)")
    p.add_argument("--normalization", default=None, choices=("raw", "frame", "episode", "percentile"),
                   help="heatmap colour scale in the videos (the Parquet always keeps raw values): episode (one "
                        "scale for the whole episode, all cameras: brightness compares frames, and a frame whose map "
                        "is weak next to the episode's strongest looks empty), frame (each frame's cameras scaled "
                        "to their own top: where the map peaks in every frame, even a weak one), percentile (0 to "
                        "each frame's 99th percentile: a few extreme cells do not wash out the rest), raw (0 to the "
                        "episode's top); default: episode")
    p.add_argument("--colormap", default=None, choices=("viridis", "magma", "inferno", "turbo", "jet"),
                   help="heatmap colours (default: viridis)")
    p.add_argument("--alpha", type=float, default=None, help="overlay opacity at full attention (default: 0.6)")
    p.add_argument("--no-videos", action="store_true", help="only write the Parquet tables")
    p.add_argument("--ig-steps", type=int, default=None, help="integrated gradients: path steps (default: 20)")
    p.add_argument("--ig-baseline", default=None, choices=("black", "blur", "mean"),
                   help="integrated gradients: baseline image (default: blur)")
    p.add_argument("--faithfulness", action="store_true",
                   help="instead of maps: measure how faithful each method is by deletion/insertion (cells blurred "
                        "or restored in the method's order, the change of the predicted actions measured) and their "
                        "symmetric gain (deletion + insertion AUC - 1: most important first against least important "
                        "first, so a blurred patchwork the policy reacts to by itself cancels; random ~0); writes "
                        "OUTPUT/faithfulness/faithfulness.json and faithfulness.png")
    p.add_argument("--faithfulness-methods", nargs="+", default=None, metavar="M",
                   help="methods to compare (default: cross_attention rollout relevance relevance_cross "
                        "input_gradient integrated_gradients random)")
    p.add_argument("--faithfulness-frames", type=int, default=None,
                   help="frames per episode, evenly spaced (default: 8)")
    p.add_argument("--faithfulness-steps", type=int, default=None,
                   help="points on each curve after 0, at most the cells of a camera (default: 10)")
    p.add_argument("--faithfulness-output", default=None, choices=("chunk", "first"),
                   help="the predicted output measured and explained: the whole chunk or its first action "
                        "(default: chunk)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_run, on_interrupt="what was finished is kept, nothing half-written")


# What an option left out means, and which methods each method-specific option applies to: an option
# given where it does not apply is refused, not silently dropped (the run would explain something else).
DEFAULTS = {"method": "cross_attention", "queries": "mean", "relevance_target": "chunk", "ig_steps": 20,
            "ig_baseline": "blur", "faithfulness_frames": 8, "faithfulness_steps": 10, "faithfulness_output": "chunk",
            "mode": "auto", "normalization": "episode", "colormap": "viridis", "alpha": 0.6}
QUERY_METHODS = ("cross_attention", "rollout", "integrated_gradients")
TARGET_METHODS = ("relevance", "relevance_cross", "input_gradient")


def check_options_apply(args: argparse.Namespace) -> None:
    """One line for an option that the run would ignore; then fill in the defaults of those left out."""
    from pai_ros.errors import UserError

    given = {name for name in DEFAULTS if getattr(args, name) is not None}

    def refuse(names: tuple[str, ...], why: str) -> None:
        wrong = [f"--{n.replace('_', '-')}" for n in names if n in given]
        if wrong:
            raise UserError(f"{' and '.join(wrong)} {'does' if len(wrong) == 1 else 'do'} not apply: {why}")

    if args.faithfulness:
        refuse(("method", "queries", "relevance_target"), "--faithfulness compares --faithfulness-methods, each "
               "explaining --faithfulness-output")
        refuse(("mode",), "--faithfulness measures fresh forward passes of each frame (replan)")
        refuse(("normalization", "colormap", "alpha"), "--faithfulness draws curves, not heatmaps")
        if args.no_videos:
            raise UserError("--no-videos does not apply: --faithfulness writes no videos")
        if "integrated_gradients" not in (args.faithfulness_methods or ("integrated_gradients",)):
            refuse(("ig_steps", "ig_baseline"), "integrated_gradients is not among --faithfulness-methods")
    else:
        refuse(("faithfulness_frames", "faithfulness_steps", "faithfulness_output"), "for --faithfulness only")
        if args.faithfulness_methods is not None:
            raise UserError("--faithfulness-methods does not apply: for --faithfulness only")
        method = args.method or DEFAULTS["method"]
        if method not in QUERY_METHODS:
            refuse(("queries",), f"{method} explains --relevance-target (--queries is for {', '.join(QUERY_METHODS)})")
        if method not in TARGET_METHODS:
            refuse(("relevance_target",), f"{method} explains --queries (--relevance-target is for "
                   f"{', '.join(TARGET_METHODS)})")
        if method != "integrated_gradients":
            refuse(("ig_steps", "ig_baseline"), f"for --method integrated_gradients only (the method is {method})")
    for name, default in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)


def _run(args: argparse.Namespace) -> int:
    from pai_ros.attention.selection import GRADIENT_LIVE_METHODS, METHODS, QuerySelection, RelevanceTarget
    from pai_ros.errors import UserError

    # What the options alone can say is said first, in a fraction of a second: torch takes seconds to import.
    if args.method is not None and args.method not in METHODS:
        raise UserError(f"unknown method '{args.method}' (choose from {', '.join(METHODS)})")
    check_options_apply(args)
    require("--ig-steps", args.ig_steps, at_least=1)
    try:
        selection = QuerySelection.parse(args.queries)
        target = RelevanceTarget.parse(args.relevance_target)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    require("--alpha", args.alpha, at_least=0, at_most=1)

    from pai_ros.attention.integrated_gradients import IGConfig
    from pai_ros.attention.offline import RenderOptions, analyse_episode, check_output_dir
    from pai_ros.data.episodes import check_episodes, read_info
    from pai_ros.data.source import resolve_dataset_root
    from pai_ros.policy.capture import CaptureConfig
    from pai_ros.policy.loading import load_act_policy, resolve_checkpoint_dir
    from pai_ros.policy.over_dataset import use_camera_rename
    from pai_ros.policy.runner import PolicyRunner
    from pai_ros.staging import check_apart, output_directory

    try:
        ig = IGConfig(steps=args.ig_steps, baseline=args.ig_baseline)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    root = resolve_dataset_root(args.dataset_root, args.dataset_repo_id)
    check_apart(args.output_dir, {"dataset": root, "checkpoint": resolve_checkpoint_dir(args.policy_path)})
    info = read_info(root)
    check_episodes(info, args.episode, root)
    args.episode = list(dict.fromkeys(args.episode))  # given twice, written once
    if args.faithfulness:
        return _faithfulness(args, root, info, ig)
    # The output is checked before the policy loads (seconds) and the episodes run (minutes).
    queries = target.label() if args.method in GRADIENT_LIVE_METHODS else selection.label()
    check_output_dir(args.output_dir, policy_path=resolve_checkpoint_dir(args.policy_path), dataset_root=root,
                     method=args.method, queries=queries)
    results = []
    with output_directory(args.output_dir):
        loaded = load_act_policy(args.policy_path, args.device)
        capture = CaptureConfig(encoder_self_attention=args.method == "rollout", encoder_output=False)
        runner = PolicyRunner(loaded, args.mode, capture)
        camera_rename = use_camera_rename(runner, args.rename_map, info)
        check_output_dir(args.output_dir, policy_path=resolve_checkpoint_dir(args.policy_path), dataset_root=root,
                         method=args.method, queries=queries, camera_rename=camera_rename)  # again, with the map
        selection.check(runner.chunk_size, "--queries")
        render = RenderOptions(normalization=args.normalization, colormap=args.colormap, alpha=args.alpha,
                               videos=not args.no_videos)
        for episode in args.episode:
            results.append(analyse_episode(runner, root, episode, args.output_dir, method=args.method,
                                           selection=selection, ig=ig, render=render, progress=not args.quiet,
                                           relevance_target=target))
    frames = sum(r.frames for r in results)
    scored = [r for r in results if r.mae == r.mae]  # NaN: the episode has no recorded action to compare with
    mae = sum(r.mae * r.frames for r in scored) / sum(r.frames for r in scored) if scored else None
    seconds = sum(r.seconds for r in results)
    error = ("no recorded actions to compare with (none, or of another width than the policy's)" if mae is None
             else f"action MAE {mae:.4f}")
    print(f"pai attention: {len(results)} episode(s), {frames} frames, method {args.method}, mode {runner.mode}: "
          f"{error}; wrote {', '.join(str(r.directory) for r in results)} in {seconds:.1f} s")
    return 0


def _faithfulness(args: argparse.Namespace, root: Path, info: dict, ig) -> int:
    from pai_ros.attention.faithfulness import (
        FAITHFULNESS_METHODS,
        FaithfulnessConfig,
        check_report_dir,
        episode_observations,
        faithfulness,
        write_report,
    )
    from pai_ros.errors import UserError
    from pai_ros.policy.capture import CaptureConfig
    from pai_ros.policy.loading import load_act_policy, resolve_checkpoint_dir
    from pai_ros.policy.over_dataset import check_dataset_fits, use_camera_rename
    from pai_ros.policy.runner import PolicyRunner
    from pai_ros.staging import output_directory

    methods = tuple(args.faithfulness_methods or FAITHFULNESS_METHODS)
    unknown = [m for m in methods if m not in FAITHFULNESS_METHODS]
    if unknown:
        raise UserError(f"unknown method(s) {', '.join(unknown)} (choose from {', '.join(FAITHFULNESS_METHODS)})")
    require("--faithfulness-frames", args.faithfulness_frames, at_least=1)
    require("--faithfulness-steps", args.faithfulness_steps, at_least=2, note=" (a curve needs two points)")
    try:
        config = FaithfulnessConfig(steps=args.faithfulness_steps, output=args.faithfulness_output)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    # Sorted: the same episodes or methods given in another order are the same report.
    settings = {"policy_path": str(resolve_checkpoint_dir(args.policy_path).resolve()),
                "dataset_root": str(root.resolve()), "episodes": sorted(args.episode),
                "frames_per_episode": args.faithfulness_frames, "methods": sorted(methods)}
    if "integrated_gradients" in methods:
        settings.update(ig_steps=ig.steps, ig_baseline=ig.baseline)
    report_dir = args.output_dir / "faithfulness"
    check_report_dir(report_dir, {**settings, "output": config.output, "steps": config.steps})
    with output_directory(args.output_dir):
        # Maps of fresh forward passes, one per frame: replan, whatever the checkpoint executes with.
        runner = PolicyRunner(load_act_policy(args.policy_path, args.device), "replan",
                              CaptureConfig(encoder_self_attention=True, encoder_output=False))
        settings["camera_rename"] = use_camera_rename(runner, args.rename_map, info)
        check_report_dir(report_dir, {**settings, "output": config.output, "steps": config.steps})  # with the map
        check_dataset_fits(runner, info, root)
        observations = [o for ep in args.episode
                        for o in episode_observations(root, ep, args.faithfulness_frames, runner.camera_rename)]
        report = faithfulness(runner, observations, methods, config, ig, progress=not args.quiet)
        runner.close()
        title = f"{args.policy_path} on {root.name}, episodes {args.episode}, output {config.output}"
        summary = write_report(report, report_dir, title, settings)
    for cam, per in summary["cameras"].items():
        parts = [f"{m} {s['deletion_auc']:.3f}/{s['insertion_auc']:.3f}/{s['symmetric_gain_median']:.3f}"
                 for m, s in per.items() if s.get("frames")]
        print(f"pai attention --faithfulness: {cam}: deletion AUC / insertion AUC (means over frames) / symmetric "
              f"gain (median over frames; random ~0; higher = more faithful): "
              f"{', '.join(parts) or 'no frame where the camera changes the prediction'}")
    print(f"wrote {report_dir} ({summary['frames']} frame{'' if summary['frames'] == 1 else 's'})")
    return 0
