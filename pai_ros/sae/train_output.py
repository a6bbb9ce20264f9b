"""``pai sae train`` end to end: stream the activations, train, evaluate, write the SAE directory.

The directory is assembled in the hidden ``.DIR.partial-<pid>`` and renamed to ``DIR`` only when
``cfg.json``, the weights, ``metrics.json``, the PNG and the list of them (``.pai_written.json``:
``--overwrite`` later refuses files added since, except a calibration) are all written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pai_ros import __version__
from pai_ros.errors import UserError
from pai_ros.jsonfile import write_json_atomic
from pai_ros.sae.calibrate import CALIBRATION_FILES
from pai_ros.sae.distributed import World
from pai_ros.sae.metrics import action_recovery
from pai_ros.sae.model import (
    CFG_FILE,
    METRICS_FILE,
    SparseAutoencoder,
    check_policy_of_tokens,
    save_sae,
)
from pai_ros.sae.plots import plot_training
from pai_ros.sae.shards import ShardSet, open_shards, read_frames
from pai_ros.sae.stream import BUFFER_TOKENS, StreamSplit
from pai_ros.sae.train import TrainSettings
from pai_ros.sae.train_stream import train_sae_streaming
from pai_ros.staging import (
    check_apart,
    check_nothing_added,
    output_files,
    staged_directory,
    staging_path,
    write_manifest,
)
from pai_ros.wording import lacking_requested, listed

CURVES_FILE = "training_curves.png"


def _source(data: ShardSet) -> dict[str, Any]:
    if data.info is None:
        return {"activations": str(data.path), "hook": "unknown (activations file)"}
    return {**data.info.get("source", {}), "activations": str(data.path), "layout": data.info.get("layout"),
            "collect_settings": data.info.get("settings")}


def check_output(output: Path, overwrite: bool) -> set[str]:
    """Refuse an output that cannot be written before training, not after it; the files it holds now
    (those ``--overwrite`` may replace: a file added during training is kept)."""
    probe = staging_path(output, "probe")  # what staging will do at the end, tried now
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise UserError(f"cannot write --output {output}: {exc.strerror} ({exc.filename})") from None
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output} is a file, not a directory")
    if output.exists() and any(output.iterdir()):
        if not (output / CFG_FILE).is_file():  # said first: --overwrite would not help
            raise UserError(f"{output} exists, is not empty and is not an SAE directory; choose a new --output "
                            "(--overwrite replaces only an SAE directory)")
        if not overwrite:
            raise UserError(f"{output} already holds an SAE (use --overwrite to replace it)")
        # A file the user put there (notes, a feature list) is theirs; a calibration is of the old SAE.
        check_nothing_added(output, made_by="pai sae train", derived=CALIBRATION_FILES)
    return output_files(output)


def _not_measured(why: str) -> dict[str, Any]:
    return {"action_recovered": None, "action_recovery_note": f"not measured: {why}"}


def measure_action_recovery(sae: SparseAutoencoder, data: ShardSet, split: StreamSplit, frames: int,
                            device: str, progress: bool = False) -> dict[str, Any]:
    """Splice the SAE into the policy on held-out frames (collections only; else why not).

    It runs after training, so a policy or dataset that is gone or changed since the collection
    costs this one figure (the note says why), never the trained SAE.
    """
    if frames <= 0:
        return {"action_recovered": None, "action_recovery_note": "skipped (--eval-frames 0)"}
    source = (data.info or {}).get("source") or {}
    if not all(isinstance(source.get(key), str) and source[key] for key in ("policy_path", "dataset_root")):
        return _not_measured("the activations name no policy or dataset")
    policy_path, root = Path(source["policy_path"]), Path(source["dataset_root"])
    if not policy_path.exists() or not root.exists():
        return _not_measured(f"{policy_path} or {root} is gone")
    from pai_ros.data.episodes import iter_picked_frames, pick_evenly, read_info
    from pai_ros.policy.capture import CaptureConfig
    from pai_ros.policy.loading import load_act_policy
    from pai_ros.policy.observation import Observation
    from pai_ros.policy.over_dataset import check_dataset_fits, use_camera_rename
    from pai_ros.policy.runner import PolicyRunner

    episodes = split.heldout_episodes or data.episodes
    # Choose the frames first (evenly over the held-out episodes), then decode only those. Only
    # the shards' episode and frame indices are read for this, not their activations.
    try:
        pairs = [(int(e), int(f)) for e, f in read_frames([s for s in data.shards if s.episode in set(episodes)])]
        pick = {pairs[i] for i in pick_evenly(len(pairs), frames)}
        loaded = load_act_policy(policy_path, device)
        runner = PolicyRunner(loaded, "replan", CaptureConfig(cross_attention=False, encoder_output=False))
        batches = []
        try:
            # The policy at that path may have been replaced since the collection (another width,
            # or the same width and other weights): the metric would then be about another policy.
            check_policy_of_tokens(runner, sae.d_in, source, "the trained SAE")
            # The cameras as they were collected (a collection without a map read them as the checkpoint says).
            use_camera_rename(runner, source.get("camera_rename"), note=None)
            check_dataset_fits(runner, read_info(root), root)
            batches = [runner.preprocess(Observation(frame.images, frame.state, frame.env_state))
                       for frame in tqdm(iter_picked_frames(root, episodes, pick, rename=runner.camera_rename),
                                         total=len(pick), leave=False, desc="action recovery frames", unit="frame",
                                         disable=not progress)]
        finally:
            runner.close()
    except UserError as exc:
        return _not_measured(str(exc))
    if not batches:
        return _not_measured(f"none of the held-out frames is in {root} any more")
    out = action_recovery(loaded.policy, sae.to(loaded.device), batches)
    out["action_recovery_episodes"] = episodes
    return out


def not_collected(data: ShardSet) -> list[int]:
    """Episodes a collect run was asked for that are neither collected nor begun (a run stopped
    before reaching them): training without them is allowed, but said."""
    requested = (data.info or {}).get("episodes_requested") or []
    return sorted(set(map(int, requested)) - set(data.episodes) - set(data.incomplete))


def run_training(activations: Path, output: Path, settings: TrainSettings, *, overwrite: bool = False,
                 eval_frames: int = 64, progress: bool = True, buffer_tokens: int = BUFFER_TOKENS,
                 world: World | None = None,
                 report: Callable[[str], None] | None = None) -> tuple[Path, dict[str, Any]]:
    """Stream the shards through training; under torchrun only rank 0 writes (staged), the
    others wait for it so that every rank's exit means the SAE directory is complete.

    ``report`` hears what the user should know before training starts (episodes left out).
    """
    world = world or World()
    check_apart(output, {"activations": activations})
    data = open_shards(activations)
    checked = check_output(output, overwrite)
    if data.incomplete and report is not None and world.is_main:
        report(f"note: {activations} has {len(data.incomplete)} incomplete episode(s) "
               f"({listed(data.incomplete, most=8)}: a shard missing, cut short or not what its manifest says, "
               "or a damaged manifest), left out; "
               "`pai sae collect` with the same arguments finishes them")
    never = not_collected(data)
    if never and report is not None and world.is_main:
        report(f"note: {lacking_requested(activations, never, 'collect')}; `pai sae collect` with the same "
               "arguments collects them")
    result = train_sae_streaming(data, settings, buffer_tokens=buffer_tokens, world=world, source=_source(data),
                                 progress=progress)
    metrics = result.metrics
    if world.is_main:
        with staged_directory(output, checked=checked, discard=CALIBRATION_FILES) as partial:
            metrics.update(measure_action_recovery(result.sae, data, result.split, eval_frames, settings.device,
                                                   progress))
            sae_id = save_sae(result.sae.cpu(), partial)
            metrics.update({"sae_id": sae_id, "pai_ros_version": __version__, "d_in": data.d,
                            "training_episodes": training_episodes(data, result.split),
                            "incomplete_episodes_left_out": data.incomplete, "episodes_not_collected": never,
                            "d_sae": result.sae.d_sae, "architecture": settings.architecture})
            write_json_atomic(partial / METRICS_FILE, metrics_document(metrics, result.history))
            plot_training(result.history, metrics, partial / CURVES_FILE)
            write_manifest(partial)  # last: what --overwrite may replace later
    world.barrier()
    return output, metrics


def training_episodes(data: ShardSet, split: StreamSplit) -> list[int]:
    """The collection's episodes whose tokens the SAE learned from (all of them with a row split: part of
    each episode's rows), for ``pai sae calibrate`` to tell a calibration on them from one on new data."""
    if split.by == "episode":
        return sorted(set(data.episodes) - set(split.heldout_episodes))
    return sorted(data.episodes)


def metrics_document(metrics: dict, history: dict) -> dict:
    """What metrics.json holds: the held-out figures at the top level, as the file contract names
    them (``fvu``, ``l0``, ``dead_fraction``, ...), and again under ``metrics`` beside the
    training ``history`` (the layout this package's own readers and earlier files use)."""
    return {**metrics, "metrics": metrics, "history": history}
