"""``pai sae collect | train | calibrate``: sparse autoencoders over ACT's encoder tokens."""

from __future__ import annotations

import argparse
import sys

from pai_ros.cli_help import HelpFormatter
from pai_ros.data.source import add_dataset_arguments
from pai_ros.path_args import input_path, output_path
from pai_ros.policy.loading import add_device_argument, add_policy_arguments
from pai_ros.require import require

Sub = "argparse._SubParsersAction[argparse.ArgumentParser]"


def register(sub: Sub) -> None:
    p = sub.add_parser("sae", help="collect activations, train sparse autoencoders, calibrate the OOD threshold",
                       description="Sparse autoencoders (SAEs) over the encoder tokens an ACT policy's decoder reads: "
                                   "one activation vector per token (latent, state, each camera cell).",
                       formatter_class=HelpFormatter)
    inner = p.add_subparsers(dest="sae_command", metavar="<step>", title="steps", required=True)
    _register_collect(inner)
    _register_train(inner)
    _register_calibrate(inner)


def _common_policy(p: argparse.ArgumentParser) -> None:
    add_policy_arguments(p)
    add_dataset_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _register_collect(inner: Sub) -> None:
    p = inner.add_parser(
        "collect", help="run the policy over episodes and store its encoder output tokens in shards",
        formatter_class=HelpFormatter,
        description="Run the policy over dataset episodes (a fresh forward pass per frame, as live) and store "
                    "every encoder output token with its metadata (episode, frame, token index, kind, camera "
                    "row/col) in safetensors shards under OUTPUT. Resumable: finished episodes are skipped. "
                    "Under torchrun (`torchrun --nproc-per-node N -m pai_ros.cli sae collect ...`) the ranks share "
                    "the episodes; see the README's 'Large datasets, several GPUs, several machines'.")
    _common_policy(p)
    p.add_argument("--episode", type=int, nargs="+", metavar="E", help="episode index(es); default: all")
    p.add_argument("--output", type=output_path, required=True, help="collection directory (created or resumed)")
    p.add_argument("--frame-stride", type=int, default=1, help="keep every N-th frame")
    p.add_argument("--cell-stride", type=int, default=1,
                   help="keep camera cells whose row and column are multiples of N (a coarser grid)")
    p.add_argument("--kinds", default="latent,state,env_state,camera",
                   help="comma-separated token kinds to keep")
    p.add_argument("--shard-tokens", type=int, default=262_144, help="rows per shard file (bounds memory)")
    p.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"),
                   help="stored precision (float16: half of float32's disk at the same SAE FVU; bfloat16 for "
                        "activations beyond +-65504)")
    p.add_argument("--max-disk", metavar="SIZE",
                   help="refuse up front when the estimated collection is larger (e.g. 20GB, 500MiB); the free "
                        "disk space is always checked")
    p.set_defaults(handler=_collect, on_interrupt="the episodes finished are kept: the same command resumes with "
                                              "the rest")


def _register_train(inner: Sub) -> None:
    p = inner.add_parser(
        "train", help="train a per-token SAE (TopK+AuxK, BatchTopK or ReLU+L1) on collected activations",
        formatter_class=HelpFormatter,
        description="Train a per-token sparse autoencoder. ACTIVATIONS is a `pai sae collect` directory or a "
                    ".safetensors file with tensor 'activations' [N, d]. Writes OUTPUT/cfg.json, "
                    "OUTPUT/sae_weights.safetensors (W_enc [d,F], W_dec [F,d], b_enc, b_dec: SAELens names), "
                    "OUTPUT/metrics.json (held-out FVU, L0, dead/dense fractions, cosine, l2 ratio, action "
                    "recovery when spliced into the policy) and OUTPUT/training_curves.png.")
    p.add_argument("--activations", type=input_path, required=True, help="collect directory or .safetensors file")
    p.add_argument("--output", type=output_path, required=True, help="SAE directory to write")
    p.add_argument("--architecture", default="topk", choices=("topk", "relu", "batchtopk"),
                   help="batchtopk: top k x batch activations per training batch, a learnt threshold at inference")
    p.add_argument("--k", type=int, default=None,
                   help="TopK: active features per token (= L0); BatchTopK: the average (default: 32; not for relu)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--num-features", type=int, help="dictionary size F")
    size.add_argument("--expansion", type=int, default=8, help="F = expansion x d (when --num-features is not given)")
    p.add_argument("--steps", type=int, default=3000, help="optimiser steps (each --batch-size tokens)")
    p.add_argument("--batch-size", type=int, default=1024,
                   help="tokens per step, over all ranks under torchrun (then a multiple of their number)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 1e-3 topk/batchtopk, 3e-4 relu)")
    p.add_argument("--l1-coeff", type=float, default=None,
                   help="--architecture relu only: decoder-norm-weighted L1 coefficient (default 1.0)")
    p.add_argument("--seed", type=int, default=0, help="initialisation and batch order: the same seed, the same SAE")
    p.add_argument("--holdout", type=float, default=0.1, help="share of episodes held out for the metrics")
    p.add_argument("--max-tokens", type=int, help="train on at most N rows (evenly spaced pieces)")
    p.add_argument("--shuffle-buffer", type=int, default=65_536,
                   help="tokens held in memory per process: batches are drawn at random from this buffer, "
                        "refilled from shards read as training goes (bounds memory, not the collection size)")
    p.add_argument("--eval-frames", type=int, default=64,
                   help="held-out frames for the splice-into-policy action metric (0 skips it)")
    add_device_argument(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing SAE directory")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_train)


def _register_calibrate(inner: Sub) -> None:
    p = inner.add_parser(
        "calibrate", help="fit the out-of-distribution threshold on held-out episodes",
        formatter_class=HelpFormatter,
        description="Run the policy and SAE over held-out in-distribution episodes, save the per-frame "
                    "reconstruction errors' percentiles, mean + k sigma and the chosen threshold to SAE/ood.json "
                    "(the policy node flags ticks above it). With --evaluate-episode, also compare clean frames "
                    "of those episodes with the same frames under camera noise, occlusion, swapped cameras and "
                    "each camera covered (black): "
                    "AUROC and flagged fractions in SAE/ood_report.json and SAE/ood_errors.png. For a policy that "
                    "takes the robot state, also fit whether the cameras agree with the joints (a regression from "
                    "the camera tokens to the state); give it the policy's training episodes with "
                    "--state-fit-dataset-root, since a few calibration episodes alone make its threshold flag far "
                    "more than 1% of ordinary frames.")
    p.add_argument("--sae", type=input_path, required=True, help="SAE directory (from `pai sae train`)")
    _common_policy(p)
    p.add_argument("--episode", type=int, nargs="+", metavar="E", help="calibration episodes; default: all")
    p.add_argument("--evaluate-episode", type=int, nargs="+", metavar="E",
                   help="episodes for the clean-vs-corrupted report (use ones not in --episode)")
    p.add_argument("--threshold", default="p99", choices=("p95", "p99", "p99.9", "sigma"),
                   help="threshold rule: a percentile of the calibration errors, or mean + --sigmas x std")
    p.add_argument("--sigmas", type=float, default=3.0, help="k for the sigma rule (a positive number)")
    p.add_argument("--state-fit-dataset-root", type=input_path, metavar="DIR",
                   help="a local LeRobot dataset (usually the policy's training data) whose episodes the camera-state "
                        "regression also learns from; default: the calibration episodes alone")
    p.add_argument("--state-fit-episode", type=int, nargs="+", metavar="E",
                   help="episodes of --state-fit-dataset-root; default: all")
    p.add_argument("--state-fit-frame-stride", type=int, default=1, metavar="N",
                   help="every N-th frame of those episodes; raised, with a note, where they hold more frames than "
                        "the regression fits (2000 with the calibration frames): the default uses every frame it can")
    p.set_defaults(handler=_calibrate)


def _ranks_share(args: argparse.Namespace) -> dict:
    """The arguments every torchrun rank must be started with (``--quiet`` may differ)."""
    return {k: v for k, v in vars(args).items() if k not in ("handler", "quiet")}


def _collect(args: argparse.Namespace) -> int:
    from pai_ros.data.episodes import read_info, select_episodes
    from pai_ros.data.source import resolve_dataset_root
    from pai_ros.policy.loading import resolve_checkpoint_dir
    from pai_ros.policy.over_dataset import use_camera_rename
    from pai_ros.policy.runner import activations_runner
    from pai_ros.sae.activations import TokenSelection
    from pai_ros.sae.collect import CollectSettings, collect_activations
    from pai_ros.sae.distributed import rank_device, same_everywhere, world_from_env
    from pai_ros.sae.sizing import parse_size
    from pai_ros.staging import check_apart, output_directory

    world = world_from_env(args.device)
    try:
        world.check_same(same_everywhere(_ranks_share(args), ("output", "dataset_root", "policy_path")))
        settings = CollectSettings(TokenSelection(tuple(k.strip() for k in args.kinds.split(",") if k.strip()),
                                                  args.cell_stride),
                                   args.frame_stride, args.shard_tokens, args.dtype)
        max_disk = parse_size(args.max_disk) if args.max_disk else None
        root = resolve_dataset_root(args.dataset_root, args.dataset_repo_id)
        check_apart(args.output, {"dataset": root, "checkpoint": resolve_checkpoint_dir(args.policy_path)})
        info = read_info(root)
        episodes = select_episodes(info, root, args.episode)
        runner = activations_runner(args.policy_path, rank_device(args.device, world))
        use_camera_rename(runner, args.rename_map, info, note=print if world.is_main else None)
        with output_directory(args.output):  # a failed first run leaves no empty directory behind
            result = collect_activations(runner, root, episodes, args.output, settings, progress=not args.quiet,
                                         max_disk=max_disk, world=world, report=print)
    finally:
        world.close()
    if world.is_main:
        ranks = f" on {world.size} ranks" if world.size > 1 else ""
        done = (f"collected {result.rows} tokens from {len(result.episodes_done)} episode(s) into {args.output}{ranks}"
                if result.episodes_done else f"nothing to collect into {args.output}")
        n_skipped = len(result.episodes_skipped)
        print(done + (f" ({n_skipped} episode(s) were already complete)" if n_skipped else ""))
    return 0


def _train(args: argparse.Namespace) -> int:
    from pai_ros.errors import UserError
    from pai_ros.policy.loading import resolve_device
    from pai_ros.sae.distributed import rank_device, same_everywhere, world_from_env
    from pai_ros.sae.train import TrainSettings
    from pai_ros.sae.train_output import run_training

    world = world_from_env(args.device)
    try:
        # Under torchrun every rank must train the same thing: refuse before any work if not.
        world.check_same(same_everywhere(_ranks_share(args), ("activations", "output")))
        require("--eval-frames", args.eval_frames, at_least=0, note=" (0 skips the action metric)")
        if args.l1_coeff is not None and args.architecture != "relu":
            raise UserError(f"--l1-coeff is for --architecture relu; {args.architecture} sets its sparsity with --k")
        if args.k is not None and args.architecture == "relu":  # it would be ignored: L0 is whatever L1 leaves
            raise UserError("--k is for --architecture topk or batchtopk; relu sets its sparsity with --l1-coeff")
        settings = TrainSettings(architecture=args.architecture, k=32 if args.k is None else args.k,
                                 num_features=args.num_features,
                                 expansion=args.expansion, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                 seed=args.seed, l1_coeff=1.0 if args.l1_coeff is None else args.l1_coeff,
                                 holdout=args.holdout,
                                 max_tokens=args.max_tokens, device=resolve_device(rank_device(args.device, world)))
        out, m = run_training(args.activations, args.output, settings, overwrite=args.overwrite,
                              eval_frames=args.eval_frames, progress=not args.quiet,
                              buffer_tokens=args.shuffle_buffer, world=world,
                              report=lambda line: print(line, file=sys.stderr))
    finally:
        world.close()
    if not world.is_main:
        return 0
    recovered = m.get("action_recovered")
    note = m.get("action_recovery_note", "")
    rec = (f", action recovered {recovered:.3f}" if recovered is not None
           else f"; action recovery {note}" if note.startswith("not measured") else "")
    ranks = f" on {world.size} ranks" if world.size > 1 else ""
    # One episode only: rows of it are held out, not an episode, which flatters the figures.
    heldout = "held-out" if m.get("split", "episode") == "episode" else "held-out-rows (no episode held out)"
    print(f"SAE {m['sae_id']} ({m['architecture']}, {m['d_in']}->{m['d_sae']}) in {out}{ranks}: {heldout} FVU "
          f"{m['fvu']:.4f}, L0 {m['l0']:.1f}; dead in training {m['dead_fraction']:.1%}{rec}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:

    from pai_ros.data.episodes import read_info, select_episodes
    from pai_ros.data.source import resolve_dataset_root
    from pai_ros.errors import UserError
    from pai_ros.policy.over_dataset import check_dataset_fits, use_camera_rename
    from pai_ros.policy.runner import activations_runner
    from pai_ros.sae.calibrate import (
        StateFit,
        calibrate,
        check_episodes_apart,
        summary_lines,
        write_calibration,
    )
    from pai_ros.sae.distributed import refuse_torchrun
    from pai_ros.sae.model import check_dimensions, load_sae

    refuse_torchrun("pai sae calibrate")  # every rank would do all the work, writing the same files
    require("--sigmas", args.sigmas, above=0)
    loaded = load_sae(args.sae)
    root = resolve_dataset_root(args.dataset_root, args.dataset_repo_id)
    info = read_info(root)
    episodes = select_episodes(info, root, args.episode)
    evaluate = select_episodes(info, root, args.evaluate_episode) if args.evaluate_episode else None
    state_fit = None
    if args.state_fit_dataset_root is not None:
        require("--state-fit-frame-stride", args.state_fit_frame_stride, at_least=1)
        fit_info = read_info(args.state_fit_dataset_root)
        state_fit = StateFit(args.state_fit_dataset_root,
                             select_episodes(fit_info, args.state_fit_dataset_root, args.state_fit_episode),
                             args.state_fit_frame_stride)
    elif args.state_fit_episode:
        raise UserError("--state-fit-episode needs --state-fit-dataset-root")
    check_episodes_apart(root, episodes, evaluate, state_fit)  # before the policy loads; calibrate checks too
    runner = activations_runner(args.policy_path, args.device)
    use_camera_rename(runner, args.rename_map, info)
    check_dimensions(runner, loaded)
    if state_fit is not None:  # before the calibration pass, not after it
        check_dataset_fits(runner, fit_info, state_fit.root)
    result = calibrate(runner, loaded, root, episodes, rule=args.threshold, sigmas=args.sigmas,
                       evaluate=evaluate, progress=not args.quiet, state_fit=state_fit)
    written = write_calibration(loaded, result)
    for line in summary_lines(result, written):
        print(line)
    return 0
