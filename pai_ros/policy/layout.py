"""Which encoder token is which: the source-token layout of one ACT forward pass.

ACT's encoder reads ``[latent, (robot state), (env state), cam_0 cells, cam_1 cells, ...]``,
each camera's ``h x w`` feature-map cells flattened row-major, cameras in
``config.image_features`` order. The 1-D part comes from the config; the grid of every camera
comes from the backbone output shapes observed in the same forward pass, so any image size,
per-camera sizes and a dilated final stride are handled without a formula or a second
backbone run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

LATENT, STATE, ENV_STATE, CAMERA = "latent", "state", "env_state", "camera"


@dataclass(frozen=True)
class CameraTokens:
    name: str  # e.g. "front" (the key without "observation.images.")
    key: str  # e.g. "observation.images.front"
    grid_h: int
    grid_w: int
    offset: int  # index of the camera's first token in the encoder sequence

    @property
    def count(self) -> int:
        return self.grid_h * self.grid_w

    @property
    def slice(self) -> slice:
        return slice(self.offset, self.offset + self.count)


@dataclass(frozen=True)
class TokenLayout:
    has_state: bool
    has_env_state: bool
    cameras: tuple[CameraTokens, ...]

    @classmethod
    def build(cls, has_state: bool, has_env_state: bool, camera_keys: list[str],
              grids: list[tuple[int, int]]) -> TokenLayout:
        if len(camera_keys) != len(grids):
            raise RuntimeError(f"saw {len(grids)} backbone outputs for {len(camera_keys)} cameras")
        offset = 1 + int(has_state) + int(has_env_state)
        cams = []
        for key, (h, w) in zip(camera_keys, grids):
            cams.append(CameraTokens(key.rsplit(".", 1)[-1], key, int(h), int(w), offset))
            offset += h * w
        return cls(has_state, has_env_state, tuple(cams))

    @property
    def num_1d(self) -> int:
        return 1 + int(self.has_state) + int(self.has_env_state)

    @property
    def num_tokens(self) -> int:
        return self.num_1d + sum(c.count for c in self.cameras)

    @property
    def state_index(self) -> int | None:
        return 1 if self.has_state else None

    @property
    def env_state_index(self) -> int | None:
        return 1 + int(self.has_state) if self.has_env_state else None

    def to_json(self) -> dict[str, Any]:
        """The layout as collections and feature recordings store it (``collect.json``, ``record.json``)."""
        return {"has_state": self.has_state, "has_env_state": self.has_env_state, "num_tokens": self.num_tokens,
                "cameras": [{"name": c.name, "key": c.key, "grid_h": c.grid_h, "grid_w": c.grid_w,
                             "offset": c.offset} for c in self.cameras]}

    def camera(self, name: str) -> CameraTokens:
        for cam in self.cameras:
            if cam.name == name or cam.key == name:
                return cam
        raise KeyError(f"no camera '{name}' (cameras: {', '.join(c.name for c in self.cameras)})")

    def describe(self, index: int) -> dict:
        """What token ``index`` is: kind, and camera/row/col for image tokens."""
        if not 0 <= index < self.num_tokens:
            raise IndexError(f"token {index} out of range [0, {self.num_tokens})")
        if index == 0:
            return {"kind": LATENT}
        if index == self.state_index:
            return {"kind": STATE}
        if index == self.env_state_index:
            return {"kind": ENV_STATE}
        for cam in self.cameras:
            if cam.offset <= index < cam.offset + cam.count:
                r, c = divmod(index - cam.offset, cam.grid_w)
                return {"kind": CAMERA, "camera": cam.name, "row": r, "col": c}
        raise AssertionError("unreachable")

    def token_table(self) -> dict[str, np.ndarray]:
        """Per-token metadata as columns: kind, camera index (-1 for 1-D tokens), row, col."""
        n = self.num_tokens
        kind = np.empty(n, dtype=object)
        cam_idx = np.full(n, -1, dtype=np.int16)
        row = np.full(n, -1, dtype=np.int16)
        col = np.full(n, -1, dtype=np.int16)
        kind[0] = LATENT
        if self.state_index is not None:
            kind[self.state_index] = STATE
        if self.env_state_index is not None:
            kind[self.env_state_index] = ENV_STATE
        for ci, cam in enumerate(self.cameras):
            kind[cam.slice] = CAMERA
            cam_idx[cam.slice] = ci
            rr, cc = np.divmod(np.arange(cam.count), cam.grid_w)
            row[cam.slice], col[cam.slice] = rr, cc
        return {"kind": kind, "camera_index": cam_idx, "row": row, "col": col}

    def split(self, weights: np.ndarray) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """Split a per-token weight vector ``[S]`` into shares and per-camera grids.

        Shares are the mass on each token type (latent, state, env_state, each camera) divided
        by the total mass; grids keep the raw values, shaped ``(grid_h, grid_w)``.
        """
        if weights.shape != (self.num_tokens,):
            raise ValueError(f"expected {self.num_tokens} token weights, got shape {weights.shape}")
        total = float(weights.sum())
        denom = total if total != 0 else 1.0
        shares = {LATENT: float(weights[0]) / denom}
        if self.state_index is not None:
            shares[STATE] = float(weights[self.state_index]) / denom
        if self.env_state_index is not None:
            shares[ENV_STATE] = float(weights[self.env_state_index]) / denom
        grids = {}
        for cam in self.cameras:
            block = weights[cam.slice]
            shares[cam.name] = float(block.sum()) / denom
            grids[cam.name] = block.reshape(cam.grid_h, cam.grid_w)
        return shares, grids
