"""``pai sae collect``: run a policy over dataset episodes and store its encoder output tokens.

The encoder output is the memory ACT's decoder reads: one ``dim_model`` vector per token
(latent, robot state, env state, every camera cell). Every frame is one control tick of the
policy as it would run live (a fresh forward pass per frame). Episodes are processed one at a
time and written in shards of at most ``shard_tokens`` rows, so memory stays bounded; an
episode that already has its manifest is skipped, so an interrupted run resumes where it
stopped. See :mod:`pai_ros.sae.activations` for the file format.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pai_ros import __version__
from pai_ros.data.episodes import read_info
from pai_ros.errors import UserError
from pai_ros.jsonfile import write_json_atomic
from pai_ros.policy.over_dataset import check_cameras, run_episode
from pai_ros.policy.runner import PolicyRunner
from pai_ros.sae.activations import (
    COLLECT_FILE,
    EpisodeShardWriter,
    TokenSelection,
    complete_episodes,
    layout_to_json,
    token_metadata,
)

HOOK = "model.encoder output (the memory the ACT decoder cross-attends to), seq-first -> [tokens, dim_model]"
DTYPES = {"float32": torch.float32, "float16": torch.float16}


@dataclass(frozen=True)
class CollectSettings:
    selection: TokenSelection = TokenSelection()
    frame_stride: int = 1
    shard_tokens: int = 262_144
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.frame_stride < 1:
            raise UserError(f"--frame-stride must be >= 1, got {self.frame_stride}")
        if self.shard_tokens < 1:
            raise UserError(f"--shard-tokens must be >= 1, got {self.shard_tokens}")
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


def _source(runner: PolicyRunner, dataset_root: Path, info: dict[str, Any]) -> dict[str, Any]:
    return {"policy_path": str(Path(runner.loaded.path).resolve()), "dataset_root": str(dataset_root.resolve()),
            "dataset_fps": info.get("fps"), "hook": HOOK, "dim_model": int(runner.loaded.config.dim_model),
            "runner_mode": runner.mode}


def collect_activations(runner: PolicyRunner, dataset_root: Path, episodes: list[int], out: Path,
                        settings: CollectSettings, *, progress: bool = True) -> CollectResult:
    info = read_info(dataset_root)
    check_cameras(runner, info, dataset_root)
    out.mkdir(parents=True, exist_ok=True)
    source = _source(runner, dataset_root, info)
    header = {"pai_ros_version": __version__, "source": source, "settings": settings.to_json(),
              "d": source["dim_model"]}
    existing = out / COLLECT_FILE
    if existing.is_file():
        try:
            old = json.loads(existing.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{existing} is damaged; collect into a new directory") from None
        for key in ("source", "settings", "d"):
            if old.get(key) != header[key]:
                raise UserError(f"{out} already holds activations collected with other {key} "
                                f"({COLLECT_FILE}); use a new --output directory")
        header["layout"] = old.get("layout")
    done = complete_episodes(out)
    skipped = [e for e in episodes if e in done]
    todo = [e for e in episodes if e not in done]
    rows = 0
    dtype = DTYPES[settings.dtype]
    for episode in tqdm(todo, desc="collecting", unit="episode", disable=not progress or len(todo) < 2):
        writer = EpisodeShardWriter(out, episode, settings.shard_tokens, dtype)
        frames = 0
        selected: np.ndarray | None = None
        meta: dict[str, np.ndarray] = {}
        for frame, tick in run_episode(runner, dataset_root, episode, info=info, progress=progress):
            if frame.frame_index % settings.frame_stride:
                continue
            cap = tick.capture
            if cap is None or cap.encoder_output is None:
                raise RuntimeError("the runner did not capture the encoder output")
            if selected is None:
                selected = settings.selection.indices(cap.layout)
                if selected.size == 0:
                    raise UserError("the token selection keeps no tokens of this policy (check --kinds)")
                meta = token_metadata(cap.layout, selected)
                if header.get("layout") is None:
                    header["layout"] = layout_to_json(cap.layout)
                    write_json_atomic(existing, header)
                elif header["layout"] != layout_to_json(cap.layout):
                    raise UserError(f"episode {episode} gives a different token layout than the episodes "
                                    f"already in {out} (image sizes changed?)")
            tokens = cap.encoder_output[0, torch.from_numpy(selected).to(cap.encoder_output.device)]
            writer.add(tokens, frame.frame_index, meta)
            frames += 1
        if frames == 0:
            raise UserError(f"episode {episode} of {dataset_root} has no frames")
        rows += writer.finish(frames)["rows"]
    if not existing.is_file():
        write_json_atomic(existing, header)
    return CollectResult(out, todo, skipped, rows)

