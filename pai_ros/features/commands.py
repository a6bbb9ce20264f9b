"""``pai features record | analyse``: SAE features over datasets and their ranking.

``pai features ui`` (the browser) registers itself from :mod:`pai_ros.ui.commands` into the
parser this module returns, so that features/ never imports the ui/ layer above it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pai_ros.cli_help import HelpFormatter
from pai_ros.data.source import add_dataset_arguments
from pai_ros.path_args import input_path, output_path
from pai_ros.policy.loading import add_device_argument, add_policy_arguments

Sub = "argparse._SubParsersAction[argparse.ArgumentParser]"


def register(sub: Sub) -> Sub:
    p = sub.add_parser("features", help="record SAE features over episodes, rank them, browse and name them",
                       description="Sparse-autoencoder features of an ACT policy: record them per frame, analyse "
                                   "(rank, top frames, heatmap thumbnails) and look at and name them in a browser.",
                       formatter_class=HelpFormatter)
    inner = p.add_subparsers(dest="features_command", metavar="<step>", title="steps", required=True)
    _register_record(inner)
    _register_analyse(inner)
    _register_effects(inner)
    return inner


def _register_record(inner: Sub) -> None:
    p = inner.add_parser(
        "record", help="run policy + SAE over dataset episodes into features.parquet per episode",
        formatter_class=HelpFormatter,
        description="Run the policy and its SAE over dataset episodes, exactly as the live node would, and write "
                    "OUTPUT/episode_EEEEEE/features.parquet (the same schema `pai bag2parquet` writes for the live "
                    "features topic, one row per frame) and feature_tokens.parquet (token-level codes for spatial "
                    "heatmaps), plus OUTPUT/record.json naming the policy, SAE and dataset.")
    add_policy_arguments(p)
    p.add_argument("--sae", type=input_path, required=True, help="SAE directory (from `pai sae train`)")
    add_dataset_arguments(p)
    p.add_argument("--episode", type=int, nargs="+", metavar="E", help="episode index(es); default: all")
    p.add_argument("--output-dir", type=output_path, required=True, help="results directory (created or extended)")
    p.add_argument("--top-n", type=int, help="keep only the N strongest features per frame (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_record, on_interrupt="the episodes finished are kept; `pai features analyse` names the "
                                             "ones missing")


def _register_analyse(inner: Sub) -> None:
    p = inner.add_parser(
        "analyse", aliases=["analyze"], help="rank features, find their top frames, draw heatmap thumbnails",
        formatter_class=HelpFormatter,
        description="Stream over RESULTS' features tables (from `pai features record` or `pai bag2parquet`): "
                    "per-feature statistics, a ranking, the top frames globally and per episode (adjacent frames "
                    "de-duplicated), and for recordings a thumbnail per top frame and camera with the feature's "
                    "heatmap. Writes RESULTS/analysis/analysis.json, ranking.png and thumbs/.")
    p.add_argument("results", type=input_path, help="results directory")
    p.add_argument("--rank-by", default="variance", choices=("variance", "max", "firing_rate", "mean"),
                   help="the order of the features: variance over frames (what changes with the scene), max "
                        "(the strongest single activation), firing_rate (how often it is on), mean")
    p.add_argument("--top-features", type=int, default=32, help="how many ranked features to describe")
    p.add_argument("--top-frames", type=int, default=8, help="top frames per feature, over all episodes")
    p.add_argument("--per-episode", type=int, default=3, help="top frames per feature and episode")
    p.add_argument("--dedup-window", type=int, default=2,
                   help="skip frames within N frames of a stronger chosen frame of the same episode")
    p.add_argument("--no-thumbnails", action="store_true", help="no images (faster)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_analyse)


def _record(args: argparse.Namespace) -> int:
    from pai_ros.data.episodes import read_info, select_episodes
    from pai_ros.data.source import resolve_dataset_root
    from pai_ros.features.record import record_features
    from pai_ros.policy.loading import resolve_checkpoint_dir
    from pai_ros.policy.over_dataset import use_camera_rename
    from pai_ros.policy.runner import activations_runner
    from pai_ros.sae.distributed import refuse_torchrun
    from pai_ros.sae.model import check_dimensions, load_sae
    from pai_ros.sae.ood import load_calibration
    from pai_ros.staging import check_apart, output_directory

    refuse_torchrun("pai features record")  # every rank would do all the work, writing the same files
    if args.top_n is not None:
        from pai_ros.require import require
        require("--top-n", args.top_n, at_least=1)
    loaded = load_sae(args.sae)
    calibration, why = load_calibration(loaded.directory, loaded.sae_id)
    root = resolve_dataset_root(args.dataset_root, args.dataset_repo_id)
    check_apart(args.output_dir,
                {"dataset": root, "checkpoint": resolve_checkpoint_dir(args.policy_path), "SAE": args.sae})
    info = read_info(root)
    episodes = select_episodes(info, root, args.episode)
    runner = activations_runner(args.policy_path, args.device)
    use_camera_rename(runner, args.rename_map, info)
    check_dimensions(runner, loaded)
    loaded.sae.to(runner.device)
    if calibration is None:
        print(f"note: {why}; is_ood will be false")
    with output_directory(args.output_dir):  # a failed first run leaves no empty directory behind
        results = record_features(runner, loaded, root, episodes, args.output_dir, calibration=calibration,
                                  top_n=args.top_n, progress=not args.quiet)
    frames = sum(r.frames for r in results)
    ood = sum(r.ood_frames for r in results)
    print(f"recorded {frames} frames of {len(results)} episode(s) into {args.output_dir} "
          f"(SAE {loaded.sae_id}; {ood} frames over the OOD threshold)")
    return 0


def _analyse(args: argparse.Namespace) -> int:
    from pai_ros.features.analyse import AnalyseSettings, analyse
    from pai_ros.features.results import ResultsDir
    from pai_ros.jsonfile import read_json

    settings = AnalyseSettings(rank_by=args.rank_by, top_features=args.top_features, top_frames=args.top_frames,
                               per_episode=args.per_episode, dedup_window=args.dedup_window,
                               thumbnails=not args.no_thumbnails)
    results = ResultsDir(args.results)
    path = analyse(results, settings, progress=not args.quiet)
    note = read_json(path, "feature analysis").get("thumbnails_note")
    if note:  # kept in analysis.json (and shown by the browser) as well
        print(f"note: {note}")
    unrecorded = results.unrecorded_episodes()
    if unrecorded:  # an interrupted recording analyses like a finished one: said, as the browser says it
        print(f"note: {unrecorded}", file=sys.stderr)
    print(f"analysis written to {path}")
    return 0


def _register_effects(inner: Sub) -> None:
    p = inner.add_parser(
        "effects", help="rank the top features by what they do to the actions (ablated / clamped high)",
        formatter_class=HelpFormatter,
        description="For each of the analysis's top features, run the policy over held-out frames of the "
                    "recording with the feature ablated (zero on every token) and clamped at its strongest "
                    "activation, at the SAE's site with its error term kept, and measure the RMS change of the "
                    "predicted action chunk (normalised units). Writes RESULTS/analysis/effects.json (the ranking "
                    "by effect next to the ranking by activation, and their rank correlation) and effects.png; "
                    "the feature browser shows them. RESULTS is a `pai features record` directory on which "
                    "`pai features analyse` has run; the policy and SAE are the ones it was recorded with.")
    p.add_argument("results", type=input_path, help="results directory (record + analyse)")
    p.add_argument("--top-features", type=int, default=32, help="features to measure, in ranking order")
    p.add_argument("--frames", type=int, default=64, help="held-out frames, evenly over the recorded episodes")
    p.add_argument("--clamp-scale", type=float, default=1.0,
                   help="clamp each feature to this times its strongest activation in the recording")
    p.add_argument("--batch-size", type=int, default=16, help="frames per forward pass")
    p.add_argument("--action-dims", type=int, nargs="+", default=None, metavar="I",
                   help="measure only these action dimensions (indices; e.g. the gripper's). Default: all")
    p.add_argument("--horizon", type=int, default=None,
                   help="measure only the first N actions of each chunk (what the robot does next). Default: all")
    add_device_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_effects)


def _effects(args: argparse.Namespace) -> int:
    from pai_ros.errors import UserError
    from pai_ros.features.effects import EffectSettings, feature_effects, features_to_measure
    from pai_ros.features.results import RECORD_FILE, ResultsDir, rank_correlation_text
    from pai_ros.jsonfile import read_json
    from pai_ros.policy.over_dataset import use_camera_rename
    from pai_ros.policy.runner import activations_runner
    from pai_ros.sae.distributed import refuse_torchrun
    from pai_ros.sae.model import check_dimensions, load_sae

    refuse_torchrun("pai features effects")  # every rank would do all the work, writing the same files
    settings = EffectSettings(top_features=args.top_features, frames=args.frames, clamp_scale=args.clamp_scale,
                              batch_size=args.batch_size, horizon=args.horizon,
                              action_dims=None if args.action_dims is None else tuple(args.action_dims))
    results = ResultsDir(args.results)
    for note in (results.stale_analysis(), results.unrecorded_episodes()):
        if note:
            print(f"note: {note}", file=sys.stderr)
    record = results.record
    if record is None:
        raise results.lacking(RECORD_FILE, results.earlier_step() or "run `pai features record` (effects need "
                              "dataset frames)")

    for key, what in (("sae_path", "SAE"), ("policy_path", "policy")):  # effects re-run what recorded
        if not Path(record[key]).exists():
            raise UserError(f"the {what} this recording was made with, {record[key]} ({RECORD_FILE}: {key}), is "
                            "not there any more: put it back there, or record again with it where it is now")
    loaded = load_sae(record["sae_path"])
    features_to_measure(results, loaded, settings)  # refused now, not after the policy has loaded
    runner = activations_runner(record["policy_path"], args.device)
    use_camera_rename(runner, record.get("camera_rename"), note=None)  # the cameras as they were recorded
    check_dimensions(runner, loaded)
    runner.capture.detach()  # effects read actions only: no activations to capture
    path = feature_effects(results, runner, loaded, settings, progress=not args.quiet)
    effects = read_json(path, "feature effects")
    top = ", ".join(f"{r['feature']} ({r['ablate_effect']:.3g})" for r in effects["features"][:5])
    rho = effects["rank_correlation_effect_vs_activation"]
    print(f"effects of {len(effects['features'])} features over {effects['frames']} frames written to {path}; "
          f"largest when ablated: {top}; rank correlation with the activation ranking "
          f"{rank_correlation_text(rho)}")
    return 0
