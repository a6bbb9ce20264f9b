"""Run a policy over recorded episodes, one control tick per frame, as it would run live."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pai_ros.data.episodes import (
    DatasetFrame,
    camera_names,
    episode_length,
    iter_episode,
    read_info,
)
from pai_ros.errors import UserError
from pai_ros.policy.observation import Observation
from pai_ros.policy.runner import PolicyRunner, TickResult

ObservationTransform = Callable[[DatasetFrame, Observation], Observation]


def check_cameras(runner: PolicyRunner, info: dict[str, Any], root: Path) -> None:
    missing = [c for c in runner.spec.cameras if c not in camera_names(info)]
    if missing:
        raise UserError(f"the policy needs camera(s) {', '.join(missing)}, but {root} has "
                        f"{', '.join(camera_names(info)) or 'none'}")


def run_episode(runner: PolicyRunner, root: Path, episode: int, *, info: dict[str, Any] | None = None,
                transform: ObservationTransform | None = None, progress: bool = True,
                desc: str | None = None, frame_stride: int = 1) -> Iterator[tuple[DatasetFrame, TickResult]]:
    """Yield ``(frame, tick)`` for every frame of ``episode``; the runner is reset first.

    ``transform`` may replace the observation (e.g. corrupt a camera) before the policy sees it.
    ``frame_stride``: only every N-th frame (by frame index), the others neither decoded nor run.
    That needs a runner that replans every frame: in the other modes a tick depends on the ticks
    before it, and skipping them would change it.
    """
    if frame_stride > 1 and runner.mode != "replan":
        raise ValueError(f"frame_stride {frame_stride} needs a runner in replan mode, not {runner.mode!r}")
    info = info or read_info(root)
    check_cameras(runner, info, root)
    runner.reset()
    frames = iter_episode(root, episode, info, frame_stride)
    length = episode_length(info, root, episode)
    total = None if length is None else -(-length // frame_stride)
    for frame in tqdm(frames, total=total, desc=desc or f"episode {episode}",
                      unit="frame", disable=not progress, leave=False):
        obs = Observation(frame.images, frame.state, frame.env_state)
        if transform is not None:
            obs = transform(frame, obs)
        yield frame, runner.step(obs)
