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
from pai_ros.policy.errors import PolicyOutputError
from pai_ros.policy.observation import Observation
from pai_ros.policy.runner import PolicyRunner, TickResult

ObservationTransform = Callable[[DatasetFrame, Observation], Observation]


def check_dataset_fits(runner: PolicyRunner, info: dict[str, Any], root: Path) -> None:
    """Refuse a dataset whose cameras, image sizes or state widths the policy cannot take.

    From ``meta/info.json`` alone, before any frame is decoded: otherwise the first frame says it,
    which for a second dataset (a calibration's state fit) comes after the whole first pass.
    Sizes are compared only where the feature's shape says unambiguously which axis is which.
    """
    names = camera_names(info)
    missing = [c for c in runner.spec.cameras if c not in names]
    if missing:
        raise UserError(f"the policy needs camera(s) {', '.join(missing)}, but {root} has {', '.join(names) or 'none'}")
    try:
        _check_shapes(runner, info["features"], root)
    except (AttributeError, IndexError, TypeError, ValueError) as exc:  # a hand-edited info.json
        raise UserError(f"{root / 'meta' / 'info.json'} is damaged: its features' shapes cannot be read "
                        f"({type(exc).__name__}: {exc})") from None


def _check_shapes(runner: PolicyRunner, features: dict[str, Any], root: Path) -> None:
    for name, (_, h, w) in runner.spec.cameras.items():
        feature = next(ft for k, ft in features.items() if k.startswith("observation.images.")
                       and k.rsplit(".", 1)[-1] == name)
        size = _image_size(feature)
        if size is not None and size != (h, w):
            raise UserError(f"camera '{name}' of {root} is {size[0]}x{size[1]} (HxW); the policy was trained on "
                            f"{h}x{w} images")
    for label, key, dim in (("state", "observation.state", runner.spec.state_dim),
                            ("environment state", "observation.environment_state", runner.spec.env_state_dim)):
        if dim is None:
            continue
        if key not in features:
            raise UserError(f"the policy needs a {dim}-D {label} ({key}), but {root} has none")
        shape = features[key].get("shape")
        if isinstance(shape, list) and len(shape) == 1 and int(shape[0]) != dim:
            raise UserError(f"{key} of {root} has {shape[0]} values; the policy takes {dim}")


def _image_size(feature: dict[str, Any]) -> tuple[int, int] | None:
    """(H, W) of an image feature of info.json, when its shape and names say which axes they are."""
    shape, axes = feature.get("shape"), feature.get("names")
    if not isinstance(shape, list) or len(shape) != 3:
        return None
    if isinstance(axes, list) and "height" in axes and "width" in axes:
        return int(shape[axes.index("height")]), int(shape[axes.index("width")])
    if shape[2] in (1, 3, 4) and shape[0] not in (1, 3, 4):
        return int(shape[0]), int(shape[1])  # H, W, C
    if shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4):
        return int(shape[1]), int(shape[2])  # C, H, W
    return None


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
    check_dataset_fits(runner, info, root)
    runner.reset()
    frames = iter_episode(root, episode, info, frame_stride)
    length = episode_length(info, root, episode)
    total = None if length is None else -(-length // frame_stride)
    for frame in tqdm(frames, total=total, desc=desc or f"episode {episode}",
                      unit="frame", disable=not progress, leave=False):
        obs = Observation(frame.images, frame.state, frame.env_state)
        if transform is not None:
            obs = transform(frame, obs)
        try:
            result = runner.step(obs)
        except PolicyOutputError as exc:  # say where: a dataset pass has no later tick to recover on
            raise PolicyOutputError(f"episode {episode}, frame {frame.frame_index}: {exc}") from None
        yield frame, result
