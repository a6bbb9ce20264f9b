"""Where a LeRobotDataset comes from: a directory, or a hub id found in the local caches.

Light on purpose (argparse and pathlib only): the ``pai`` subcommands add these options at
parse time, when nothing heavy may be imported.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pai_ros.data.camera_rename import parse_rename_map
from pai_ros.errors import UserError
from pai_ros.path_args import expand_home, input_path


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dataset-root D`` or ``--dataset-repo-id ORG/NAME`` (exactly one), and ``--rename-map``."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--dataset-root", type=input_path, metavar="D",
                       help="LeRobotDataset v3.0 directory (has meta/info.json)")
    group.add_argument("--dataset-repo-id", metavar="ORG/NAME",
                       help="hub dataset id, read from this machine only: LeRobot's HF_LEROBOT_HOME/ORG/NAME, "
                            "else the Hugging Face cache (nothing is downloaded)")
    parser.add_argument("--rename-map", type=parse_rename_map, metavar="MAP",
                        help="read a dataset camera as a policy camera of another name: DATASET=POLICY[,...] "
                             "(top=front) or lerobot-train's JSON rename_map "
                             "('{\"observation.images.top\": \"observation.images.front\"}'); default: the "
                             "checkpoint's own rename_map, where the dataset has those cameras")


def resolve_dataset_root(root: str | Path | None, repo_id: str | None) -> Path:
    """The dataset directory that ``root`` names, or where hub dataset ``repo_id`` lies locally."""
    if root and repo_id:
        raise UserError("give a dataset directory or a hub dataset id, not both")
    if root:
        return expand_home(root)
    if repo_id:
        from pai_ros.hub import resolve_dataset

        try:
            return resolve_dataset(repo_id)
        except UserError:
            if not expand_home(repo_id).is_dir():
                raise
        # A directory given as an id: ids are looked up in the hub caches only, so say which option reads it.
        raise UserError(f"'{repo_id}' is a directory here, not a hub dataset id that is cached: give it as the "
                        "dataset root (--dataset-root, or the replay node's dataset_root)")
    raise UserError("no dataset given: pass a LeRobotDataset v3.0 directory or a hub dataset id")
