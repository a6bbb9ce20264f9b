"""Open a LeRobotDataset v3.0 from disk and walk an episode frame by frame, with clear errors."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pai_ros.data.video import video_backend
from pai_ros.errors import UserError
from pai_ros.jsonfile import read_json
from pai_ros.require import require
from pai_ros.wording import listed

SUPPORTED_VERSION = "v3.0"
# LeRobotDataset v3.0's file layout, for info.json files that do not spell it out.
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"


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


def episode_stem(episode: int) -> str:
    """The name of an episode's files and folders in pai's per-episode outputs: ``episode_000007``
    (the zero-padded name LeRobot gives an episode's files)."""
    return f"episode_{episode:06d}"


def _cached_id_hint(root: Path) -> str:
    """For a missing ``org/name`` that is a hub dataset cached here: the option that reads ids."""
    from pai_ros.hub import is_repo_id, resolve_dataset

    text = str(root)
    if not is_repo_id(text):
        return ""
    try:
        resolve_dataset(text)
    except UserError:
        return ""
    return f" here, but '{text}' is a hub dataset cached on this machine: give it as --dataset-repo-id {text} " \
           "(the replay node's dataset_repo_id)"


def _nearby_datasets_hint(root: Path, most: int = 3) -> str:
    """A root one level off: the dataset's own meta/ folder, or a folder holding datasets (one or two
    levels down, as LeRobot's cache keeps ``org/name``)."""
    if root.name == "meta" and (root / "info.json").is_file():
        return f"; it is the meta/ folder of the dataset {root.parent}: give that"
    found = [p.parent.parent for pattern in ("*/meta/info.json", "*/*/meta/info.json")
             for p in itertools.islice(root.glob(pattern), 50)]
    if not found:
        return ""
    return f"; it holds {len(found)} dataset(s): {listed(sorted(map(str, found)), most=most)}; give one of them"


def read_info(root: Path) -> dict[str, Any]:
    info_path = root / "meta" / "info.json"
    if not root.exists():
        raise UserError(f"dataset root {root} does not exist{_cached_id_hint(root)}")
    if not root.is_dir():
        raise UserError(f"dataset root {root} is a file; give the dataset's directory (the one holding meta/)")
    if not info_path.is_file():
        raise UserError(f"{root} is not a LeRobot dataset: no meta/info.json{_nearby_datasets_hint(root)}")
    info = read_json(info_path, "LeRobot info.json", want_object=True)
    version = info.get("codebase_version")
    if version != SUPPORTED_VERSION:
        raise UserError(f"{root} is a LeRobotDataset {version}; pai_ros reads {SUPPORTED_VERSION} "
                        "(convert it with LeRobot's dataset conversion script)")
    missing = [key for key in ("features", "fps", "total_episodes") if key not in info]
    if missing or not isinstance(info.get("features"), dict):
        raise UserError(f"{info_path} lacks {', '.join(missing) or 'a features mapping'}: not a complete "
                        "LeRobotDataset v3.0 info.json")
    # Every reader divides by it (replay timer, frame timestamps): here, not a ZeroDivisionError there.
    require(f"fps in {info_path}", info["fps"], above=0)
    return info


def check_episodes(info: dict[str, Any], episodes: list[int], root: Path) -> None:
    """Episodes in range, and their files on disk (LeRobot would otherwise try to download them)."""
    total = int(info.get("total_episodes", 0))
    for e in episodes:
        if not 0 <= e < total:
            raise UserError(f"episode {e} is out of range: {root} has {total} episodes (0-{total - 1})")
    check_episode_files(info, episodes, root)


def check_episode_files(info: dict[str, Any], episodes: list[int], root: Path) -> None:
    """Every file LeRobotDataset reads for ``episodes`` exists under ``root``.

    LeRobot downloads only the episodes it is asked for, so a dataset directory can be partial;
    for missing files LeRobotDataset would create folders in ``root`` and go to the network.
    """
    import pyarrow.parquet as pq

    for rel in ("meta/tasks.parquet", "meta/episodes"):
        if not (root / rel).exists():
            raise UserError(f"{root} is an incomplete LeRobot dataset: {rel} is missing{_download_hint(root)}")
    video_keys = [k for k, ft in info.get("features", {}).items() if ft.get("dtype") == "video"]
    wanted = set(episodes)
    data_path, video_path = info.get("data_path", DATA_PATH), info.get("video_path", VIDEO_PATH)

    def files_of(row: dict[str, Any]) -> list[str] | None:
        """The files an episode's metadata row names (None: the row is damaged)."""
        try:
            needed = [data_path.format(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"])]
            return needed + [video_path.format(video_key=k, chunk_index=row[f"videos/{k}/chunk_index"],
                                               file_index=row[f"videos/{k}/file_index"]) for k in video_keys]
        except (KeyError, IndexError, TypeError, ValueError):
            return None

    # Every episode's rows (a refusal names the complete episodes), with the file that holds them.
    rows: dict[int, list[tuple[Path, dict[str, Any]]]] = {}
    for f in sorted((root / "meta" / "episodes").rglob("*.parquet")):
        columns = ["episode_index", "data/chunk_index", "data/file_index"]
        columns += [f"videos/{k}/{c}" for k in video_keys for c in ("chunk_index", "file_index")]
        try:
            table = pq.read_table(f, columns=columns).to_pylist()
        except Exception as exc:  # a missing column or a damaged file: either way not readable
            raise UserError(f"{f} is not LeRobotDataset v3.0 episode metadata ({str(exc).splitlines()[0]})") from None
        for row in table:
            index = row["episode_index"]
            if isinstance(index, float) and index.is_integer():  # a float column, as an older writer may leave
                index = int(index)
            if isinstance(index, int) and not isinstance(index, bool):
                rows.setdefault(index, []).append((f, row))
    present: dict[str, bool] = {}  # episodes share files: each is looked up once

    def exists(rel: str) -> bool:
        if rel not in present:
            present[rel] = (root / rel).is_file()
        return present[rel]

    def files(e: int) -> list[str] | None:
        found = [files_of(row) for _, row in rows[e]]
        return None if any(names is None for names in found) else [rel for names in found for rel in names or []]

    def complete(e: int) -> bool:
        needed = files(e)
        return needed is not None and all(exists(rel) for rel in needed)

    checked: set[str] = set()  # data files whose footer was read
    for e in sorted(wanted & rows.keys()):
        needed = files(e)
        if needed is None:
            where = next(f for f, row in rows[e] if files_of(row) is None)
            raise UserError(f"{where} has a damaged entry for episode {e} (its file indices cannot be read)")
        missing = [rel for rel in needed if not exists(rel)]
        if missing:
            raise UserError(f"{root} is incomplete: episode {e} needs {missing[0]}, which is missing"
                            f"{_complete_episodes(list(rows), complete)}{_download_hint(root)}")
        _check_parquet_footer(root, needed[0], e, checked)
    if wanted - rows.keys():
        raise UserError(f"{root} is incomplete: meta/episodes has no entry for episode(s) "
                        f"{', '.join(map(str, sorted(wanted - rows.keys())))}"
                        f"{_complete_episodes(list(rows), complete)}{_download_hint(root)}")


def _complete_episodes(episodes: list[int], complete: Callable[[int], bool]) -> str:
    """Which episodes can be read instead (a partial download holds only those it was asked for)."""
    here = [e for e in episodes if complete(e)]
    if not here:
        return "; no episode has all its files here"
    return f"; the episodes whose files are all here: {episode_ranges(here, most_runs=8)}"


def _check_parquet_footer(root: Path, rel: str, episode: int, checked: set[str]) -> None:
    """A truncated or overwritten data file, named, before LeRobot's reader fails on it with a traceback.

    Reading the footer costs one small read; a file damaged in its middle is caught later, while
    frames are read (:func:`_damage_is_one_line`).
    """
    import pyarrow.parquet as pq

    if rel in checked:
        return
    try:
        pq.read_metadata(root / rel)
    except Exception as exc:  # noqa: BLE001 - pyarrow's error types vary; any failure means unreadable
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{root} is damaged: episode {episode}'s {rel} is not a readable Parquet file "
                        f"({reason}); download or copy it again") from None
    checked.add(rel)


def _download_hint(root: Path) -> str:
    from pai_ros.hub import dataset_download_command, dataset_repo_of

    repo_id = dataset_repo_of(root)
    return f"; download the whole dataset with: {dataset_download_command(repo_id)}" if repo_id else ""


def camera_names(info: dict[str, Any]) -> list[str]:
    return [k.rsplit(".", 1)[-1] for k, ft in info["features"].items()
            if k.startswith("observation.images.") and ft.get("dtype") in ("video", "image")]


def value_names(feature: dict[str, Any] | None, prefix: str) -> list[str]:
    """The names of a vector feature's values (``observation.state``, ``action``) as info.json gives
    them, or ``<prefix>_<i>`` when it gives none that fit (none, or another count); [] without the feature."""
    if not feature:
        return []
    names = feature.get("names")
    if isinstance(names, dict):  # some datasets nest names per axis: {"motors": [...]}
        names = next(iter(names.values()), None)
    size = int(np.prod(feature["shape"]))
    if isinstance(names, list) and len(names) == size and all(isinstance(n, str) for n in names):
        return names
    return [f"{prefix}_{i}" for i in range(size)]


def episode_ranges(episodes: list[int], most_runs: int | None = None) -> str:
    """Episode numbers as a reader scans them: ``[0, 1, 2, 3, 7, 9, 10]`` -> ``"0-3, 7, 9-10"``;
    beyond ``most_runs`` runs, the first ones and the count (a scattered list would fill the screen)."""
    runs: list[list[int]] = []
    for e in sorted(set(episodes)):
        if runs and e == runs[-1][1] + 1:
            runs[-1][1] = e
        else:
            runs.append([e, e])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs[:most_runs])
    if most_runs is not None and len(runs) > most_runs:
        text += f", ... ({len(set(episodes))} episodes in all)"
    return text


def pick_evenly(count: int, most: int) -> list[int]:
    """Up to ``most`` of the positions ``0..count-1``, evenly spaced, first and last included (all of
    them when there are no more than ``most``): how a subsample still spans what it stands for."""
    if count <= most:
        return list(range(count))
    return [int(i) for i in np.linspace(0, count - 1, most).round().astype(int)] if most > 0 else []


def iter_picked_frames(root: Path, episodes: list[int], picked: set[tuple[int, int]],
                       info: dict[str, Any] | None = None,
                       rename: Mapping[str, str] | None = None) -> Iterator[DatasetFrame]:
    """The frames ``picked`` (``(episode, frame_index)`` pairs) of ``episodes``, in that order."""
    info = info or read_info(root)
    for episode in episodes:
        if any(e == episode for e, _ in picked):
            yield from (frame for frame in iter_episode(root, episode, info, rename=rename)
                        if (episode, frame.frame_index) in picked)


def _to_uint8_hwc(chw: torch.Tensor) -> np.ndarray:
    # LeRobot decodes to float CHW in [0, 1] (uint8 / 255): this is the exact inverse.
    return (chw.permute(1, 2, 0) * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()


def iter_episode(root: Path, episode: int, info: dict[str, Any] | None = None,
                 frame_stride: int = 1, rename: Mapping[str, str] | None = None) -> Iterator[DatasetFrame]:
    """Frames of one episode in order, images as uint8 RGB (decoded once each).

    ``frame_stride``: only frames whose index is a multiple of it; the others are never decoded
    (LeRobot decodes each frame's video on its own, so a skipped frame costs nothing).
    ``rename``: dataset camera -> the name the frame's images carry (a policy's; see camera_rename).
    """
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    require("frame_stride", frame_stride, at_least=1, error=ValueError)
    info = info or read_info(root)
    check_episodes(info, [episode], root)
    with _damage_is_one_line(root, episode):
        ds = LeRobotDataset(repo_id=f"local/{root.name}", root=root, episodes=[episode],
                            video_backend=video_backend())
    cams, names = camera_names(info), rename or {}
    numeric = [k for k, ft in info["features"].items() if ft.get("dtype") in ("float32", "float64")
               and k not in ("observation.state", "observation.environment_state", "action", "timestamp")]
    # The index columns alone (no video): which rows are this episode's frames to yield.
    index = ds.hf_dataset.with_format(None).select_columns(["episode_index", "frame_index"])
    for i, row in zip(range(len(ds)), index):
        if int(row["episode_index"]) != episode or int(row["frame_index"]) % frame_stride:
            continue
        with _damage_is_one_line(root, episode, int(row["frame_index"])):
            item = ds[i]
        yield DatasetFrame(
            episode_index=episode,
            frame_index=int(item["frame_index"]),
            timestamp=float(item["timestamp"]),
            images={names.get(c, c): _to_uint8_hwc(item[f"observation.images.{c}"]) for c in cams},
            state=item["observation.state"].numpy() if "observation.state" in item else None,
            env_state=item["observation.environment_state"].numpy() if "observation.environment_state" in item else None,
            action=item["action"].numpy() if "action" in item else None,
            extras={k: item[k].numpy() for k in numeric if k in item},
        )


@contextmanager
def _damage_is_one_line(root: Path, episode: int, frame: int | None = None) -> Iterator[None]:
    """Files present (checked before) but unreadable: a truncated Parquet table or video, garbage bytes.

    LeRobot, datasets and the video decoder each raise their own types with long tracebacks; the
    user needs to know which dataset and episode, and that its files are damaged.
    """
    try:
        yield
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader's failure on files that exist means damage
        where = f"episode {episode}" + (f", frame {frame}" if frame is not None else "")
        cause = exc
        while (cause.__cause__ or cause.__context__) is not None:  # datasets wraps the reader's own error
            cause = cause.__cause__ or cause.__context__
        reason = str(cause).strip().splitlines()[0].rstrip(".") if str(cause).strip() else ""
        raise UserError(f"{root} is damaged ({where}): {type(cause).__name__}: {reason}; check or download "
                        "its data/ and videos/ files again") from None


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
        every = list(range(int(info.get("total_episodes", 0))))
        check_episode_files(info, every, root)
        return every
    check_episodes(info, episodes, root)
    return list(dict.fromkeys(episodes))
