"""Write the synthetic reaching task as a LeRobotDataset v3.0, with LeRobot's own writer.

Besides the usual ``observation.images.*``, ``observation.state`` and ``action``, every frame
carries ``annotation.target_px.front`` and ``annotation.target_px.wrist``: the target block's
centre in (u, v) pixels of each camera (``(-1, -1)`` when out of view). Their keys start with
neither ``observation`` nor ``action``, so LeRobot never feeds them to a policy; they are the
ground truth that attention maps are checked against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pai_ros.data.writing import quiet_hf_datasets
from pai_ros.media.video import quiet_ffmpeg
from pai_ros.sim.scene import STATE_NAMES, SceneConfig, rollout, sample_episode

TASK = "Move the gripper to the red block and close it."
CAMERAS = ("front", "wrist")
TARGET_KEYS = {cam: f"annotation.target_px.{cam}" for cam in CAMERAS}
ROBOT_TYPE = "pai_planar_reacher"


def dataset_features(cfg: SceneConfig) -> dict[str, dict]:
    """LeRobot feature spec of the demo dataset."""
    hw = {"front": cfg.front_hw, "wrist": cfg.wrist_hw}
    features: dict[str, dict] = {
        f"observation.images.{cam}": {
            "dtype": "video", "shape": (hw[cam][0], hw[cam][1], 3), "names": ["height", "width", "channels"],
        }
        for cam in CAMERAS
    }
    features["observation.state"] = {"dtype": "float32", "shape": (len(STATE_NAMES),), "names": list(STATE_NAMES)}
    features["action"] = {"dtype": "float32", "shape": (len(STATE_NAMES),), "names": list(STATE_NAMES)}
    for cam, key in TARGET_KEYS.items():
        features[key] = {"dtype": "float32", "shape": (2,), "names": ["u", "v"]}
    return features


@dataclass(frozen=True)
class DatasetSpec:
    repo_id: str
    num_episodes: int
    seed: int


def write_dataset(root: Path, spec: DatasetSpec, cfg: SceneConfig, *, vcodec: str = "h264",
                  progress: bool = True) -> int:
    """Render ``spec.num_episodes`` expert episodes into a new dataset at ``root``; the number of frames written.

    ``root`` must not exist yet (LeRobot refuses to overwrite). H.264 keeps decoding cheap on a
    CPU and plays in any browser.
    """
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    quiet_ffmpeg()  # FFmpeg's per-file chatter is not for the user, nor `datasets`' bars
    with quiet_hf_datasets():
        rng = np.random.default_rng(spec.seed)
        written = 0
        ds = LeRobotDataset.create(
            repo_id=spec.repo_id, fps=cfg.fps, features=dataset_features(cfg), root=root,
            robot_type=ROBOT_TYPE, use_videos=True, vcodec=vcodec,
        )
        for _ in tqdm(range(spec.num_episodes), desc=f"rendering {spec.repo_id}", unit="episode",
                      disable=not progress):
            episode = sample_episode(rng, cfg)
            for frame in rollout(episode, rng, cfg):
                ds.add_frame({
                    "observation.images.front": frame.front,
                    "observation.images.wrist": frame.wrist,
                    "observation.state": frame.state,
                    "action": frame.action,
                    TARGET_KEYS["front"]: frame.target_front_px,
                    TARGET_KEYS["wrist"]: frame.target_wrist_px,
                    "task": TASK,
                })
                written += 1
            ds.save_episode()
        ds.finalize()
    return written
