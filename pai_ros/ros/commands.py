"""``pai demo``: the live graph on the demo assets (a ROS command: rclpy is imported in the handler only)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pai_ros.cli_help import HelpFormatter
from pai_ros.path_args import output_path
from pai_ros.require import require


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "demo",
        help="run replay -> policy -> recorder live on the demo assets, then convert and report",
        description=(
            "Start the replay, policy and recorder nodes in one process on the embedded demo assets (built "
            "first if needed), on real DDS topics: watch them with rqt_image_view on attention/front/heatmap "
            "from a ROS 2 install on the same ROS_DOMAIN_ID. Afterwards write into OUTPUT_DIR: the MCAP bag, the "
            "Parquet tables (pai bag2parquet), heatmaps_combined.mp4, heatmaps_contact_sheet.png, "
            "features/ (the demo SAE's features over 4 held-out episodes, ranked, with thumbnails: open it with "
            "`pai features ui OUTPUT_DIR/features`) and report.json (ticks, latency, skipped ticks, predicted vs "
            "recorded action error). With --closed-loop the policy drives the demo scene as a simulated robot "
            "(sim_node) instead of watching a replay: the report then holds every episode's outcome (reached "
            "and closed on the red block, missed, or timed out), the success rate and the final distances."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--output-dir", type=output_path, default=Path("pai_demo_output"), help="where everything goes")
    p.add_argument("--episode", type=int, default=0, help="held-out demo episode to replay")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after this many seconds (default: when the episode's replay ends)")
    p.add_argument("--rate-factor", type=float, default=1.0,
                   help="replay (and tick) at this fraction of the recorded rate, in (0, 1]: 0.25 lets a busy "
                        "CPU act on every frame instead of skipping ticks that come due while one computes")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier demo's output directory (never one of other files)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    loop = p.add_argument_group("closed loop")
    loop.add_argument("--closed-loop", action="store_true",
                      help="let the policy act on the simulated demo robot (sim_node) instead of a replay")
    loop.add_argument("--episodes", type=int, default=None, help="closed-loop episodes to run (default 3)")
    loop.add_argument("--seed", type=int, default=None,
                      help="closed-loop episode set (same seed, same episodes; default 0)")
    loop.add_argument("--rate-hz", type=float, default=None,
                      help="closed-loop steps per second (default: the dataset's 15; lower it if many steps hold)")
    p.set_defaults(handler=_run_demo, on_interrupt="the demo assets' finished stages are kept; an output directory "
                                               "already started needs --overwrite to run again")


def _run_demo(args: argparse.Namespace) -> int:
    from pai_ros.errors import UserError
    from pai_ros.staging import output_directory

    loop = _checked_options(args)  # in a fraction of a second: importing torch and ROS below takes seconds
    try:
        # The demo's modules import these only when they run: ask here (a plain `pip install .` has
        # neither rclpy nor the message package that colcon builds).
        import rclpy  # noqa: F401

        import pai_ros.msg  # noqa: F401
        import pai_ros.srv  # noqa: F401
        from pai_ros.ros.demo import run_demo
        from pai_ros.ros.sim_demo import run_closed_loop_demo
    except ImportError as exc:
        raise UserError(f"pai demo needs ROS 2 (rclpy and the built pai_ros overlay): {exc}; "
                        "run `make setup` and `source scripts/env.sh`") from None
    if loop is not None:
        episodes, seed, rate_hz = loop
        with output_directory(args.output_dir):
            res = run_closed_loop_demo(args.output_dir, episodes=episodes, seed=seed, rate_hz=rate_hz,
                                       overwrite=args.overwrite, progress=not args.quiet)
        return _print_closed_loop(res)
    with output_directory(args.output_dir):
        res = run_demo(args.output_dir, episode=args.episode, duration_s=args.duration, overwrite=args.overwrite,
                       progress=not args.quiet, rate_factor=args.rate_factor)
    r = res.report
    err = r["action_error"]
    print(f"pai demo: {r['frames_replayed']} frames replayed, {r['ticks']} ticks, {r['actions_published']} actions, "
          f"{r['skipped_ticks']} skipped, {r['rejected_ticks']} rejected; tick latency mean "
          f"{r['tick_latency_ms']['mean']:.1f} ms, p99 {r['tick_latency_ms']['p99']:.1f} ms; "
          f"action MAE vs recorded {err.get('mae', float('nan')):.4f} over {err['pairs']} frames")
    print(f"  bag:            {res.bag}  (ros2 bag play / Foxglove read it)")
    print(f"  parquet:        {res.parquet}")
    print(f"  heatmaps:       {res.combined_video}")
    print(f"  contact sheet:  {res.contact_sheet}")
    feats = r["features"]
    if feats.get("messages"):
        per_camera = ", ".join(f"{c} {n}" for c, n in feats.get("camera_over_own_threshold_frames", {}).items())
        cameras = (f", cameras disagree with the joints on {feats['cameras_disagree_frames']}"
                   + (f" (over their own threshold: {per_camera})" if per_camera else "")
                   if feats.get("camera_state_scored") else "")
        print(f"  features:       {feats['messages']} FeatureActivations from SAE {feats['sae_id']}, "
              f"{feats['ood_frames']} over the OOD threshold{cameras}; ranking in {res.parquet / 'analysis'}")
    if feats.get("dataset_recording"):
        print(f"  feature browser: pai features ui {feats['dataset_recording']}  (then open http://127.0.0.1:7860)")
    print(f"  report:         {res.output_dir / 'report.json'}")
    print("  live view on a ROS 2 install: run `pai demo` again and, on the same ROS_DOMAIN_ID, "
          "`ros2 run rqt_image_view rqt_image_view /attention/front/heatmap`")
    return 0


def _checked_options(args: argparse.Namespace) -> tuple[int, int, float] | None:
    """Refuse options that do not fit together or lie out of range, before minutes of building assets;
    with ``--closed-loop`` its (episodes, seed, rate_hz), defaults filled in."""
    from pai_ros.errors import UserError

    if args.closed_loop:
        episodes = 3 if args.episodes is None else args.episodes
        seed = 0 if args.seed is None else args.seed
        rate_hz = 15.0 if args.rate_hz is None else args.rate_hz
        require("--episodes", episodes, at_least=1)
        require("--rate-hz", rate_hz, at_least=0.1, at_most=1000)
        if args.duration is not None or args.episode != 0 or args.rate_factor != 1.0:
            raise UserError("--episode, --duration and --rate-factor are for the replay demo; with --closed-loop "
                            "use --episodes and --rate-hz")
        return episodes, seed, rate_hz
    if args.episodes is not None or args.seed is not None or args.rate_hz is not None:
        raise UserError("--episodes, --seed and --rate-hz are for --closed-loop; the replay demo takes --episode, "
                        "--duration and --rate-factor")
    require("--episode", args.episode, at_least=0, note=" (a held-out demo episode)")
    require("--rate-factor", args.rate_factor, above=0, at_most=1)
    if args.duration is not None:
        require("--duration", args.duration, above=0, note=" of seconds")
    return None


def _print_closed_loop(res) -> int:
    r = res.report
    loop = r["closed_loop"]
    held = ", ".join(f"{k}: {v}" for k, v in r["held_steps"].items()) or "none"
    print(f"pai demo --closed-loop: {loop['outcomes'].get('success', 0)}/{loop['episodes']} episodes succeeded "
          f"({loop['success_rate']:.0%}), mean final distance {loop['mean_final_distance']:.3f} table units; "
          f"{r['executed_steps']} steps acted, held steps: {held}; {r['policy_ticks']} policy ticks")
    print(f"  bag:            {res.bag}")
    print(f"  parquet:        {res.parquet}")
    print(f"  heatmaps:       {res.combined_video}")
    print(f"  contact sheet:  {res.contact_sheet}")
    print(f"  report:         {res.output_dir / 'report.json'}  (every episode's outcome and final distance)")
    return 0
