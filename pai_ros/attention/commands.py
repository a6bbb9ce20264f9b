"""``pai attention``: the seed's post-hoc dataset analysis, with raw numbers and correct videos."""

from __future__ import annotations

import argparse
from pathlib import Path

from pai_ros.data.source import add_dataset_arguments


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
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_dataset_arguments(p)
    p.add_argument("--episode", type=int, nargs="+", required=True, metavar="E", help="episode index(es)")
    p.add_argument("--policy-path", type=Path, required=True,
                   help="ACT checkpoint dir (pretrained_model), a lerobot-train output dir, or a hub id (ORG/NAME) "
                        "already in the local Hugging Face cache")
    p.add_argument("--output-dir", type=Path, required=True, help="where episode_EEEEEE/ folders are written")
    p.add_argument("--method", default="cross_attention",
                   help="attribution method: cross_attention, rollout, relevance (gradient-weighted relevance "
                        "propagation, one backward pass per frame), relevance_cross (last cross-attention x its "
                        "gradient), integrated_gradients (tens of backward passes per frame: slow)")
    p.add_argument("--relevance-target", default="first",
                   help="relevance methods: the output explained: first (the first action of the chunk, the one "
                        "decided now), chunk (every action of the chunk), dim:K (action dimension K of the first "
                        "action); --queries does not apply to them")
    p.add_argument("--queries", default="mean",
                   help="decoder queries to explain: mean, executed (the action sent this tick), K, or A:B")
    p.add_argument("--mode", default="auto", choices=("auto", "ensemble", "queue", "replan", "chunk"),
                   help="how actions are executed (auto: as the checkpoint's config says)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--normalization", default="episode", choices=("raw", "frame", "episode", "percentile"),
                   help="heatmap colour scale in the videos (the Parquet always keeps raw values)")
    p.add_argument("--colormap", default="viridis", choices=("viridis", "magma", "inferno", "turbo", "jet"))
    p.add_argument("--alpha", type=float, default=0.6, help="overlay opacity at full attention")
    p.add_argument("--no-videos", action="store_true", help="only write the Parquet tables")
    p.add_argument("--ig-steps", type=int, default=20, help="integrated gradients: path steps")
    p.add_argument("--ig-baseline", default="blur", choices=("black", "blur", "mean"),
                   help="integrated gradients: baseline image")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from pai_ros.attention.attribution import METHODS, QuerySelection
    from pai_ros.attention.integrated_gradients import IGConfig
    from pai_ros.attention.offline import RenderOptions, analyse_episode
    from pai_ros.attention.relevance import RelevanceTarget
    from pai_ros.data.episodes import check_episodes, read_info
    from pai_ros.data.source import resolve_dataset_root
    from pai_ros.errors import UserError
    from pai_ros.policy.capture import CaptureConfig
    from pai_ros.policy.loading import load_act_policy
    from pai_ros.policy.runner import PolicyRunner

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
    info = read_info(root)
    check_episodes(info, args.episode, root)
    loaded = load_act_policy(args.policy_path, args.device)
    capture = CaptureConfig(encoder_self_attention=args.method == "rollout", encoder_output=False)
    runner = PolicyRunner(loaded, args.mode, capture)
    try:
        args.output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output directory {args.output_dir}: {exc.strerror}") from None
    render = RenderOptions(normalization=args.normalization, colormap=args.colormap, alpha=args.alpha,
                           videos=not args.no_videos)
    results = []
    for episode in args.episode:
        results.append(analyse_episode(runner, root, episode, args.output_dir, method=args.method,
                                       selection=selection, ig=ig, render=render, progress=not args.quiet,
                                       relevance_target=target))
    frames = sum(r.frames for r in results)
    mae = sum(r.mae * r.frames for r in results) / frames
    seconds = sum(r.seconds for r in results)
    print(f"pai attention: {len(results)} episode(s), {frames} frames, method {args.method}, mode {runner.mode}: "
          f"action MAE {mae:.4f}; wrote {', '.join(str(r.directory) for r in results)} in {seconds:.1f} s")
    return 0
