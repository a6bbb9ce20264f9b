"""``pai sae collect``: run a policy over dataset episodes and store its encoder output tokens.

The encoder output is the memory ACT's decoder reads: one ``dim_model`` vector per token
(latent, robot state, env state, every camera cell). Every frame is one control tick of the
policy as it would run live (a fresh forward pass per frame). Episodes are processed one at a
time and written in shards of at most ``shard_tokens`` rows, so memory stays bounded; an
episode that already has its manifest is skipped, so an interrupted run resumes where it
stopped. See :mod:`pai_ros.sae.activations` for the file format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pai_ros import __version__
from pai_ros.data.episodes import episode_length, episode_stem, read_info
from pai_ros.errors import UserError
from pai_ros.jsonfile import read_json, write_json_atomic
from pai_ros.policy.over_dataset import camera_rename_for, check_dataset_fits, run_episode
from pai_ros.policy.runner import PolicyRunner
from pai_ros.require import require
from pai_ros.sae.activations import (
    COLLECT_FILE,
    EPISODE_MANIFEST,
    EpisodeShardWriter,
    TokenSelection,
    complete_episodes,
    token_metadata,
)
from pai_ros.sae.distributed import World
from pai_ros.sae.sizing import Estimate, check_fits
from pai_ros.staging import (
    check_no_other_results,
    check_only_own_entries,
    make_output_dir,
)

HOOK = "model.encoder output (the memory the ACT decoder cross-attends to), seq-first -> [tokens, dim_model]"
# float16 by default: half the disk of float32 at the same held-out FVU (bench_sae_scale.py);
# bfloat16 for activations beyond float16's range (+-65504), refused rather than stored as inf.
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
FLOAT16_MAX = 65504.0


@dataclass(frozen=True)
class CollectSettings:
    selection: TokenSelection = TokenSelection()
    frame_stride: int = 1
    shard_tokens: int = 262_144
    dtype: str = "float16"

    def __post_init__(self) -> None:
        require("--frame-stride", self.frame_stride, at_least=1)
        require("--shard-tokens", self.shard_tokens, at_least=1)
        if self.dtype not in DTYPES:
            raise UserError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype}")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["selection"] = {"kinds": list(self.selection.kinds), "cell_stride": self.selection.cell_stride}
        return out


@dataclass
class CollectResult:
    directory: Path
    episodes_done: list[int]
    episodes_skipped: list[int]
    rows: int


def _differences(old: Any, new: Any) -> str:
    """What changed between two collect.json entries, e.g. "policy_path was A, now B"."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return f"was {old!r}, now {new!r}"
    keys = [k for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
    return "; ".join(f"{k} was {old.get(k)!r}, now {new.get(k)!r}" for k in keys)


def _source(runner: PolicyRunner, dataset_root: Path, info: dict[str, Any]) -> dict[str, Any]:
    source = {"policy_path": str(Path(runner.loaded.path).resolve()),
              "policy_id": runner.loaded.fingerprint, "dataset_root": str(dataset_root.resolve()),
              "dataset_fps": info.get("fps"), "hook": HOOK, "dim_model": int(runner.loaded.config.dim_model),
              "runner_mode": runner.mode}
    rename = camera_rename_for(runner, info)
    if rename:  # only then: collections without one resume as they were begun
        source["camera_rename"] = rename
    return source


def _frames(info: dict[str, Any], root: Path, episodes: list[int], stride: int) -> int:
    """Frames kept of ``episodes`` (lengths from the episodes metadata; the mean when unreadable)."""
    mean = int(info.get("total_frames", 0)) / max(1, int(info.get("total_episodes", 1)))
    total = 0
    for e in episodes:
        n = episode_length(info, root, e)
        n = int(round(mean)) if n is None else n
        total += -(-n // stride)
    return total


def _holds_episodes(out: Path) -> bool:
    """Any episode finished in ``out`` (its manifest). Parts flushed before a run stopped, without
    their manifest, hold nothing: the episode is redone and its writer deletes them first."""
    return any(EPISODE_MANIFEST.match(p.name) for p in out.glob("episode_*.json"))


def _bytes_of(out: Path, done: dict[int, dict[str, Any]]) -> int:
    """What the complete episodes ``done`` take on disk (their parts and manifests)."""
    files = [out / part["file"] for manifest in done.values() for part in manifest["parts"]]
    files += [out / f"{episode_stem(e)}.json" for e in done]
    return sum(f.stat().st_size for f in files if f.is_file())


def _check_not_the_users(out: Path) -> None:
    """Shards are written beside whatever ``out`` holds: refuse a non-empty directory that is no collection."""
    if not (out / COLLECT_FILE).exists():
        check_only_own_entries(out, ("episode_",), "pai sae collect", "--output")


def collect_activations(runner: PolicyRunner, dataset_root: Path, episodes: list[int], out: Path,
                        settings: CollectSettings, *, progress: bool = True, max_disk: int | None = None,
                        world: World | None = None, report: Callable[[str], None] | None = None) -> CollectResult:
    """Collect ``episodes`` into ``out``; under torchrun the episodes still to do are shared by the ranks.

    Before the first shard is written (after one forward pass, which gives the token layout)
    the size of the whole collection is estimated, handed to ``report`` and checked against
    ``max_disk`` and the free disk space.
    """
    world = world or World()
    info = read_info(dataset_root)
    check_dataset_fits(runner, info, dataset_root)
    check_no_other_results(out, "SAE activations (pai sae collect)")
    _check_not_the_users(out)
    make_output_dir(out)
    source = _source(runner, dataset_root, info)
    header = {"pai_ros_version": __version__, "source": source, "settings": settings.to_json(),
              "d": source["dim_model"], "episodes_requested": sorted(set(episodes))}
    existing = out / COLLECT_FILE
    # A collection.json beside no episode describes nothing (a first run stopped before its first
    # episode: activations out of float16's range, Ctrl-C, a full disk): begun again with these settings.
    if existing.is_file() and _holds_episodes(out):
        old = read_json(existing, "collection description", want_object=True)
        if isinstance(old.get("source"), dict) and "policy_id" not in old["source"]:
            header["source"].pop("policy_id")  # a collection from before policy ids: resumed as it was begun
        for key in ("source", "settings", "d"):
            if old.get(key) != header[key]:
                raise UserError(f"{out} already holds activations collected with a different {key} "
                                f"({COLLECT_FILE}: {_differences(old.get(key), header[key])}); use a new "
                                "--output directory, or the same policy and settings to resume")
        header["layout"] = old.get("layout")
        # What train compares the collection with: every episode any run was asked for.
        header["episodes_requested"] = sorted({*old.get("episodes_requested", []), *episodes})
    # Rank 0 decides what is left to do (an episode without its manifest, e.g. of a rank killed
    # mid-episode, is redone; its stale parts are overwritten) and every rank takes a stride.
    # The bytes of the complete episodes count against --max-disk: measured before the broadcast
    # (after it the other ranks start deleting the stale parts of episodes they redo) and shared,
    # so that every rank refuses alike.
    done = complete_episodes(out, header["d"]) if world.is_main else {}
    plan = world.broadcast_ints([_bytes_of(out, done), *(e for e in episodes if e not in done)]
                                if world.is_main else None)
    already, todo = plan[0], plan[1:]
    skipped = [e for e in episodes if e not in set(todo)]
    recorded = False  # collect.json written with this run's episodes_requested (once the estimate passed)
    mine = todo[world.rank::world.size]
    progress = progress and world.is_main  # one set of bars, not one per rank interleaved
    rows = 0
    dtype = DTYPES[settings.dtype]
    checked = False
    for episode in tqdm(mine, desc="collecting", unit="episode", disable=not progress or len(mine) < 2):
        writer = EpisodeShardWriter(out, episode, settings.shard_tokens, dtype)
        frames = 0
        selected: np.ndarray | None = None
        meta: dict[str, np.ndarray] = {}
        for frame, tick in run_episode(runner, dataset_root, episode, info=info, progress=progress,
                                       frame_stride=settings.frame_stride):
            cap = tick.capture
            if cap is None or cap.encoder_output is None:
                raise RuntimeError("the runner did not capture the encoder output")
            if selected is None:
                selected = settings.selection.indices(cap.layout)
                if selected.size == 0:
                    raise UserError("the token selection keeps no tokens of this policy (check --kinds)")
                if not checked:
                    estimate = Estimate(_frames(info, dataset_root, todo, settings.frame_stride), int(selected.size),
                                        header["d"], settings.dtype)
                    if report is not None and world.is_main:
                        report(f"estimate for {len(todo)} episode(s): {estimate.line()}")
                    check_fits(estimate, out, max_disk, already=already)
                    checked = True
                meta = token_metadata(cap.layout, selected)
                if header.get("layout") is None:
                    header["layout"] = cap.layout.to_json()
                elif header["layout"] != cap.layout.to_json():
                    raise UserError(f"episode {episode} gives a different token layout than the episodes "
                                    f"already in {out} (image sizes changed?)")
                if not recorded:
                    # Before the first shard: a run stopped from here on is one that train can say was
                    # asked for episodes it never reached. Every rank writes the same file, atomically.
                    write_json_atomic(existing, header)
                    recorded = True
            tokens = cap.encoder_output[0, torch.from_numpy(selected).to(cap.encoder_output.device)]
            if dtype == torch.float16 and float(tokens.abs().max()) > FLOAT16_MAX:
                raise UserError(f"episode {episode} frame {frame.frame_index}: activations exceed float16's range "
                                f"(|x| > {FLOAT16_MAX:g}); collect with --dtype bfloat16 or float32")
            writer.add(tokens, frame.frame_index, meta)
            frames += 1
        if frames == 0:
            raise UserError(f"episode {episode} of {dataset_root} has no frames")
        rows += writer.finish(frames)["rows"]
    counts = torch.tensor([rows], dtype=torch.long)
    world.all_reduce_([counts])
    world.barrier()  # every rank's episodes are complete before rank 0 reports
    if world.is_main and not recorded:  # no episode run here: the union of episodes asked for still lands
        write_json_atomic(existing, header)
    return CollectResult(out, todo, skipped, int(counts[0]))
