"""Out-of-distribution signal: the SAE's reconstruction error per frame, and its calibration.

An SAE trained on the policy's in-distribution activations reconstructs familiar scenes well
and unfamiliar ones badly, so a frame's fraction of variance unexplained (FVU, see
:mod:`pai_ros.sae.frame`) is a cheap, label-free OOD score. ``pai sae calibrate`` runs the
policy and SAE over held-out in-distribution episodes, saves the error distribution and a
threshold to ``<sae>/ood.json`` (read by the policy node), and can measure how well the score
separates those episodes from the same episodes with corrupted cameras (AUROC).

A stronger score, normalised per token position, is calibrated alongside it when the
calibration has enough frames (:mod:`pai_ros.sae.position_score`); when ``ood.json`` carries
it, the node's ``is_ood`` follows that score, otherwise the frame-level error as before. For a
policy that takes the robot state, ``ood.json`` can also carry whether the cameras agree with
the joints (:mod:`pai_ros.sae.camera_state`): published beside it, never folded into ``is_ood``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pai_ros.data.episodes import DatasetFrame
from pai_ros.errors import UserError
from pai_ros.jsonfile import read_json
from pai_ros.policy.layout import TokenLayout
from pai_ros.policy.observation import Observation
from pai_ros.ranks import average_ranks
from pai_ros.sae.camera_state import CameraStateProbe, CameraStateReading, load_probe
from pai_ros.sae.errors import CannotFit, SaeFileError
from pai_ros.sae.position_score import (
    PositionStats,
    ScoreSettings,
    frame_scores,
    load_stats,
)

OOD_FILE = "ood.json"
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
RULES = ("p95", "p99", "p99.9", "sigma")


@dataclass(frozen=True)
class Calibration:
    threshold: float  # on the frame-level reconstruction error (FVU)
    rule: str
    sae_id: str
    # The per-position score (None for calibrations made before it, or without enough frames).
    positions: PositionStats | None = None
    score_settings: ScoreSettings | None = None
    score_threshold: float | None = None
    # Whether the cameras agree with the joints (None: not calibrated, or the policy takes no state).
    camera_state: CameraStateProbe | None = None
    camera_state_threshold: float | None = None

    @property
    def has_score(self) -> bool:
        return self.positions is not None and self.score_threshold is not None

    def camera_state_reading(self, tokens: Any, layout: TokenLayout, state: np.ndarray,
                             encoder_input: Any | None = None) -> CameraStateReading:
        """One frame's camera-state score (and each camera's); ValueError when its cameras or state differ."""
        assert self.camera_state is not None
        return self.camera_state.read_frame(tokens, layout, state, encoder_input)

    def score(self, token_errors: np.ndarray) -> float:
        """The per-position score of one frame's per-token squared errors ``[S]``.

        Raises ValueError when the frame has another number of tokens than the calibration.
        """
        assert self.positions is not None and self.score_settings is not None
        return float(frame_scores(self.positions, token_errors, self.score_settings)[0])


def fit_threshold(errors: np.ndarray, rule: str = "p99", sigmas: float = 3.0) -> dict[str, Any]:
    """Summary of calibration errors and the threshold ``rule`` picks from it."""
    errors = finite(errors)
    if errors.size < 2:
        raise CannotFit(f"need at least 2 calibration frames with a finite error, got {errors.size}")
    if rule not in RULES:
        raise UserError(f"unknown threshold rule '{rule}' (choose from {', '.join(RULES)})")
    pct = {f"p{p:g}": float(np.percentile(errors, p)) for p in PERCENTILES}
    mean, std = float(errors.mean()), float(errors.std(ddof=1))
    sigma_threshold = mean + sigmas * std
    threshold = sigma_threshold if rule == "sigma" else pct[rule]
    return {"frames": int(errors.size), "mean": mean, "std": std, "percentiles": pct, "sigmas": sigmas,
            "mean_plus_k_sigma": sigma_threshold, "rule": rule, "threshold": float(threshold)}


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """Probability that a positive (OOD) frame scores above a negative one (ties count half).

    Non-finite scores are left out of both sides, as :func:`fit_threshold` leaves them out: ranked,
    a NaN would count as the most out-of-distribution frame of all.
    """
    neg, pos = finite(negatives), finite(positives)
    if neg.size == 0 or pos.size == 0:
        return float("nan")
    ranks = average_ranks(np.concatenate([neg, pos]))  # Mann-Whitney U
    u = ranks[neg.size:].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (neg.size * pos.size))


def finite(scores: np.ndarray) -> np.ndarray:
    """The finite ones of ``scores``, as float64."""
    scores = np.asarray(scores, dtype=np.float64)
    return scores[np.isfinite(scores)]


def load_calibration(sae_dir: Path, sae_id: str) -> tuple[Calibration | None, str]:
    """The calibration next to an SAE, or None and why not (missing, or made for other weights).

    A damaged file, or per-position statistics that do not match their description, are a
    :class:`UserError`: a silently dropped score would quietly change what ``is_ood`` means.
    """
    path = sae_dir / OOD_FILE
    if not path.is_file():
        return None, f"no {OOD_FILE} in {sae_dir}: run `pai sae calibrate` for an OOD threshold"
    data = read_json(path, "OOD calibration")
    try:
        cal = Calibration(float(data["threshold"]), str(data["rule"]), str(data["sae_id"]))
        pos = data.get("position_score")
        if pos is not None:
            settings = ScoreSettings(top_fraction=float(pos["top_fraction"]), two_sided=bool(pos["two_sided"]),
                                     target_fpr=float(pos["target_fpr"]), folds=int(pos["folds"]))
            score_threshold = float(pos["threshold"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise SaeFileError(f"{path} is not a pai_ros OOD calibration; run `pai sae calibrate` again") from None
    if cal.sae_id != sae_id:
        return None, (f"{path} was calibrated for SAE {cal.sae_id}, not {sae_id} (retrained?): "
                      "run `pai sae calibrate` again")
    probe, probe_threshold, also = None, None, ""
    camera = data.get("camera_state")
    if isinstance(camera, dict):
        probe = load_probe(sae_dir, camera, sae_id)
        try:
            probe_threshold = float(camera["threshold"])
        except (KeyError, TypeError, ValueError):
            raise SaeFileError(f"{path}: its camera_state entry has no threshold; "
                               "run `pai sae calibrate` again") from None
        if not (np.isfinite(probe_threshold) and probe_threshold > 0):  # NaN would silently never flag
            raise SaeFileError(f"{path}: its camera_state threshold is {probe_threshold}, not a positive number; "
                               "run `pai sae calibrate` again")
        also = f", camera-state threshold {probe_threshold:.4g}"
    if pos is None:
        cal = Calibration(cal.threshold, cal.rule, cal.sae_id, camera_state=probe,
                          camera_state_threshold=probe_threshold)
        return cal, f"threshold {cal.threshold:.4g} ({cal.rule}){also}"
    stats = load_stats(sae_dir, pos, sae_id)
    cal = Calibration(cal.threshold, cal.rule, cal.sae_id, stats, settings, score_threshold, probe, probe_threshold)
    return cal, f"per-position score threshold {score_threshold:.4g} (FPR {settings.target_fpr:g}){also}"


# --------------------------------------------------------------------------- corruptions

Corruption = Callable[[DatasetFrame, Observation], Observation]


def _noise(frame: DatasetFrame, obs: Observation) -> Observation:
    rng = np.random.default_rng(frame.episode_index * 100_003 + frame.frame_index)
    images = {c: np.clip(im.astype(np.float32) + rng.normal(0.0, 40.0, im.shape), 0, 255).astype(np.uint8)
              for c, im in obs.images.items()}
    return Observation(images, obs.state, obs.env_state)


def _occlusion(_frame: DatasetFrame, obs: Observation) -> Observation:
    images = {}
    for c, im in obs.images.items():
        im = im.copy()
        h, w = im.shape[:2]
        im[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 128  # a grey block over the middle quarter of the area
        images[c] = im
    return Observation(images, obs.state, obs.env_state)


def _swap(_frame: DatasetFrame, obs: Observation) -> Observation:
    names = list(obs.images)
    rotated = names[1:] + names[:1]
    return Observation({a: obs.images[b] for a, b in zip(names, rotated)}, obs.state, obs.env_state)


def _covered(camera: str) -> Corruption:
    """``camera``'s image all black: a lens cap, a hand over the lens, a feed that died to black."""

    def cover(_frame: DatasetFrame, obs: Observation) -> Observation:
        images = {c: (np.zeros_like(im) if c == camera else im) for c, im in obs.images.items()}
        return Observation(images, obs.state, obs.env_state)

    return cover


def corruptions(cameras: list[str], shapes: dict[str, tuple[int, ...]]) -> dict[str, Corruption]:
    """The corruptions OOD detection is measured on, by name.

    ``occlusion`` greys the middle of every camera (grey 128: on the demo it is close to the table's
    colour, so it mostly hides objects rather than adding one); ``covered_<camera>`` blacks out one
    camera at a time (a covered lens, a dead feed).
    """
    out: dict[str, Corruption] = {"noise": _noise, "occlusion": _occlusion}
    if len(cameras) >= 2 and len({shapes[c] for c in cameras}) == 1:
        out["swapped_cameras"] = _swap
    out.update({f"covered_{c}": _covered(c) for c in cameras})
    return out
