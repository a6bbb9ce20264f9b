"""``pai features record``: a policy and its SAE over dataset episodes, as the live node would see them.

Per episode, into ``OUTPUT/episode_{E:06d}/``: ``features.parquet`` (the schema ``pai bag2parquet``
writes for the live ``features`` topic, one row per frame in frame order, ``stamp_ns`` = the
frame's dataset timestamp) and ``feature_tokens.parquet`` (the token-level codes, for spatial
heatmaps). ``OUTPUT/record.json`` names the policy, SAE, dataset and token layout, so the
analysis and the browser find images without being told where they are.

Each episode is written into a ``.partial`` directory and renamed into place when complete.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pai_ros import __version__
from pai_ros.data.camera_rename import describe
from pai_ros.data.episodes import episode_stem, read_info
from pai_ros.errors import UserError
from pai_ros.features.results import ANALYSIS_DIR, NAMES_FILE, RECORD_FILE
from pai_ros.features.tables import (
    FEATURES_FILE,
    FEATURES_SCHEMA,
    TOKENS_FILE,
    TOKENS_SCHEMA,
    unsteered_defaults,
)
from pai_ros.jsonfile import read_json, write_json_atomic
from pai_ros.policy.over_dataset import camera_rename_for, check_dataset_fits, run_episode
from pai_ros.policy.runner import PolicyRunner
from pai_ros.sae.frame import encode_frame
from pai_ros.sae.model import LoadedSae
from pai_ros.sae.ood import Calibration
from pai_ros.staging import check_no_other_results, check_only_own_entries, make_output_dir, staged_directory

TOPIC = "features"


@dataclass
class RecordedEpisode:
    episode: int
    directory: Path
    frames: int
    ood_frames: int
    mean_l0: float
    mean_error: float


def _record_header(runner: PolicyRunner, loaded: LoadedSae, root: Path, info: dict[str, Any],
                   calibration: Calibration | None) -> dict[str, Any]:
    return {"pai_ros_version": __version__, "sae_id": loaded.sae_id, "sae_path": str(loaded.directory.resolve()),
            "num_features": loaded.cfg.d_sae, "policy_path": str(Path(runner.loaded.path).resolve()),
            "dataset_root": str(root.resolve()), "fps": info.get("fps"), "runner_mode": runner.mode,
            "ood_threshold": calibration.threshold if calibration else None,
            "camera_rename": camera_rename_for(runner, info)}  # dataset camera -> policy camera: thumbnails and
    # effects read the dataset with it again


def open_output(out: Path, header: dict[str, Any]) -> dict[str, Any]:
    """Create ``out`` or check that what it already holds was made with the same SAE and policy."""
    check_no_other_results(out, "recorded features (pai features record)")
    if not (out / RECORD_FILE).exists():  # once recorded, analyse and the browser add their files beside it
        # names.json too: a feature's names outlive a re-recording (pai demo keeps them when it runs again).
        check_only_own_entries(out, ("episode_", ANALYSIS_DIR, NAMES_FILE), "pai features record", "--output-dir")
    make_output_dir(out)
    path = out / RECORD_FILE
    if path.is_file():
        old = read_json(path, "record metadata", want_object=True)
        # Recorded before the map was written down: it read the dataset's cameras as named (no map).
        old_values = {"camera_rename": {}, **old}
        for key in ("sae_id", "policy_path", "dataset_root", "top_n", "camera_rename"):
            if key == "top_n" and key not in old:
                continue  # recorded before it was written down
            if old_values.get(key) != header[key]:
                was, now = (describe(v) if key == "camera_rename" else "none: every token" if key == "top_n"
                            and v is None else v for v in (old_values.get(key), header[key]))
                raise UserError(f"{out} holds features recorded with other settings ({key.replace('_', ' ')} "
                                f"{was}; now {now}); record into a new --output-dir")
        header = {**old, **{k: v for k, v in header.items() if k != "episodes"}}
    header.setdefault("episodes", [])
    return header


def record_episode(runner: PolicyRunner, loaded: LoadedSae, root: Path, episode: int, out: Path, *,
                   calibration: Calibration | None = None, top_n: int | None = None,
                   progress: bool = True) -> tuple[RecordedEpisode, dict[str, Any]]:
    """Record one episode; returns its summary and the token layout (as JSON) it saw."""
    features: dict[str, list] = {name: [] for name in FEATURES_SCHEMA.names}
    tokens: dict[str, list] = {name: [] for name in TOKENS_SCHEMA.names}
    threshold = calibration.threshold if calibration else math.nan
    layout: dict[str, Any] | None = None
    for frame, tick in run_episode(runner, root, episode, progress=progress):
        cap = tick.capture
        if cap is None or cap.encoder_output is None:
            raise RuntimeError("the runner did not capture the encoder output")
        layout = layout or cap.layout.to_json()
        ff = encode_frame(loaded.sae, cap.encoder_output[0], top_n)
        stamp = int(round(frame.timestamp * 1e9))
        row = {"stamp_ns": stamp, "recv_ns": stamp, "topic": TOPIC, "sae_id": loaded.sae_id,
               "num_features": loaded.cfg.d_sae, "feature_indices": ff.feature_indices,
               "activations": ff.activations, "token_counts": ff.token_counts, "num_tokens": ff.num_tokens,
               "mean_l0": ff.mean_l0, "reconstruction_error": ff.reconstruction_error,
               "ood_threshold": threshold, "is_ood": bool(calibration and ff.reconstruction_error > threshold),
               **unsteered_defaults()}
        if calibration is not None and calibration.has_score:
            # As the live node does: the per-position score, and is_ood by it (when the frame's
            # token count matches the calibration's; otherwise the frame-level flag stands).
            try:
                score = calibration.score(ff.token_errors)
            except ValueError:
                pass
            else:
                row.update(ood_score=score, ood_score_threshold=calibration.score_threshold,
                           is_ood=score > calibration.score_threshold)
        if calibration is not None and calibration.camera_state is not None and frame.state is not None:
            # As the live node does: whether the cameras agree with the joints, beside is_ood.
            try:
                camera = calibration.camera_state_reading(cap.encoder_output[0], cap.layout, frame.state,
                                                          cap.encoder_input_at(0))
            except ValueError:
                pass
            else:
                row.update(camera_state_score=camera.score, camera_state_threshold=calibration.camera_state_threshold,
                           camera_state_cameras=list(camera.by_camera),
                           camera_state_camera_scores=list(camera.by_camera.values()))
        for key, value in row.items():
            features[key].append(value)
        token_index, feature_index, activation = ff.sparse_tokens()
        for key, value in (("frame_index", frame.frame_index), ("stamp_ns", stamp), ("token_index", token_index),
                           ("feature_index", feature_index), ("activation", activation)):
            tokens[key].append(value)
    frames = len(features["stamp_ns"])
    if frames == 0 or layout is None:
        raise UserError(f"episode {episode} of {root} has no frames")
    final = out / episode_stem(episode)
    with staged_directory(final) as partial:
        meta = {b"pai_ros_version": __version__.encode(), b"episode_index": str(episode).encode(),
                b"sae_id": loaded.sae_id.encode()}
        pq.write_table(pa.Table.from_pydict(features, schema=FEATURES_SCHEMA.with_metadata(meta)),
                       partial / FEATURES_FILE, compression="zstd")
        pq.write_table(pa.Table.from_pydict(tokens, schema=TOKENS_SCHEMA.with_metadata(meta)),
                       partial / TOKENS_FILE, compression="zstd")
    ood = sum(features["is_ood"])
    return (RecordedEpisode(episode, final, frames, ood, sum(features["mean_l0"]) / frames,
                            sum(features["reconstruction_error"]) / frames), layout)


def record_features(runner: PolicyRunner, loaded: LoadedSae, root: Path, episodes: list[int], out: Path, *,
                    calibration: Calibration | None = None, top_n: int | None = None,
                    progress: bool = True) -> list[RecordedEpisode]:
    info = read_info(root)
    check_dataset_fits(runner, info, root)
    # top_n: episodes kept with different limits would rank features unevenly in one analysis.
    header = open_output(out, {**_record_header(runner, loaded, root, info, calibration), "top_n": top_n})
    # Every episode any run was asked for: analyse and the browser say which an interrupted run never reached.
    header["requested_episodes"] = sorted({*map(int, header.get("requested_episodes") or []), *episodes})
    if (out / RECORD_FILE).is_file():  # now, so that a re-run stopped in its first episode still says what it lacks
        write_json_atomic(out / RECORD_FILE, header)
    results = []
    for episode in episodes:
        result, layout = record_episode(runner, loaded, root, episode, out, calibration=calibration, top_n=top_n,
                                        progress=progress)
        if header.get("layout") not in (None, layout):
            raise UserError(f"episode {episode} gives a different token layout than the episodes already in {out}")
        header["layout"] = layout
        header["episodes"] = sorted(set(header["episodes"]) | {episode})
        write_json_atomic(out / RECORD_FILE, header)
        results.append(result)
    return results
