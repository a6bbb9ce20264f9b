"""``pai attention``: the seed's post-hoc dataset analysis, with raw numbers and correct videos."""

from __future__ import annotations

import argparse
from pathlib import Path

from pai_ros.cli_help import HelpFormatter
from pai_ros.data.source import add_dataset_arguments
from pai_ros.policy.loading import add_policy_arguments


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
    p.add_argument("--output-dir", type=Path, required=True, help="where episode_EEEEEE/ folders are written")
    p.add_argument("--method", default="cross_attention",
                   help="attribution method: cross_attention, rollout, relevance (gradient-weighted relevance "
                        "propagation, one backward pass per frame), relevance_cross (last cross-attention x its "
                        "gradient), input_gradient (gradient x (image - blurred image) per token cell, one backward pass "
                        "through the backbone), integrated_gradients (tens of backward passes per frame: slow)")
    p.add_argument("--relevance-target", default="chunk",
                   help="relevance methods and input_gradient: the output explained: chunk (every action of the chunk: "
                        "where the arm is going; what bench_faithfulness measures, as policy_node's default), first "
                        "(the first action, the one decided now), dim:K (action dimension K of the first action); "
                        "--queries does not apply to them")
    p.add_argument("--queries", default="mean",
                   help="decoder queries to explain: mean, executed (the action sent this tick), K, or A:B")
    p.add_argument("--mode", default="auto", choices=("auto", "ensemble", "queue", "replan", "chunk"),
                   help="how actions are executed (auto: as the checkpoint's config says)")
    p.add_argument("--normalization", default="episode", choices=("raw", "frame", "episode", "percentile"),
                   help="heatmap colour scale in the videos (the Parquet always keeps raw values)")
    p.add_argument("--colormap", default="viridis", choices=("viridis", "magma", "inferno", "turbo", "jet"))
    p.add_argument("--alpha", type=float, default=0.6, help="overlay opacity at full attention")
    p.add_argument("--no-videos", action="store_true", help="only write the Parquet tables")
    p.add_argument("--ig-steps", type=int, default=20, help="integrated gradients: path steps")
    p.add_argument("--ig-baseline", default="blur", choices=("black", "blur", "mean"),
                   help="integrated gradients: baseline image")
    p.add_argument("--faithfulness", action="store_true",
                   help="instead of maps: measure how faithful each method is by deletion/insertion (cells blurred "
                        "or restored in the method's order, the change of the predicted actions measured) and their "
                        "symmetric gain (deletion + insertion AUC - 1: most important first against least important "
                        "first, so a blurred patchwork the policy reacts to by itself cancels; random ~0); writes "
                        "OUTPUT/faithfulness/faithfulness.json and faithfulness.png")
    p.add_argument("--faithfulness-methods", nargs="+", default=None, metavar="M",
                   help="methods to compare (default: cross_attention rollout relevance relevance_cross "
                        "input_gradient integrated_gradients random)")
    p.add_argument("--faithfulness-frames", type=int, default=8, help="frames per episode, evenly spaced")
    p.add_argument("--faithfulness-steps", type=int, default=10, help="points on each curve")
    p.add_argument("--faithfulness-output", default="chunk", choices=("chunk", "first"),
                   help="the predicted output measured and explained: the whole chunk or its first action")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from pai_ros.attention.attribution import GRADIENT_LIVE_METHODS, METHODS, QuerySelection
    from pai_ros.attention.integrated_gradients import IGConfig
    from pai_ros.attention.offline import RenderOptions, analyse_episode, check_output_dir
    from pai_ros.attention.relevance import RelevanceTarget
    from pai_ros.data.episodes import check_episodes, read_info
    from pai_ros.data.source import resolve_dataset_root
    from pai_ros.errors import UserError
    from pai_ros.policy.capture import CaptureConfig
    from pai_ros.policy.loading import load_act_policy, resolve_checkpoint_dir
    from pai_ros.policy.runner import PolicyRunner
    from pai_ros.staging import check_apart, output_directory

    if args.method not in METHODS:
        raise UserError(f"unknown method '{args.method}' (choose from {', '.join(METHODS)})")
    try:
        selection = QuerySelection.parse(args.queries)
        ig = IGConfig(steps=args.ig_steps, baseline=args.ig_baseline)
        target = RelevanceTarget.parse(args.relevance_target)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if not 0.0 <= args.alpha <= 1.0:
        raise UserError(f"--alpha must be in [0, 1], got {args.alpha}")
    root = resolve_dataset_root(args.dataset_root, args.dataset_repo_id)
    check_apart(args.output_dir, {"dataset": root, "checkpoint": resolve_checkpoint_dir(args.policy_path)})
    info = read_info(root)
    check_episodes(info, args.episode, root)
    args.episode = list(dict.fromkeys(args.episode))  # given twice, written once
    if args.faithfulness:
        return _faithfulness(args, root, ig)
    loaded = load_act_policy(args.policy_path, args.device)
    capture = CaptureConfig(encoder_self_attention=args.method == "rollout", encoder_output=False)
    runner = PolicyRunner(loaded, args.mode, capture)
    selection.check(runner.chunk_size, "--queries")
    render = RenderOptions(normalization=args.normalization, colormap=args.colormap, alpha=args.alpha,
                           videos=not args.no_videos)
    check_output_dir(args.output_dir, policy_path=loaded.path, dataset_root=root, method=args.method,
                     queries=target.label() if args.method in GRADIENT_LIVE_METHODS else selection.label())
    results = []
    with output_directory(args.output_dir):
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


def _faithfulness(args: argparse.Namespace, root: Path, ig) -> int:
    from pai_ros.attention.faithfulness import (
        FAITHFULNESS_METHODS,
        FaithfulnessConfig,
        episode_observations,
        faithfulness,
        write_report,
    )
    from pai_ros.errors import UserError
    from pai_ros.policy.capture import CaptureConfig
    from pai_ros.policy.loading import load_act_policy
    from pai_ros.policy.runner import PolicyRunner

    methods = tuple(args.faithfulness_methods or FAITHFULNESS_METHODS)
    unknown = [m for m in methods if m not in FAITHFULNESS_METHODS]
    if unknown:
        raise UserError(f"unknown method(s) {', '.join(unknown)} (choose from {', '.join(FAITHFULNESS_METHODS)})")
    if args.faithfulness_frames < 1:
        raise UserError(f"--faithfulness-frames must be at least 1, got {args.faithfulness_frames}")
    try:
        config = FaithfulnessConfig(steps=args.faithfulness_steps, output=args.faithfulness_output)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    # Maps of fresh forward passes, one per frame: replan, whatever the checkpoint executes with.
    runner = PolicyRunner(load_act_policy(args.policy_path, args.device), "replan",
                          CaptureConfig(encoder_self_attention=True, encoder_output=False))
    observations = [o for ep in args.episode for o in episode_observations(root, ep, args.faithfulness_frames)]
    report = faithfulness(runner, observations, methods, config, ig, progress=not args.quiet)
    runner.close()
    title = f"{args.policy_path} on {root.name}, episodes {args.episode}, output {config.output}"
    summary = write_report(report, args.output_dir / "faithfulness", title)
    for cam, per in summary["cameras"].items():
        parts = [f"{m} {s['deletion_auc']:.3f}/{s['insertion_auc']:.3f}/{s['symmetric_gain_median']:.3f}"
                 for m, s in per.items() if s.get("frames")]
        print(f"pai attention --faithfulness: {cam}: deletion AUC / insertion AUC (means over frames) / symmetric "
              f"gain (median over frames; random ~0; higher = more faithful): "
              f"{', '.join(parts) or 'no frame where the camera changes the prediction'}")
    print(f"wrote {args.output_dir / 'faithfulness'} ({summary['frames']} frames)")
    return 0
