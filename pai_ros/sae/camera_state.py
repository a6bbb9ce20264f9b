"""Do the cameras agree with the joints? An OOD score that asks about the robot, not the picture.

A policy that sees its arm in its cameras carries, in its image tokens, where the arm is. A
ridge regression per camera, from that camera's tokens (before and after the encoder) to the robot state, fitted
on in-distribution episodes, reads that back; on a frame where a camera is blocked, covered,
swapped or otherwise unlike what the policy learned, the state it reads disagrees with the state
the joints report. A camera's score is that disagreement, per state dimension in units of its
cross-fitted error, averaged over dimensions, and divided by the camera's own threshold (over 1:
that camera alone disagrees more than 1% of in-distribution frames do). The frame's score is the
mean over cameras, compared with its own cross-fitted threshold. ``pai sae calibrate`` fits it
(learning from the policy's training episodes too, ``--state-fit-dataset-root``) and the node
publishes the frame's score and each camera's in ``FeatureActivations`` beside ``is_ood``, never
folded into it.

Why one regression per camera rather than one over all of them (the layout until 2026-12-06,
still loaded): it names the camera that disagrees, and on the demo it separated a covered front
camera better (AUROC 1.000 and 0.998 on two splits vs 0.979) and occlusion a little better (0.905
and 0.910 vs 0.903 and 0.897; ``bench/bench_camera_state_fit.py``).

Why it complements the SAE's per-position score (:mod:`pai_ros.sae.position_score`): generic
novelty scores, from pixels to tokens, rank a table-coloured block over the demo's scene as
ordinary, because it hides what made a frame unusual. This one is near chance where the policy
ignores a corruption and high where the corruption changes what the policy does (measured in
``bench/RESULTS.md``), which is what out of distribution *for the policy* means.

Inputs: each camera's tokens averaged to at most ``POOLED_GRID`` cells, so the regression stays
small for 480x640 cameras (600 tokens of 512 values per frame): its cells after the encoder
(where they have attended to the other camera and the state token) and, since 2026-12-06, its
cells before it (the encoder's input: the camera's backbone features alone). The input cells
make each camera's regression more its own witness: on the demo a covered front camera pushes the
wrist camera over its own threshold less often (54% of frames vs 65%), and occlusion, noise and
swapped cameras are detected better, a covered camera about as well (RESULTS); the output
cells keep what the encoder adds (without them, a covered wrist camera is near chance). Only
the camera tokens are read: the state token would give the state away. Through attention the
output cells still carry part of it (on the demo the prediction follows about 0.3 of a move of
the given state on one build); a regression trained to ignore that part detected less, so it
stays (``bench/bench_ood_detectors.py``, ``cameras_vs_joints_state_shuffled``). Calibrations
made before read the output cells only (``inputs`` in ``ood.json``), and still load.

Files: ``<sae>/ood_camera_state.safetensors`` (the regressions, float32, each camera's tensors
under ``<camera>/``, the SAE id in its metadata); the thresholds, cameras, episodes and file hash
sit in ``ood.json`` under ``camera_state`` (each camera's under ``regressions``). A file from before
``regressions`` holds one regression over every camera, under the tensors' plain names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pai_ros.data.episodes import pick_evenly
from pai_ros.policy.layout import TokenLayout
from pai_ros.sae.errors import CannotFit, SaeFileError
from pai_ros.sae.ood_files import AGAIN, load_tensors, save_tensors
from pai_ros.sae.position_score import ScoreSettings, fold_of_groups, threshold_note

CAMERA_STATE_FILE = "ood_camera_state.safetensors"
POOLED_GRID = (4, 5)  # most cells (rows, columns) a camera's tokens are averaged to
# Ridge penalty as a share of the inputs' dimension (the mean diagonal of the standardised
# inputs' Gram matrix), so one setting suits 40 demo tokens and 600 real ones alike. On the demo
# policy (scratch sweeps, bench/RESULTS.md) 0.006-0.06 moved occlusion's AUROC by 0.02 and swapped
# cameras' by 0.06; much larger shares trade AUROC for fewer false alarms (1.0: occlusion 0.67).
PENALTY_SHARE = 0.02
MAX_FIT_FRAMES = 2000  # frames the regression is fitted on (evenly spaced): bounds its memory
_TENSORS = ("weights", "input_mean", "input_scale", "state_mean", "error_scale")
ALL_CAMERAS = ""  # the name of one regression over every camera (files from before per-camera regressions)
# Which tokens of a camera the regressions read: after the encoder (where the cameras have
# attended to each other and to the state token) and, since 2026-12-06, also before it (each
# camera's backbone cells alone). Calibrations that do not say read the output only.
ENCODER_OUTPUT, ENCODER_INPUT = "encoder_output", "encoder_input"
OUTPUT_ONLY: tuple[str, ...] = (ENCODER_OUTPUT,)
OUTPUT_AND_INPUT: tuple[str, ...] = (ENCODER_OUTPUT, ENCODER_INPUT)


def camera_grids(layout: TokenLayout) -> dict[str, tuple[int, int]]:
    return {c.name: (c.grid_h, c.grid_w) for c in layout.cameras}


def _as_tokens(tokens: torch.Tensor | np.ndarray, layout: TokenLayout) -> torch.Tensor:
    t = torch.as_tensor(tokens).detach().float().cpu()
    if t.ndim != 2 or t.shape[0] != layout.num_tokens:
        raise ValueError(f"the frame has tokens of shape {list(t.shape)}, the layout {layout.num_tokens} tokens")
    return t


def camera_features(tokens: torch.Tensor | np.ndarray, layout: TokenLayout,
                    encoder_input: torch.Tensor | np.ndarray | None = None) -> np.ndarray:
    """One frame's encoder tokens ``[S, d]`` as the regression's input (float32 ``[D]``).

    Every camera's cells averaged to at most ``POOLED_GRID``, in layout order; with
    ``encoder_input`` (the encoder's input tokens ``[S, d]``) each camera's output cells are
    followed by its input cells, so that a camera's features stay one contiguous block.
    """
    sources = [_as_tokens(tokens, layout)]
    if encoder_input is not None:
        sources.append(_as_tokens(encoder_input, layout))
    parts = []
    for cam in layout.cameras:
        for t in sources:
            grid = t[cam.slice].T.reshape(1, t.shape[1], cam.grid_h, cam.grid_w)
            pooled = torch.nn.functional.adaptive_avg_pool2d(grid, (min(cam.grid_h, POOLED_GRID[0]),
                                                                    min(cam.grid_w, POOLED_GRID[1])))
            parts.append(pooled.reshape(-1))
    return torch.cat(parts).numpy()


def camera_columns(cameras: dict[str, tuple[int, int]], feature_dim: int) -> dict[str, tuple[int, int]]:
    """Where each camera's features lie in :func:`camera_features`' output: camera -> ``(start, stop)``."""
    cells = {c: min(h, POOLED_GRID[0]) * min(w, POOLED_GRID[1]) for c, (h, w) in cameras.items()}
    total = sum(cells.values())
    if total == 0 or feature_dim % total:
        raise ValueError(f"{feature_dim} camera features do not split over the pooled cells of cameras {cameras}")
    width, start, out = feature_dim // total, 0, {}
    for camera, n in cells.items():
        out[camera] = (start, start + n * width)
        start += n * width
    return out


@dataclass(frozen=True)
class StateRegression:
    """One fitted regression: some camera features -> robot state, and its in-distribution error."""

    weights: np.ndarray  # [D, K] on standardised inputs
    input_mean: np.ndarray  # [D]
    input_scale: np.ndarray  # [D], never 0
    state_mean: np.ndarray  # [K]
    error_scale: np.ndarray  # [K] cross-fitted prediction error spread, never 0
    # Its scores are divided by this (the 1 - target_fpr quantile of its cross-fitted scores), so
    # that cameras of different sizes and sharpness weigh alike; 1 for a file from before.
    threshold: float = 1.0

    def predict(self, features: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(features, dtype=np.float64))
        if x.shape[1] != self.weights.shape[0]:
            raise ValueError(f"the frame gives {x.shape[1]} camera features, the calibration {self.weights.shape[0]}")
        return (x - self.input_mean) / self.input_scale @ self.weights + self.state_mean

    def scores(self, features: np.ndarray, states: np.ndarray) -> np.ndarray:
        """Per frame: mean over state dimensions of ((predicted - measured) / error_scale)^2, over ``threshold``."""
        y = np.atleast_2d(np.asarray(states, dtype=np.float64))
        if y.shape[1] != self.state_mean.shape[0]:
            raise ValueError(f"the state has {y.shape[1]} values, the calibration {self.state_mean.shape[0]}")
        return (((self.predict(features) - y) / self.error_scale) ** 2).mean(axis=1) / self.threshold


@dataclass(frozen=True)
class CameraStateReading:
    """One frame's camera-state score and each camera's (empty for a calibration of one regression)."""

    score: float
    by_camera: dict[str, float]


@dataclass(frozen=True)
class CameraStateProbe:
    """The fitted regressions, by camera (or one, :data:`ALL_CAMERAS`, over every camera)."""

    regressions: dict[str, StateRegression]
    columns: dict[str, tuple[int, int]]  # regression -> the (start, stop) of the features it reads
    cameras: dict[str, tuple[int, int]]  # camera -> token grid it was calibrated on
    inputs: tuple[str, ...] = OUTPUT_ONLY  # which tokens camera_features was given

    @property
    def reads_encoder_input(self) -> bool:
        return ENCODER_INPUT in self.inputs

    @property
    def per_camera(self) -> bool:
        return ALL_CAMERAS not in self.regressions

    def _columns_of(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Each regression's columns of ``features`` ``[F, D]``; ValueError when D is not the calibration's."""
        x = np.atleast_2d(np.asarray(features, dtype=np.float64))
        width = max(stop for _, stop in self.columns.values())
        if x.shape[1] != width:
            raise ValueError(f"the frame gives {x.shape[1]} camera features, the calibration {width}")
        return {name: x[:, slice(*self.columns[name])] for name in self.regressions}

    def camera_scores(self, features: np.ndarray, states: np.ndarray) -> dict[str, np.ndarray]:
        """Per regression, one score per frame (in units of its own threshold)."""
        return {name: self.regressions[name].scores(x, states) for name, x in self._columns_of(features).items()}

    def predict(self, features: np.ndarray) -> np.ndarray:
        """The robot state ``[F, K]`` the cameras imply: the regressions' predictions averaged."""
        return np.mean([self.regressions[name].predict(x) for name, x in self._columns_of(features).items()], axis=0)

    @staticmethod
    def combine(camera_scores: dict[str, np.ndarray]) -> np.ndarray:
        """The frame's score from the cameras' (:meth:`camera_scores`): their mean."""
        return np.mean(list(camera_scores.values()), axis=0)

    def scores(self, features: np.ndarray, states: np.ndarray) -> np.ndarray:
        """One score per frame: the mean of the cameras' scores."""
        return self.combine(self.camera_scores(features, states))

    def features(self, tokens: torch.Tensor | np.ndarray, layout: TokenLayout,
                 encoder_input: torch.Tensor | np.ndarray | None = None) -> np.ndarray:
        """:func:`camera_features` of one frame as this calibration reads them; ValueError when it
        needs the encoder's input tokens and has none, or the cameras are not the calibration's."""
        grids = camera_grids(layout)
        if grids != self.cameras:
            raise ValueError(f"the cameras give token grids {grids}, the calibration had {self.cameras}")
        if self.reads_encoder_input and encoder_input is None:
            raise ValueError("the calibration reads the encoder's input tokens and this tick has none")
        return camera_features(tokens, layout, encoder_input if self.reads_encoder_input else None)

    def read_frame(self, tokens: torch.Tensor | np.ndarray, layout: TokenLayout, state: np.ndarray,
                   encoder_input: torch.Tensor | np.ndarray | None = None) -> CameraStateReading:
        """One live frame's reading; ValueError when its cameras, tokens or state are not the calibration's."""
        scores = self.camera_scores(self.features(tokens, layout, encoder_input), state)
        by_camera = {name: float(s[0]) for name, s in scores.items()}
        score = float(self.combine(scores)[0])
        # A non-finite token makes every reading NaN: nothing to name (the message promises empty lists then).
        return CameraStateReading(score, by_camera if self.per_camera and np.isfinite(score) else {})


def _ridge(x: np.ndarray, y: np.ndarray) -> StateRegression:
    """Ridge regression on standardised inputs, in whichever of its primal or dual forms is smaller."""
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-8, scale, 1.0)  # a constant input carries nothing; keep it finite
    xs = (x - mean) / scale
    y_mean = y.mean(axis=0)
    penalty = PENALTY_SHARE * xs.shape[1]
    if xs.shape[1] <= xs.shape[0]:
        weights = np.linalg.solve(xs.T @ xs + penalty * np.eye(xs.shape[1]), xs.T @ (y - y_mean))
    else:
        weights = xs.T @ np.linalg.solve(xs @ xs.T + penalty * np.eye(xs.shape[0]), y - y_mean)
    return StateRegression(weights, mean, scale, y_mean, np.ones(y.shape[1]))


def episode_groups(*datasets: np.ndarray) -> np.ndarray:
    """The episode of each frame of several datasets, renumbered so that no two datasets share an id.

    Cross-fitting holds out whole episodes: episode 3 of the calibration set and episode 3 of the
    training set are different episodes and must not land in one fold by their shared number.
    """
    out, offset = [], 0
    for groups in datasets:
        groups = np.asarray(groups, dtype=np.int64)
        out.append(groups + offset)
        offset += int(groups.max()) + 1 if groups.size else 0
    return np.concatenate(out)


@dataclass(frozen=True)
class _CrossFit:
    regression: StateRegression  # fitted on every frame, its error scale and threshold cross-fitted
    held_out: np.ndarray  # [F'] scores of the frames held out, in units of the threshold
    explained: np.ndarray  # [K] share of each state dimension's variance the held-out predictions explain


def _cross_fit(x: np.ndarray, y: np.ndarray, fold: np.ndarray, target_fpr: float) -> _CrossFit:
    """Each fold predicted by a regression fitted without it; those errors set the scale and threshold."""
    residuals = np.full(y.shape, np.nan)
    for f in np.unique(fold):
        held = fold == f
        if (~held).sum() >= 2:
            residuals[held] = _ridge(x[~held], y[~held]).predict(x[held]) - y[held]
    done = np.isfinite(residuals).all(axis=1)
    if done.sum() < 2:
        raise CannotFit(f"need at least 2 cross-fitted calibration frames, got {int(done.sum())}: "
                        "calibrate on more frames or episodes")
    # A joint that never moved in calibration has no error to speak of: floor its scale at a small
    # share of the typical joint's spread, so a wobble is not infinitely surprising.
    floor = 1e-3 * max(float(y.std(axis=0).mean()), 1e-6)
    error_scale = np.maximum(residuals[done].std(axis=0), floor)
    held_out = ((residuals[done] / error_scale) ** 2).mean(axis=1)
    threshold = max(float(np.quantile(held_out, 1.0 - target_fpr)), 1e-12)
    fitted = _ridge(x, y)
    regression = StateRegression(fitted.weights, fitted.input_mean, fitted.input_scale, fitted.state_mean,
                                 error_scale, threshold)
    variance = ((y[done] - y[done].mean(axis=0)) ** 2).sum(axis=0)
    # A joint that never moved has nothing to explain: NaN. Relative to its size, as a constant 0.3
    # leaves a rounding variance of 1e-26, and a ratio of two such crumbs means nothing.
    moved = variance > 1e-12 * (y[done] ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        explained = np.where(moved, 1.0 - (residuals[done] ** 2).sum(axis=0) / variance, np.nan)
    return _CrossFit(regression, held_out / threshold, explained)


def fit_camera_state(features: np.ndarray, states: np.ndarray, groups: np.ndarray, cameras: dict[str, tuple[int, int]],
                     settings: ScoreSettings, per_camera: bool = True,
                     inputs: tuple[str, ...] = OUTPUT_ONLY) -> tuple[CameraStateProbe, dict[str, Any]]:
    """The regressions fitted on all frames and the frame score's cross-fitted threshold (with a summary).

    ``features`` ``[F, D]`` (:func:`camera_features` of a layout with ``cameras``, given the
    tokens ``inputs`` names), ``states``
    ``[F, K]``, ``groups`` the episode of each frame. One regression per camera, or one over
    all features when ``per_camera`` is false or no cameras are named. Each fold of episodes is
    predicted by regressions fitted without it; those errors set each regression's error scale
    and threshold, and, as frame scores, the frame's ``1 - target_fpr`` threshold.
    All frames judge, the policy's training episodes included: on the demo (with one regression,
    raw scores), judging by the 8 held-out calibration episodes alone gave a lower threshold (6.3
    vs 8.1) that flagged more new clean frames (7.4% vs 5.9%); more frames make the quantile steadier.
    """
    keep = pick_evenly(len(features), MAX_FIT_FRAMES)
    x = np.asarray(features, dtype=np.float64)[keep]
    y = np.asarray(states, dtype=np.float64)[keep]
    groups = np.asarray(groups)[keep]
    if y.ndim != 2 or y.shape[1] == 0:
        raise CannotFit("the camera-state score needs the robot state: this policy takes none")
    columns = camera_columns(cameras, x.shape[1]) if per_camera and cameras else {ALL_CAMERAS: (0, x.shape[1])}
    fold = fold_of_groups(groups, settings.folds)
    fits = {name: _cross_fit(x[:, a:b], y, fold, settings.target_fpr) for name, (a, b) in columns.items()}
    # The folds are the same for every camera, so the held-out frames are too.
    held_out = np.mean([f.held_out for f in fits.values()], axis=0)
    threshold = float(np.quantile(held_out, 1.0 - settings.target_fpr))
    probe = CameraStateProbe({name: f.regression for name, f in fits.items()}, columns, dict(cameras), tuple(inputs))
    summary: dict[str, Any] = {
        "file": CAMERA_STATE_FILE, "threshold": threshold, "target_fpr": settings.target_fpr,
        "folds": settings.folds, "penalty_share": PENALTY_SHARE, "fit_frames": int(len(x)),
        "episodes": int(np.unique(groups).size),
        "held_out_frames": int(held_out.size), "held_out_p50": float(np.median(held_out)),
        "held_out_max": float(held_out.max()), "feature_dim": int(x.shape[1]), "state_dim": int(y.shape[1]),
        "cameras": {c: list(g) for c, g in cameras.items()}, "inputs": list(inputs),
        # Per regression, how much of each state dimension its camera explains on held-out episodes
        # (R^2): a dimension a camera cannot see (near 0 or below) adds noise, not signal, to its score.
        "regressions": {name: {"columns": list(columns[name]), "threshold": f.regression.threshold,
                               "state_explained": [round(float(v), 4) if np.isfinite(v) else None for v in f.explained]}
                        for name, f in fits.items()},
    }
    note = threshold_note(held_out.size, settings.target_fpr, "camera-state")
    if note:
        summary["note"] = note
    return probe, summary


def save_probe(probe: CameraStateProbe, directory: Path, sae_id: str) -> str:
    """Write the regressions next to the SAE (each under ``<camera>/``); returns the file's sha256."""
    return save_tensors({f"{name}/{t}": getattr(reg, t).astype(np.float32)
                         for name, reg in probe.regressions.items() for t in _TENSORS},
                        directory / CAMERA_STATE_FILE, sae_id, "camera tokens -> robot state disagreement")


class _Mismatch(ValueError):
    """``ood.json``'s regressions do not fit its cameras (said as such, not as an incomplete entry)."""


def _regression_entries(meta: dict[str, Any], cameras: dict[str, tuple[int, int]],
                        d: int) -> dict[str, tuple[str, tuple[int, int], float]]:
    """Per regression: its tensors' prefix, columns and threshold, as ``ood.json`` describes them.

    :class:`_Mismatch` when they are not one regression per camera, each reading that camera's
    features (or one over every camera); other ValueErrors when the entry is malformed.
    """
    if "regressions" not in meta:  # before per-camera regressions: one, its tensors under plain names
        return {ALL_CAMERAS: ("", (0, d), 1.0)}
    out = {}
    for name, entry in meta["regressions"].items():
        a, b = (int(v) for v in entry["columns"])
        threshold = float(entry["threshold"])
        if not (np.isfinite(threshold) and threshold > 0):
            raise _Mismatch(f"camera '{name}' has threshold {threshold}, not a positive number")
        out[str(name)] = (f"{name}/", (a, b), threshold)
    columns = {name: c for name, (_, c, _) in out.items()}
    # One regression per camera, each reading its camera's columns, or one over all of them.
    expected = {ALL_CAMERAS: (0, d)} if ALL_CAMERAS in out else camera_columns(cameras, d)
    if columns != expected:
        raise _Mismatch(f"regressions read columns {columns}, the cameras {cameras} give {expected}")
    return out


def load_probe(directory: Path, meta: dict[str, Any], sae_id: str) -> CameraStateProbe:
    """The regressions ``ood.json``'s ``camera_state`` names, checked; :class:`UserError` otherwise."""
    path = directory / CAMERA_STATE_FILE
    try:
        cameras = {str(c): (int(g[0]), int(g[1])) for c, g in meta["cameras"].items()}
        d, k = int(meta["feature_dim"]), int(meta["state_dim"])
        inputs = tuple(str(i) for i in meta.get("inputs", OUTPUT_ONLY))
        entries = _regression_entries(meta, cameras, d)
    except _Mismatch as exc:
        raise SaeFileError(f"{directory / 'ood.json'}: its camera_state regressions do not fit: {exc}: "
                           f"{AGAIN}") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        raise SaeFileError(f"{directory / 'ood.json'}: its camera_state entry is incomplete: {AGAIN}") from None
    names = tuple(prefix + t for prefix, _, _ in entries.values() for t in _TENSORS)
    tensors = load_tensors(path, meta, sae_id, "a camera-state regression", names)
    regressions, columns = {}, {}
    for name, (prefix, (a, b), threshold) in entries.items():
        t = {n: tensors[prefix + n] for n in _TENSORS}
        want = {"weights": (b - a, k), "input_mean": (b - a,), "input_scale": (b - a,), "state_mean": (k,),
                "error_scale": (k,)}
        for n, shape in want.items():
            if t[n].shape != shape:
                raise SaeFileError(f"{path}: tensor '{prefix + n}' has shape {list(t[n].shape)}, "
                                   f"expected {list(shape)}: {AGAIN}")
        if (t["input_scale"] <= 0).any() or (t["error_scale"] <= 0).any():
            raise SaeFileError(f"{path}: its scales must be positive everywhere: {AGAIN}")
        regressions[name] = StateRegression(*(t[n].astype(np.float64) for n in _TENSORS), threshold)
        columns[name] = (a, b)
    if inputs not in (OUTPUT_ONLY, OUTPUT_AND_INPUT):
        raise SaeFileError(f"{directory / 'ood.json'}: its camera_state reads tokens {list(inputs)}, which this "
                           f"version does not know (it knows {list(OUTPUT_AND_INPUT)}): {AGAIN}")
    return CameraStateProbe(regressions, columns, cameras, inputs)
