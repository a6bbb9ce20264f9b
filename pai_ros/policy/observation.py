"""Raw observations (what cameras and joints give) -> the batch a LeRobot policy expects.

Images arrive as ``H x W x 3`` uint8 RGB arrays, one per camera name; the state as a float
vector. Everything is validated first: a robot must never act on a malformed observation, so
every problem is an :class:`ObservationError` that names it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from pai_ros.policy.errors import ObservationError


@dataclass
class Observation:
    images: dict[str, np.ndarray]  # camera name -> H x W x 3 uint8 RGB
    state: np.ndarray | None = None  # robot state vector
    env_state: np.ndarray | None = None
    extra: dict = field(default_factory=dict)  # anything the caller wants to carry along (stamps...)


@dataclass(frozen=True)
class ObservationSpec:
    """What the policy needs, read from its config."""

    cameras: dict[str, tuple[str, int, int]]  # name -> (feature key, H, W)
    state_dim: int | None
    env_state_dim: int | None

    @classmethod
    def from_config(cls, cfg) -> ObservationSpec:
        cams = {}
        for key, feat in cfg.image_features.items():
            _, h, w = feat.shape
            cams[key.rsplit(".", 1)[-1]] = (key, int(h), int(w))
        state = cfg.robot_state_feature.shape[0] if cfg.robot_state_feature is not None else None
        env = cfg.env_state_feature.shape[0] if cfg.env_state_feature is not None else None
        return cls(cams, state, env)

    def validate(self, obs: Observation) -> None:
        for name, (_, h, w) in self.cameras.items():
            if name not in obs.images:
                raise ObservationError(f"camera '{name}' is missing from the observation "
                                       f"(have: {', '.join(sorted(obs.images)) or 'none'})")
            img = obs.images[name]
            if not isinstance(img, np.ndarray):
                raise ObservationError(f"camera '{name}': expected a numpy array, got {type(img).__name__}")
            if img.dtype != np.uint8:
                raise ObservationError(f"camera '{name}': expected uint8 RGB, got dtype {img.dtype}")
            if img.ndim != 3 or img.shape[2] != 3:
                raise ObservationError(f"camera '{name}': expected an HxWx3 RGB image, got shape {img.shape}")
            if img.shape[:2] != (h, w):
                raise ObservationError(f"camera '{name}': the policy was trained on {h}x{w} images (HxW), the "
                                       f"input is {img.shape[0]}x{img.shape[1]}")
        for label, vec, dim in (("state", obs.state, self.state_dim), ("environment state", obs.env_state,
                                                                        self.env_state_dim)):
            if dim is None:
                continue
            if vec is None:
                raise ObservationError(f"the policy needs a {dim}-D {label}, none was given")
            arr = np.asarray(vec)
            if arr.shape != (dim,):
                raise ObservationError(f"{label}: the policy takes {dim} values, the input has shape {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ObservationError(f"{label} contains NaN or inf: {arr.tolist()}")

    def to_batch(self, obs: Observation, device: str) -> dict[str, torch.Tensor]:
        """Unbatched policy inputs: images float32 CHW in [0, 1], state float32 (validated first)."""
        self.validate(obs)
        batch: dict[str, torch.Tensor] = {}
        for name, (key, _, _) in self.cameras.items():
            # Move uint8 to the device first (4x less to transfer), convert there.
            t = torch.from_numpy(np.ascontiguousarray(obs.images[name])).to(device, non_blocking=True)
            batch[key] = t.permute(2, 0, 1).float().div_(255.0)
        if self.state_dim is not None:
            batch["observation.state"] = torch.as_tensor(np.asarray(obs.state, dtype=np.float32), device=device)
        if self.env_state_dim is not None:
            batch["observation.environment_state"] = torch.as_tensor(
                np.asarray(obs.env_state, dtype=np.float32), device=device)
        return batch
