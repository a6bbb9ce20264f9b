"""Run a policy over recorded episodes, one control tick per frame, as it would run live."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pai_ros.data.camera_rename import as_argument, check_distinct, describe, renamed, source_of
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


def use_camera_rename(runner: PolicyRunner, given: dict[str, str] | None, info: dict[str, Any] | None = None,
                      note: Callable[[str], None] | None = print) -> dict[str, str]:
    """Read datasets with the checkpoint's own camera rename, ``given`` (``--rename-map``) over it.

    A camera ``given`` maps replaces the checkpoint's entry for the same dataset camera or the same
    policy camera: ``top=front`` means front now comes from top, whatever it came from before.
    With the dataset's ``info``, ``note`` hears it when the checkpoint's map renames one of its
    cameras (the user did not write that); returns the rename in force for it (see camera_rename_for).
    """
    if given:
        kept = {s: t for s, t in runner.camera_rename.items() if s not in given and t not in given.values()}
        runner.camera_rename = {**kept, **given}
    if info is None:
        return dict(runner.camera_rename)
    in_force = camera_rename_for(runner, info)
    saved = {s: t for s, t in in_force.items() if s not in (given or {})}
    if saved and note is not None:
        note(f"note: the dataset's cameras are read as the checkpoint's rename map says ({describe(saved)}); "
             "--rename-map changes that")
    return in_force


def camera_rename_for(runner: PolicyRunner, info: dict[str, Any]) -> dict[str, str]:
    """The runner's camera rename for one dataset: the entries for cameras it has (what outputs record).

    Entries for cameras a dataset lacks do nothing: the checkpoint's map names its training data's
    cameras, and another dataset may already use the policy's names.
    """
    names = camera_names(info)
    # A camera read under its own name (``top=top``, given to undo a checkpoint's entry) is no rename.
    return {s: t for s, t in runner.camera_rename.items() if s in names and s != t}


def check_dataset_fits(runner: PolicyRunner, info: dict[str, Any], root: Path) -> None:
    """Refuse a dataset whose cameras, image sizes or state widths the policy cannot take.

    From ``meta/info.json`` alone, before any frame is decoded: otherwise the first frame says it,
    which for a second dataset (a calibration's state fit) comes after the whole first pass.
    Sizes are compared only where the feature's shape says unambiguously which axis is which.
    Cameras are compared after the runner's rename (``--rename-map``, or the checkpoint's own).
    """
    dataset_names = camera_names(info)
    rename = camera_rename_for(runner, info)
    check_distinct(rename, dataset_names, str(root))
    names = renamed(dataset_names, rename)
    missing = [c for c in runner.spec.cameras if c not in names]
    if missing:
        unused = [n for n, after in zip(dataset_names, names) if after not in runner.spec.cameras]
        first = missing[0]
        if first in rename:  # the dataset has it, but the map (given or the checkpoint's) reads it as another
            hint = f"the rename map reads {first} as {rename[first]} (--rename-map {first}={first} keeps its name)"
        elif unused:  # the whole map to give: a new --rename-map replaces the one given before
            hint = f"to feed it another camera give --rename-map {as_argument({**rename, unused[0]: first})}"
        else:
            hint = "to feed it another camera give --rename-map DATASET_CAMERA=POLICY_CAMERA"
        mapped = f" (renamed: {describe(rename)})" if rename else ""
        raise UserError(f"the policy needs camera(s) {', '.join(missing)}, but {root} has {', '.join(names) or 'none'}"
                        f"{mapped}; {hint}")
    try:
        _check_shapes(runner, info["features"], root, rename)
    except (AttributeError, IndexError, TypeError, ValueError) as exc:  # a hand-edited info.json
        raise UserError(f"{root / 'meta' / 'info.json'} is damaged: its features' shapes cannot be read "
                        f"({type(exc).__name__}: {exc})") from None


def _check_shapes(runner: PolicyRunner, features: dict[str, Any], root: Path, rename: dict[str, str]) -> None:
    for name, (_, h, w) in runner.spec.cameras.items():
        source = source_of(name, rename)
        feature = next(ft for k, ft in features.items() if k.startswith("observation.images.")
                       and k.rsplit(".", 1)[-1] == source)
        size = _image_size(feature)
        if size is not None and size != (h, w):
            called = f"camera '{source}' (read as '{name}')" if source != name else f"camera '{name}'"
            raise UserError(f"{called} of {root} is {size[0]}x{size[1]} (HxW); the policy was trained on "
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
    frames = iter_episode(root, episode, info, frame_stride, rename=runner.camera_rename)
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
