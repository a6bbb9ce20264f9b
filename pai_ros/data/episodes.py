"""Open a LeRobotDataset v3.0 from disk and walk an episode frame by frame, with clear errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pai_ros.data.video import video_backend
from pai_ros.errors import UserError

SUPPORTED_VERSION = "v3.0"


@dataclass
class DatasetFrame:
    episode_index: int
    frame_index: int
    timestamp: float
    images: dict[str, np.ndarray]  # camera name -> H x W x 3 uint8 RGB
    state: np.ndarray | None
    env_state: np.ndarray | None
    action: np.ndarray | None
    extras: dict[str, np.ndarray]  # other numeric features, e.g. annotation.*


def read_info(root: Path) -> dict[str, Any]:
    info_path = root / "meta" / "info.json"
    if not root.exists():
        raise UserError(f"dataset root {root} does not exist")
    if not info_path.is_file():
        raise UserError(f"{root} is not a LeRobot dataset: no meta/info.json")
    try:
        info = json.loads(info_path.read_text())
    except ValueError as exc:
        raise UserError(f"{info_path} is not valid JSON ({exc})") from None
    version = info.get("codebase_version")
    if version != SUPPORTED_VERSION:
        raise UserError(f"{root} is a LeRobotDataset {version}; pai_ros reads {SUPPORTED_VERSION} "
                        "(convert it with LeRobot's dataset conversion script)")
    return info


def check_episodes(info: dict[str, Any], episodes: list[int], root: Path) -> None:
    total = int(info.get("total_episodes", 0))
    for e in episodes:
        if not 0 <= e < total:
            raise UserError(f"episode {e} is out of range: {root} has {total} episodes (0-{total - 1})")


def camera_names(info: dict[str, Any]) -> list[str]:
    return [k.rsplit(".", 1)[-1] for k, ft in info["features"].items()
            if k.startswith("observation.images.") and ft.get("dtype") in ("video", "image")]


def _to_uint8_hwc(chw: torch.Tensor) -> np.ndarray:
    # LeRobot decodes to float CHW in [0, 1] (uint8 / 255): this is the exact inverse.
    return (chw.permute(1, 2, 0) * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()


def iter_episode(root: Path, episode: int, info: dict[str, Any] | None = None) -> Iterator[DatasetFrame]:
    """Frames of one episode in order, images as uint8 RGB (decoded once each)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    info = info or read_info(root)
    check_episodes(info, [episode], root)
    ds = LeRobotDataset(repo_id=f"local/{root.name}", root=root, episodes=[episode], video_backend=video_backend())
    cams = camera_names(info)
    numeric = [k for k, ft in info["features"].items() if ft.get("dtype") in ("float32", "float64")
               and k not in ("observation.state", "observation.environment_state", "action", "timestamp")]
    for i in range(len(ds)):
        item = ds[i]
        if int(item["episode_index"]) != episode:
            continue
        yield DatasetFrame(
            episode_index=episode,
            frame_index=int(item["frame_index"]),
            timestamp=float(item["timestamp"]),
            images={c: _to_uint8_hwc(item[f"observation.images.{c}"]) for c in cams},
            state=item["observation.state"].numpy() if "observation.state" in item else None,
            env_state=item["observation.environment_state"].numpy() if "observation.environment_state" in item else None,
            action=item["action"].numpy() if "action" in item else None,
            extras={k: item[k].numpy() for k in numeric if k in item},
        )


def episode_length(info: dict[str, Any], root: Path, episode: int) -> int | None:
    """Frames in ``episode`` from the episodes metadata (None if it cannot be read cheaply)."""
    try:
        import pyarrow.parquet as pq

        for f in sorted((root / "meta" / "episodes").rglob("*.parquet")):
            t = pq.read_table(f, columns=["episode_index", "length"]).to_pydict()
            for e, n in zip(t["episode_index"], t["length"]):
                if e == episode:
                    return int(n)
    except Exception:
        return None
    return None


def select_episodes(info: dict[str, Any], root: Path, episodes: list[int] | None) -> list[int]:
    """The chosen episodes (checked), or every episode of the dataset when none are chosen."""
    if not episodes:
        return list(range(int(info.get("total_episodes", 0))))
    check_episodes(info, episodes, root)
    return list(dict.fromkeys(episodes))
