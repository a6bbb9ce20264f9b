"""The per-position OOD score: each token's SAE error against what that position usually shows.

The frame-level FVU (:mod:`pai_ros.sae.frame`) pools every token's error into one number, so a
corruption that changes a quarter of a camera's cells is diluted by the rest of the frame, and
positions whose error is naturally large (a busy part of the scene) drown positions whose
error is naturally small. Here each token position ``p`` (latent, state, every camera cell) has
its own reference: the mean and standard deviation of ``log`` squared reconstruction error at
``p`` over in-distribution calibration frames. A frame's tokens are z-scored against those, and
the frame's score is the mean of its largest ``top_fraction`` of position scores, so a local
corruption is judged on the positions it touched. ``two_sided`` scores ``|z|`` (a grey block can
make a cell *easier* to reconstruct than it ever was); off by default, see :class:`ScoreSettings`.
Each position's spread is shrunk toward the typical position's (``PRIOR_FRAMES``) so that tens
of calibration frames do not give heavy-tailed z-scores.

The threshold is cross-fitted: calibration episodes are split into folds, each fold is scored
against statistics fitted on the other folds, and the threshold is the ``1 - target_fpr``
quantile of those held-out scores, so it is not set on frames that shaped the statistics (which
would score too low and give a threshold that flags far more than ``target_fpr`` live).

Files: ``<sae>/ood_positions.safetensors`` (``log_error_mean``, ``log_error_std``: ``[S]``
float32, with the SAE id in its metadata) next to the SAE; its settings, threshold and file hash
sit in ``ood.json`` under ``position_score``. Only safetensors and JSON are read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pai_ros.require import require
from pai_ros.sae.errors import CannotFit, SaeFileError
from pai_ros.sae.ood_files import AGAIN, load_tensors, save_tensors

POSITIONS_FILE = "ood_positions.safetensors"
MEAN, STD = "log_error_mean", "log_error_std"
# Squared errors are floored before the log: an exact reconstruction (0) must not be -inf.
ERROR_FLOOR = 1e-20
PRIOR_FRAMES = 2  # pseudo-frames of the typical position's spread added to every position's
# A ``1 - target_fpr`` quantile is only as steady as the frames above it. With fewer than this
# many it follows the one or two most unusual calibration frames: on the demo's 120 frames the
# 1% threshold flagged 5.1% of clean evaluation frames on one build of the demo policy, and on
# another (same settings, another machine) sat above every clean and every covered-camera frame.
STEADY_TAIL_FRAMES = 10


@dataclass(frozen=True)
class ScoreSettings:
    top_fraction: float = 0.1  # the frame's score: mean of this share of its highest position scores
    # Score |z| (an unusually low error counts too) rather than z. Off by default: on the demo
    # policy it mostly adds swapped cameras, which ACT cannot tell apart (its camera tokens share
    # positional embeddings, so a swap only permutes them and leaves the actions unchanged).
    two_sided: bool = False
    target_fpr: float = 0.01  # share of in-distribution frames the threshold may flag
    folds: int = 5  # cross-fitting folds (by episode; as many as there are episodes, up to this)

    def __post_init__(self) -> None:
        require("top_fraction", self.top_fraction, above=0, at_most=1)
        require("target_fpr", self.target_fpr, above=0, below=1)
        require("cross-fitting folds", self.folds, at_least=2)

    def to_json(self) -> dict[str, Any]:
        return {"top_fraction": self.top_fraction, "two_sided": self.two_sided, "target_fpr": self.target_fpr,
                "folds": self.folds}


@dataclass(frozen=True)
class PositionStats:
    """Per-position reference of ``log`` squared token reconstruction error."""

    mean: np.ndarray  # [S] float64
    std: np.ndarray  # [S] float64, floored (never 0)

    @property
    def num_tokens(self) -> int:
        return int(self.mean.shape[0])


def log_errors(token_errors: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(np.asarray(token_errors, dtype=np.float64), ERROR_FLOOR))


def fit_stats(token_errors: np.ndarray) -> PositionStats:
    """Statistics from in-distribution frames' per-token squared errors ``[F, S]``."""
    errors = np.asarray(token_errors, dtype=np.float64)
    if errors.ndim != 2 or errors.shape[0] < 2:
        raise CannotFit(f"position statistics need [frames >= 2, tokens] errors, got shape {list(errors.shape)}")
    logs = log_errors(errors)
    n = logs.shape[0]
    mean, var = logs.mean(axis=0), logs.var(axis=0, ddof=1)
    # Each position's variance is shrunk toward the typical position's, as if PRIOR_FRAMES more
    # frames had shown the typical spread: with tens of calibration frames a position's own
    # estimate is noisy, and an underestimated spread makes its z-scores (and the threshold)
    # heavy-tailed. With thousands of frames the prior no longer matters.
    pooled = float(np.median(var))
    var = ((n - 1) * var + PRIOR_FRAMES * pooled) / (n - 1 + PRIOR_FRAMES)
    # A position that never varied (or barely) would turn any wobble into a huge z: floor its spread.
    std = np.sqrt(var)
    floor = max(1e-3, 0.05 * float(np.median(std)))
    return PositionStats(mean, np.maximum(std, floor))


def frame_scores(stats: PositionStats, token_errors: np.ndarray, settings: ScoreSettings) -> np.ndarray:
    """One score per frame of ``token_errors`` ``[F, S]`` (or one frame ``[S]`` -> ``[1]``)."""
    errors = np.atleast_2d(np.asarray(token_errors, dtype=np.float64))
    if errors.shape[1] != stats.num_tokens:
        raise ValueError(f"the frame has {errors.shape[1]} tokens, the position statistics {stats.num_tokens}")
    z = (log_errors(errors) - stats.mean) / stats.std
    if settings.two_sided:
        z = np.abs(z)
    return mean_of_top(z, settings.top_fraction)


def mean_of_top(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Per row of ``scores`` ``[F, ...]``, the mean of its largest ``fraction`` of values (at least one)."""
    flat = np.asarray(scores).reshape(len(scores), -1)
    m = max(1, math.ceil(fraction * flat.shape[1]))
    return np.partition(flat, flat.shape[1] - m, axis=1)[:, flat.shape[1] - m:].mean(axis=1)


def fold_of_groups(groups: np.ndarray, folds: int) -> np.ndarray:
    """Fold per frame: whole groups (episodes) per fold, or halves of the frames with one group."""
    groups = np.asarray(groups)
    unique = np.unique(groups)
    if unique.size >= 2:
        # More folds = statistics fitted on more of the frames, closer to the final ones fitted
        # on all: the held-out scores then overstate live scores less.
        fold_of = {g: i % min(folds, unique.size) for i, g in enumerate(unique)}
        return np.array([fold_of[g] for g in groups])
    # One episode only: contiguous blocks of frames (neighbouring frames are alike, so blocks
    # rather than alternate frames keep the held-out part honest).
    return np.minimum(np.arange(groups.size) * folds // max(groups.size, 1), folds - 1)


def cross_fitted_scores(token_errors: np.ndarray, groups: np.ndarray, settings: ScoreSettings) -> np.ndarray:
    """Every calibration frame scored against statistics fitted without its fold."""
    errors = np.asarray(token_errors, dtype=np.float64)
    fold = fold_of_groups(groups, settings.folds)
    scores = np.full(errors.shape[0], np.nan)
    for f in range(settings.folds):
        held = fold == f
        if held.any() and (~held).sum() >= 2:
            scores[held] = frame_scores(fit_stats(errors[~held]), errors[held], settings)
    return scores


def calibrate_positions(token_errors: np.ndarray, groups: np.ndarray,
                        settings: ScoreSettings) -> tuple[PositionStats, dict[str, Any]]:
    """Statistics from all calibration frames and the cross-fitted threshold (with its summary)."""
    held_out = cross_fitted_scores(token_errors, groups, settings)
    held_out = held_out[np.isfinite(held_out)]
    if held_out.size < 2:
        raise CannotFit(f"need at least 2 cross-fitted calibration frames, got {held_out.size}: "
                        "calibrate on more frames or episodes")
    threshold = float(np.quantile(held_out, 1.0 - settings.target_fpr))
    stats = fit_stats(token_errors)
    summary = {**settings.to_json(), "num_tokens": stats.num_tokens, "threshold": threshold,
               "held_out_frames": int(held_out.size), "held_out_mean": float(held_out.mean()),
               "held_out_p50": float(np.median(held_out)), "held_out_max": float(held_out.max())}
    note = threshold_note(held_out.size, settings.target_fpr)
    if note:
        summary["note"] = note
    return stats, summary


def threshold_note(frames: int, target_fpr: float, score: str = "per-position") -> str | None:
    """Why a ``score`` threshold fitted on ``frames`` calibration frames is unsteady, or None when it is not."""
    tail = frames * target_fpr
    if tail >= STEADY_TAIL_FRAMES - 1e-9:  # 1e-9: 1000 x 0.01 must count as 10 in floating point
        return None
    need = math.ceil(STEADY_TAIL_FRAMES / target_fpr - 1e-9)
    return (f"the {score} threshold at a {target_fpr:g} false-positive rate rests on the top "
            f"{max(1, int(tail))} of {frames} calibration frames and moves with them: calibrate on "
            f"{need:,} frames or more (more episodes) for a steady one")


# ------------------------------------------------------------------------------- files


def save_stats(stats: PositionStats, directory: Path, sae_id: str) -> str:
    """Write the statistics next to the SAE (temporary file + rename); returns the file's sha256."""
    return save_tensors({MEAN: stats.mean.astype(np.float32), STD: stats.std.astype(np.float32)},
                        directory / POSITIONS_FILE, sae_id, "per-position log error z")


def load_stats(directory: Path, meta: dict[str, Any], sae_id: str) -> PositionStats:
    """The statistics ``ood.json``'s ``position_score`` names, checked; :class:`UserError` otherwise."""
    path = directory / POSITIONS_FILE
    tensors = load_tensors(path, meta, sae_id, "per-position statistics", (MEAN, STD))
    mean, std = tensors[MEAN], tensors[STD]
    want = int(meta.get("num_tokens", mean.shape[0] if mean.ndim == 1 else -1))
    for name, t in ((MEAN, mean), (STD, std)):
        if t.shape != (want,):
            raise SaeFileError(f"{path}: tensor '{name}' has shape {list(t.shape)}, expected [{want}] "
                               f"(one value per token position): {AGAIN}")
    if (std <= 0).any():
        raise SaeFileError(f"{path}: tensor '{STD}' must be positive everywhere: {AGAIN}")
    return PositionStats(mean.astype(np.float64), std.astype(np.float64))
