"""``pai sae calibrate``: fit the OOD threshold, and measure it against corrupted cameras."""

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
from pai_ros.sae.ood import OOD_FILE, auroc, corruptions, episode_errors, fit_threshold
from pai_ros.sae.plots import plot_ood

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


def calibrate(runner: PolicyRunner, loaded: LoadedSae, root: Path, episodes: list[int], *, rule: str = "p99",
              sigmas: float = 3.0, evaluate: list[int] | None = None, progress: bool = True) -> CalibrationResult:
    check_dimensions(runner, loaded)
    info = read_info(root)
    errors = np.concatenate([episode_errors(runner, loaded, root, e, progress=progress, desc=f"calibrate ep {e}")
                             for e in episodes])
    fit = fit_threshold(errors, rule, sigmas)
    calibration = {"sae_id": loaded.sae_id, "pai_ros_version": __version__, "score": "per-frame FVU",
                   "policy_path": str(runner.loaded.path), "dataset_root": str(root), "episodes": episodes, **fit}
    if not evaluate:
        return CalibrationResult(calibration)
    first = next(iter_episode(root, evaluate[0], info))
    shapes = {c: im.shape for c, im in first.images.items() if c in runner.spec.cameras}
    kinds = corruptions([c for c in runner.spec.cameras], shapes)
    clean = np.concatenate([episode_errors(runner, loaded, root, e, progress=progress, desc=f"clean ep {e}")
                            for e in evaluate])
    corrupted = {name: np.concatenate([episode_errors(runner, loaded, root, e, transform=fn, progress=progress,
                                                      desc=f"{name} ep {e}") for e in evaluate])
                 for name, fn in kinds.items()}
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
    if len(kinds) < 3:
        report["note"] = "swapped_cameras needs two or more cameras of the same size"
    return CalibrationResult(calibration, report, clean, corrupted)


def write_calibration(loaded: LoadedSae, result: CalibrationResult) -> list[Path]:
    directory = loaded.directory
    written = [directory / OOD_FILE]
    write_json_atomic(directory / OOD_FILE, result.calibration)
    report = result.report
    if report is not None and result.clean is not None:
        write_json_atomic(directory / REPORT_FILE, report)
        aurocs = {name: c["auroc"] for name, c in report["corruptions"].items()}
        plot_ood(result.clean, result.corrupted, report["threshold"], aurocs, directory / PLOT_FILE)
        written += [directory / REPORT_FILE, directory / PLOT_FILE]
    return written
