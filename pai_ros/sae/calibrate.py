"""``pai sae calibrate``: fit the OOD thresholds, and measure them against corrupted cameras.

Two scores come out of one pass over the calibration episodes: the frame-level reconstruction
error (FVU, threshold by ``rule``) and the per-position score (statistics per token position and
a cross-fitted threshold at a target false-positive rate, :mod:`pai_ros.sae.position_score`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pai_ros import __version__
from pai_ros.data.episodes import iter_episode, read_info
from pai_ros.errors import UserError
from pai_ros.jsonfile import write_json_atomic
from pai_ros.policy.runner import PolicyRunner
from pai_ros.sae.model import LoadedSae
from pai_ros.sae.ood import (
    OOD_FILE,
    auroc,
    corruptions,
    episode_token_errors,
    fit_threshold,
)
from pai_ros.sae.plots import plot_ood
from pai_ros.sae.position_score import (
    POSITIONS_FILE,
    PositionStats,
    ScoreSettings,
    calibrate_positions,
    frame_scores,
    save_stats,
)

REPORT_FILE = "ood_report.json"
PLOT_FILE = "ood_errors.png"


def check_dimensions(runner: PolicyRunner, loaded: LoadedSae) -> None:
    """The SAE must read vectors of the policy's ``dim_model`` (one clear line otherwise)."""
    dim = int(runner.loaded.config.dim_model)
    if loaded.cfg.d_in != dim:
        raise UserError(f"the SAE in {loaded.directory} reads {loaded.cfg.d_in}-dim activations but the policy's "
                        f"encoder outputs {dim}-dim tokens (dim_model): train the SAE on this policy's activations")


@dataclass
class CalibrationResult:
    calibration: dict[str, Any]  # what ood.json holds
    report: dict[str, Any] | None = None  # clean vs corrupted, when evaluation episodes were given
    clean: np.ndarray | None = None
    corrupted: dict[str, np.ndarray] = field(default_factory=dict)
    positions: PositionStats | None = None  # per-position statistics (None: too few frames for them)
    clean_scores: np.ndarray | None = None
    corrupted_scores: dict[str, np.ndarray] = field(default_factory=dict)


def _errors(runner: PolicyRunner, loaded: LoadedSae, root: Path, episodes: list[int], progress: bool, label: str,
            transform: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FVU [F], token errors [F, S], episode of each frame [F]) over ``episodes``."""
    fvu, tokens, groups = [], [], []
    for e in episodes:
        f, t = episode_token_errors(runner, loaded, root, e, transform=transform, progress=progress,
                                    desc=f"{label} ep {e}")
        fvu.append(f)
        tokens.append(t)
        groups.append(np.full(f.size, e))
    return np.concatenate(fvu), np.concatenate(tokens), np.concatenate(groups)


def calibrate(runner: PolicyRunner, loaded: LoadedSae, root: Path, episodes: list[int], *, rule: str = "p99",
              sigmas: float = 3.0, evaluate: list[int] | None = None, progress: bool = True,
              score: ScoreSettings | None = None) -> CalibrationResult:
    check_dimensions(runner, loaded)
    score = score or ScoreSettings()
    info = read_info(root)
    errors, token_errors, groups = _errors(runner, loaded, root, episodes, progress, "calibrate")
    fit = fit_threshold(errors, rule, sigmas)
    calibration = {"sae_id": loaded.sae_id, "pai_ros_version": __version__, "score": "per-frame FVU",
                   "policy_path": str(runner.loaded.path), "dataset_root": str(root), "episodes": episodes, **fit}
    positions = None
    try:
        positions, summary = calibrate_positions(token_errors, groups, score)
        calibration["position_score"] = {"file": POSITIONS_FILE, **summary}
    except UserError as exc:
        # Too few frames for held-out statistics: the frame-level threshold still stands.
        calibration["position_score_skipped"] = str(exc)
    if not evaluate:
        return CalibrationResult(calibration, positions=positions)
    first = next(iter_episode(root, evaluate[0], info))
    shapes = {c: im.shape for c, im in first.images.items() if c in runner.spec.cameras}
    kinds = corruptions([c for c in runner.spec.cameras], shapes)
    clean, clean_tokens, _ = _errors(runner, loaded, root, evaluate, progress, "clean")
    corrupted, corrupted_tokens = {}, {}
    for name, fn in kinds.items():
        corrupted[name], corrupted_tokens[name], _ = _errors(runner, loaded, root, evaluate, progress, name, fn)
    aurocs = {name: auroc(clean, errs) for name, errs in corrupted.items()}
    threshold = fit["threshold"]
    report = {
        "sae_id": loaded.sae_id, "calibration_episodes": episodes, "evaluation_episodes": evaluate,
        "threshold": threshold, "rule": rule,
        "clean": {"frames": int(clean.size), "mean_error": float(clean.mean()),
                  "flagged_fraction": float((clean > threshold).mean())},
        "corruptions": {name: {"frames": int(errs.size), "mean_error": float(errs.mean()), "auroc": aurocs[name],
                               "flagged_fraction": float((errs > threshold).mean())}
                        for name, errs in corrupted.items()},
    }
    clean_scores, corrupted_scores = None, {}
    if positions is not None:
        st = calibration["position_score"]["threshold"]
        clean_scores = frame_scores(positions, clean_tokens, score)
        report["position_score_threshold"] = st
        report["clean"]["score_flagged_fraction"] = float((clean_scores > st).mean())
        for name, toks in corrupted_tokens.items():
            corrupted_scores[name] = s = frame_scores(positions, toks, score)
            report["corruptions"][name].update(score_auroc=auroc(clean_scores, s),
                                               score_flagged_fraction=float((s > st).mean()))
    if "swapped_cameras" not in kinds:
        report["note"] = "swapped_cameras needs two or more cameras of the same size"
    return CalibrationResult(calibration, report, clean, corrupted, positions, clean_scores, corrupted_scores)


def write_calibration(loaded: LoadedSae, result: CalibrationResult) -> list[Path]:
    directory = loaded.directory
    written = [directory / OOD_FILE]
    calibration = dict(result.calibration)
    if result.positions is not None:
        # The statistics first, ood.json (which names them, with their hash) last: a calibration
        # interrupted between the two reads as the old one or fails its hash check, never as
        # a complete new one with the wrong statistics.
        sha = save_stats(result.positions, directory, loaded.sae_id)
        calibration["position_score"] = {**calibration["position_score"], "sha256": sha}
        written.append(directory / POSITIONS_FILE)
    write_json_atomic(directory / OOD_FILE, calibration)
    if result.positions is None:
        (directory / POSITIONS_FILE).unlink(missing_ok=True)  # named by no ood.json any more
    report = result.report
    if report is not None and result.clean is not None:
        write_json_atomic(directory / REPORT_FILE, report)
        aurocs = {name: c["auroc"] for name, c in report["corruptions"].items()}
        plot_ood(result.clean, result.corrupted, report["threshold"], aurocs, directory / PLOT_FILE)
        written += [directory / REPORT_FILE, directory / PLOT_FILE]
    return written
