"""Which dataset camera feeds which policy camera: LeRobot's ``rename_map``, for images.

A policy trained on cameras ``front, wrist`` is often run on a dataset recorded later whose cameras
are named otherwise (``top, wrist``), or was trained with ``lerobot-train --rename_map`` and so
names its cameras differently from its own training data. LeRobot's map goes from the data's key to
the policy's (``{"observation.images.top": "observation.images.front"}``); here it is kept in that
direction with short camera names (``{"top": "front"}``), applied to each frame as it is read.

Light on purpose (json and argparse only): ``--rename-map`` is parsed at the command line.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

IMAGE_PREFIX = "observation.images."

CameraRename = dict[str, str]  # dataset camera name -> policy camera name


def parse_rename_map(text: str) -> CameraRename:
    """``--rename-map``: LeRobot's JSON object, or ``top=front,side=wrist`` (dataset=policy).

    Keys may be full (``observation.images.top``) or short (``top``); only camera keys can be
    renamed, since the dataset's state and action are read by their LeRobot names.
    """
    text = text.strip()
    if text.startswith("{"):
        try:
            pairs = json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"not a JSON object ({exc.msg} at character {exc.pos})") from None
        if not isinstance(pairs, dict) or not all(isinstance(v, str) for v in pairs.values()):
            raise argparse.ArgumentTypeError("a JSON rename map maps names to names: "
                                             '{"observation.images.top": "observation.images.front"}')
        items = list(pairs.items())
    else:
        items = []
        for entry in filter(None, (e.strip() for e in text.split(","))):
            source, sep, target = entry.partition("=")
            if not sep:
                raise argparse.ArgumentTypeError(f"'{entry}' is not DATASET_CAMERA=POLICY_CAMERA (e.g. top=front)")
            items.append((source, target))
    rename = {_camera(source): _camera(target) for source, target in items}
    if not rename:
        raise argparse.ArgumentTypeError("an empty rename map; give DATASET_CAMERA=POLICY_CAMERA (e.g. top=front)")
    if len(rename) != len(items):
        raise argparse.ArgumentTypeError("a dataset camera is named twice")
    return rename


def _camera(key: str) -> str:
    key = key.strip()
    name = key[len(IMAGE_PREFIX):] if key.startswith(IMAGE_PREFIX) else key
    if not name or "." in name or "/" in name:
        raise argparse.ArgumentTypeError(f"'{key}' is not a camera name ({IMAGE_PREFIX}NAME or NAME); only "
                                         "cameras can be renamed")
    return name


def cameras_of(rename_map: Mapping[str, Any]) -> CameraRename:
    """The camera entries of a LeRobot ``rename_map`` (full keys), as short names; the rest left out."""
    return {k[len(IMAGE_PREFIX):]: v[len(IMAGE_PREFIX):] for k, v in rename_map.items()
            if isinstance(k, str) and isinstance(v, str) and k.startswith(IMAGE_PREFIX) and v.startswith(IMAGE_PREFIX)}


def renamed(names: list[str], rename: Mapping[str, str] | None) -> list[str]:
    """Dataset camera names as the policy calls them."""
    return [rename.get(n, n) for n in names] if rename else list(names)


def source_of(camera: str, rename: Mapping[str, str] | None) -> str:
    """The dataset camera that policy camera ``camera`` is read from."""
    for source, target in (rename or {}).items():
        if target == camera:
            return source
    return camera


def describe(rename: Mapping[str, str]) -> str:
    """``top -> front, side -> wrist`` (``none`` for no map): for notes and summaries."""
    return ", ".join(f"{s} -> {t}" for s, t in rename.items()) or "none"


def as_argument(rename: Mapping[str, str]) -> str:
    """``top=front,side=wrist``: the ``--rename-map`` that gives ``rename``."""
    return ",".join(f"{s}={t}" for s, t in rename.items())


def check_distinct(rename: Mapping[str, str], dataset_cameras: list[str], where: str) -> None:
    """No two cameras of the dataset end up with one name (which of them would the policy see?)."""
    from pai_ros.errors import UserError

    after = renamed(dataset_cameras, rename)
    twice = sorted({n for n in after if after.count(n) > 1})
    if twice:
        # Keeping the renamed camera's own name resolves it (also against a checkpoint's map).
        keep = as_argument({s: s for s, t in rename.items() if t in twice})
        raise UserError(f"with the rename map ({describe(rename)}) two cameras of {where} are both called "
                        f"{', '.join(twice)}; --rename-map {keep} reads the renamed one under its own name")
