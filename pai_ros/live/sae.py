"""The SAE a live tick encodes with: loading and checking it, its OOD calibration, its files' health.

One :class:`LiveSae` is used for a whole tick; reloading builds a new one and swaps the
reference between ticks, so a tick never sees half of one SAE and half of another.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pai_ros.errors import UserError
from pai_ros.policy.layout import TokenLayout
from pai_ros.policy.runner import PolicyRunner
from pai_ros.sae.camera_state import CameraStateReading
from pai_ros.sae.frame import FrameFeatures, encode_frame
from pai_ros.sae.model import CFG_FILE, WEIGHTS_FILE, LoadedSae, check_dimensions, load_sae
from pai_ros.sae.ood import Calibration, load_calibration


@dataclass
class FeaturesOutput:
    """One tick's features, ready for a ``FeatureActivations`` message."""

    frame: FrameFeatures
    sae_id: str
    num_features: int
    threshold: float | None  # OOD threshold on the reconstruction error (None: no calibration)
    is_ood: bool  # by the per-position score when calibrated with one, else by the reconstruction error
    ood_score: float | None = None  # per-position score (None: no statistics, or they do not fit)
    ood_score_threshold: float | None = None
    # Whether the cameras agree with the joints (None: not calibrated, no state, or it does not fit).
    camera_state_score: float | None = None
    camera_state_threshold: float | None = None
    # Each camera's own score over its own threshold (empty: a calibration of one regression for all).
    camera_state_by_camera: dict[str, float] = field(default_factory=dict)

    @property
    def cameras_disagree(self) -> bool:
        """The camera-state score is over its threshold (reported beside ``is_ood``, not in it)."""
        return (self.camera_state_score is not None and self.camera_state_threshold is not None
                and self.camera_state_score > self.camera_state_threshold)

    def disagreement(self) -> str:
        """The status line's words for cameras that disagree with the joints, naming the cameras over 1."""
        named = [f"{c} {r:.3g}x" for c, r in sorted(self.camera_state_by_camera.items(), key=lambda kv: -kv[1])
                 if r > 1.0]
        return (f"cameras disagree with the joints: camera-state score {self.camera_state_score:.4g} > threshold "
                f"{self.camera_state_threshold:.4g}" + (f" ({', '.join(named)} its own threshold)" if named else ""))

    def ood_reason(self) -> str:
        """Why the tick is out of distribution, for the node's status line."""
        if self.ood_score is not None and self.ood_score_threshold is not None:
            return f"per-position OOD score {self.ood_score:.4g} > threshold {self.ood_score_threshold:.4g}"
        return (f"SAE reconstruction error {self.frame.reconstruction_error:.4g} > threshold "
                f"{self.threshold if self.threshold is not None else float('nan'):.4g}")


@dataclass
class LiveSae:
    """An SAE checked against the running policy, with its calibration and what it last saw."""

    loaded: LoadedSae
    calibration: Calibration | None
    files: dict[Path, tuple[int, int]] = field(default_factory=dict)  # file -> (mtime ns, size) when loaded
    last_error: float = float("nan")
    last_score: float = float("nan")
    # Set when the frames have another number of tokens than the per-position statistics
    # (calibrated with other camera sizes): the score is off, is_ood falls back to the error.
    score_problem: str | None = None
    last_camera_state: CameraStateReading | None = None
    camera_state_problem: str | None = None  # set when this tick's cameras or state do not fit the calibration
    last_ood: bool = False
    ood_ticks: int = 0
    encode_s: deque = field(default_factory=lambda: deque(maxlen=1000))
    # The colour scale of a feature's heatmap: its strongest activation seen so far. Offline
    # thumbnails scale by the strongest activation over the recording; live, the recording is
    # what the node has seen, so a weak firing looks weak in both, not stretched to full colour.
    feature_peaks: dict[int, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, path: str, runner: PolicyRunner, feature_heatmaps: tuple[int, ...] = ()) -> tuple[LiveSae, str | None]:
        """Load and check an SAE for ``runner``; also returns why there is no OOD flag, if there is none."""
        loaded = load_sae(path, runner.device)
        check_dimensions(runner, loaded)
        bad = [f for f in feature_heatmaps if not 0 <= f < loaded.cfg.d_sae]
        if bad:
            raise UserError(f"feature_heatmaps {bad} out of range: the SAE has {loaded.cfg.d_sae} features")
        calibration, why = load_calibration(loaded.directory, loaded.sae_id)
        files = {}
        for name in (CFG_FILE, WEIGHTS_FILE):
            st = (loaded.directory / name).stat()
            files[loaded.directory / name] = (st.st_mtime_ns, st.st_size)
        # ``why`` describes the calibration when there is one; callers want it only as the reason for none.
        return cls(loaded, calibration, files), (None if calibration is not None else why)

    @property
    def threshold(self) -> float | None:
        return self.calibration.threshold if self.calibration else None

    @property
    def score_threshold(self) -> float | None:
        cal = self.calibration
        return cal.score_threshold if cal is not None and cal.has_score else None

    @property
    def camera_state_threshold(self) -> float | None:
        cal = self.calibration
        return cal.camera_state_threshold if cal is not None and cal.camera_state is not None else None

    @property
    def num_features(self) -> int:
        return self.loaded.cfg.d_sae

    def _camera_state(self, tokens: torch.Tensor, layout: TokenLayout | None, state: np.ndarray | None,
                      encoder_input: torch.Tensor | None) -> tuple[CameraStateReading | None, str | None]:
        """This tick's camera-state reading (None without a calibration for it) and why it is off, if it is."""
        if self.camera_state_threshold is None or self.calibration is None:
            return None, None
        if layout is None or state is None:
            return None, "camera-state score off: this tick has no robot state or token layout"
        try:
            return self.calibration.camera_state_reading(tokens, layout, state, encoder_input), None
        except ValueError as exc:
            return None, f"camera-state score off: {exc} (recalibrate with this policy and cameras)"

    def encode(self, tokens: torch.Tensor, top_n: int, layout: TokenLayout | None = None,
               state: np.ndarray | None = None, encoder_input: torch.Tensor | None = None) -> FeaturesOutput:
        """Encode one forward pass's encoder tokens ``[S, d]`` and judge them against the calibration.

        ``layout``, ``state`` (the robot state the policy was given) and ``encoder_input`` (the
        encoder's input tokens ``[S, d]``) feed the camera-state score.
        """
        t0 = time.perf_counter()
        frame = encode_frame(self.loaded.sae, tokens, top_n)
        camera, camera_problem = self._camera_state(tokens, layout, state, encoder_input)
        score, score_threshold, problem = None, self.score_threshold, None
        if score_threshold is not None and self.calibration is not None:
            try:
                score = self.calibration.score(frame.token_errors)
            except ValueError as exc:
                problem = f"per-position OOD score off: {exc} (recalibrate with this policy and cameras)"
                score_threshold = None
        if score is not None and score_threshold is not None:
            is_ood = score > score_threshold
        else:
            is_ood = self.threshold is not None and frame.reconstruction_error > self.threshold
        with self._lock:
            self.encode_s.append(time.perf_counter() - t0)
            self.last_error, self.last_ood = frame.reconstruction_error, is_ood
            self.last_score = float("nan") if score is None else score
            self.score_problem = problem
            self.last_camera_state = camera
            self.camera_state_problem = camera_problem
            self.ood_ticks += int(is_ood)
        return FeaturesOutput(frame, self.loaded.sae_id, self.num_features, self.threshold, is_ood,
                              score, score_threshold, None if camera is None else camera.score,
                              None if camera is None else self.camera_state_threshold,
                              {} if camera is None else camera.by_camera)

    def feature_grids(self, frame: FrameFeatures, layout: TokenLayout, feature: int) -> dict[str, np.ndarray]:
        """Per camera, the feature's activation per cell scaled to [0, 1] by its strongest activation so far."""
        grids = frame.spatial_map(layout, feature)
        tick_peak = max((float(g.max()) for g in grids.values()), default=0.0)
        with self._lock:
            peak = max(self.feature_peaks.get(feature, 0.0), tick_peak)
            self.feature_peaks[feature] = peak
        return {cam: (g / peak if peak > 0 else np.zeros_like(g)) for cam, g in grids.items()}

    def file_problem(self) -> str | None:
        """Why the SAE on disk no longer matches the copy in use (the copy keeps working either way)."""
        for path, (mtime, size) in self.files.items():
            try:
                st = path.stat()
            except OSError:
                return f"SAE file {path} has vanished; features continue from the copy loaded at start"
            if (st.st_mtime_ns, st.st_size) != (mtime, size):
                return (f"SAE file {path} changed on disk; features continue from the copy loaded at start "
                        f"({self.loaded.sae_id}); set sae_path again to reload")
        return None

    def describe(self) -> str:
        ood = f"OOD threshold {self.threshold:.4g}" if self.calibration else "no OOD calibration"
        if self.score_threshold is not None:
            ood += f", per-position OOD score threshold {self.score_threshold:.4g}"
        if self.camera_state_threshold is not None:
            ood += f", camera-state threshold {self.camera_state_threshold:.4g}"
        return f"SAE {self.loaded.sae_id} ({self.num_features} features, {ood})"

    def diagnostics(self) -> dict[str, str]:
        with self._lock:
            ms = np.asarray(self.encode_s) * 1000.0
            error, ood_ticks, score, problem = self.last_error, self.ood_ticks, self.last_score, self.score_problem
            camera, camera_problem = self.last_camera_state, self.camera_state_problem
        values = {"sae_id": self.loaded.sae_id, "reconstruction_error": f"{error:.5g}",
                  "ood_threshold": "none" if self.threshold is None else f"{self.threshold:.5g}",
                  "ood_score": f"{score:.5g}",
                  "ood_score_threshold": "none" if self.score_threshold is None else f"{self.score_threshold:.5g}",
                  "ood_ticks": str(ood_ticks), "sae_encode_mean_ms": f"{ms.mean():.2f}" if ms.size else "nan"}
        if problem:
            values["ood_score_problem"] = problem
        camera_threshold = self.camera_state_threshold
        values["camera_state_score"] = f"{camera.score:.5g}" if camera is not None else "nan"
        values["camera_state_threshold"] = "none" if camera_threshold is None else f"{camera_threshold:.5g}"
        by_camera = camera.by_camera if camera is not None else {}
        for name, ratio in by_camera.items():  # each camera's own score, in units of its own threshold
            values[f"camera_state_score_{name}"] = f"{ratio:.5g}"
        if camera_problem:
            values["camera_state_problem"] = camera_problem
        return values
