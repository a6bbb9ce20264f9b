"""``pai sae calibrate``: fit the OOD thresholds, and measure them against corrupted cameras.

Three scores come out of one pass over the calibration episodes: the frame-level reconstruction
error (FVU, threshold by ``rule``), the per-position score (statistics per token position and
a cross-fitted threshold at a target false-positive rate, :mod:`pai_ros.sae.position_score`),
and, for a policy that takes the robot state, whether the cameras agree with the joints
(:mod:`pai_ros.sae.camera_state`; its regression also learns from ``state_fit`` episodes, usually
the policy's training episodes, because a few calibration episodes alone give it a threshold that
flags far more than its target).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pai_ros import __version__
from pai_ros.data.episodes import (
    episode_length,
    episode_ranges,
    iter_episode,
    read_info,
)
from pai_ros.errors import UserError
from pai_ros.jsonfile import write_json_atomic
from pai_ros.policy.layout import TokenLayout
from pai_ros.policy.over_dataset import camera_rename_for, run_episode
from pai_ros.policy.runner import PolicyRunner
from pai_ros.sae.camera_state import (
    CAMERA_STATE_FILE,
    MAX_FIT_FRAMES,
    OUTPUT_AND_INPUT,
    OUTPUT_ONLY,
    CameraStateProbe,
    camera_features,
    camera_grids,
    episode_groups,
    fit_camera_state,
    save_probe,
)
from pai_ros.sae.errors import CannotFit
from pai_ros.sae.frame import encode_frame
from pai_ros.sae.model import METRICS_FILE, LoadedSae, check_dimensions
from pai_ros.sae.ood import (
    OOD_FILE,
    auroc,
    corruptions,
    finite,
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
#: Everything a calibration adds to an SAE directory. It is made for that one SAE, so retraining the
#: SAE in place (``pai sae train --overwrite``) replaces it rather than keep it beside new weights.
CALIBRATION_FILES = (OOD_FILE, POSITIONS_FILE, CAMERA_STATE_FILE, REPORT_FILE, PLOT_FILE)


# Fewer episodes than this behind the camera-state regression: it fits them better than new ones
# and its threshold flags more than its target (on the demo: 8 episodes flagged 15.6% of clean
# frames, 48 flagged none; bench/RESULTS.md).
STEADY_STATE_FIT_EPISODES = 20


@dataclass
class CalibrationResult:
    calibration: dict[str, Any]  # what ood.json holds
    report: dict[str, Any] | None = None  # clean vs corrupted, when evaluation episodes were given
    clean: np.ndarray | None = None
    corrupted: dict[str, np.ndarray] = field(default_factory=dict)
    positions: PositionStats | None = None  # per-position statistics (None: too few frames for them)
    clean_scores: np.ndarray | None = None
    corrupted_scores: dict[str, np.ndarray] = field(default_factory=dict)
    camera_state: CameraStateProbe | None = None  # None: the policy takes no state, or too few frames


@dataclass
class Pass:
    """What one pass of the policy (and SAE) over some episodes gives, per frame."""

    fvu: np.ndarray  # [F] (empty without an SAE)
    token_errors: np.ndarray  # [F, S]
    groups: np.ndarray  # [F] episode
    features: np.ndarray  # [F, D] camera features (camera_state.camera_features); empty when scored
    states: np.ndarray | None  # [F, K] robot state the policy was given (None: it takes none)
    layout: TokenLayout | None
    camera_state_scores: np.ndarray | None = None  # [F], when the pass was given a fitted probe
    # With per-camera regressions: each camera's score per frame [F], in units of its own threshold.
    camera_scores: dict[str, np.ndarray] = field(default_factory=dict)
    feature_inputs: tuple[str, ...] = OUTPUT_ONLY  # which tokens ``features`` were pooled from

    @property
    def has_state(self) -> bool:
        """The policy took a robot state on these frames: the camera-state score can compare with it."""
        return self.states is not None and self.layout is not None and self.layout.has_state


@dataclass(frozen=True)
class StateFit:
    """Episodes the camera-state regression learns from besides the calibration episodes."""

    root: Path
    episodes: list[int]
    # Every frame the fit's budget allows: on the demo every frame (1,693 fit frames) took occlusion's
    # AUROC from 0.887 (every 2nd frame) to 0.903 (bench/RESULTS.md); large datasets are thinned anyway.
    frame_stride: int = 1

    def stride_for(self, calibration_frames: int) -> int:
        """The stride the fit's pass runs at beside ``calibration_frames`` calibration frames.

        The fit keeps at most ``MAX_FIT_FRAMES`` frames; the calibration frames come first, and these
        episodes get what is left (at least half, however many calibration frames there are).
        """
        return self.stride_within(max(MAX_FIT_FRAMES - calibration_frames, MAX_FIT_FRAMES // 2))

    def stride_within(self, budget: int) -> int:
        """The stride that keeps these episodes to about ``budget`` frames, never finer than asked.

        The regression fits at most ``MAX_FIT_FRAMES`` frames: running the policy on more only to
        thin them out afterwards is costly on real data (50 episodes of 400 frames at stride 1 are
        20,000 forwards, about 2.5 hours at the 0.46 s of a default-ACT tick on a 2-core CPU). Episode
        lengths come from the dataset's metadata; unreadable ones keep the asked stride. One frame
        per episode is the coarsest it goes.
        """
        info = read_info(self.root)
        lengths = [episode_length(info, self.root, e) for e in self.episodes]
        if not lengths or any(n is None for n in lengths):
            return self.frame_stride
        stride = max(self.frame_stride, min(-(-sum(lengths) // max(1, budget)), max(lengths)))  # none finer can do
        while stride < max(lengths) and sum(-(-n // stride) for n in lengths) > budget:  # frames 0, s, 2s, ...
            stride += 1
        return stride


def _pass(runner: PolicyRunner, loaded: LoadedSae | None, root: Path, episodes: list[int], progress: bool, label: str,
          transform: Any = None, stride: int = 1, probe: CameraStateProbe | None = None) -> Pass:
    """Run every ``stride``-th frame of ``episodes`` (the SAE is skipped when ``loaded`` is None).

    With a fitted ``probe`` each frame's camera features are scored as they come and only the
    score is kept: an evaluation pass then holds a few numbers per frame, not the ~160 KB of
    features a frame of two 480x640 cameras gives.
    """
    fvu, errors, groups, features, states, scores, by_camera = [], [], [], [], [], [], []
    inputs = OUTPUT_ONLY
    layout = None
    info = read_info(root)
    for i, e in enumerate(episodes):
        # The episode's place in the pass in its bar's label: a pass over 100 episodes is otherwise
        # 100 bars in turn with no word of how many are left.
        for frame, tick in run_episode(runner, root, e, info=info, transform=transform, progress=progress,
                                       desc=f"{label} ep {e} ({i + 1}/{len(episodes)})", frame_stride=stride):
            if tick.capture is None or tick.capture.encoder_output is None:
                raise RuntimeError("the runner did not capture the encoder output")
            tokens = tick.capture.encoder_output[0]
            layout = tick.capture.layout
            if loaded is not None:
                ff = encode_frame(loaded.sae, tokens)
                fvu.append(ff.reconstruction_error)
                errors.append(ff.token_errors)
            groups.append(e)
            if layout.has_state:  # only the camera-state score reads them
                enc_in = tick.capture.encoder_input_at(0)
                if probe is None:
                    features.append(camera_features(tokens, layout, enc_in))
                    inputs = OUTPUT_ONLY if enc_in is None else OUTPUT_AND_INPUT
                elif frame.state is not None:
                    cams = probe.camera_scores(probe.features(tokens, layout, enc_in), frame.state)
                    scores.append(float(probe.combine(cams)[0]))
                    by_camera.append({c: float(s[0]) for c, s in cams.items()})
            # The corruptions measured here change images only, so the frame's state is what the policy saw.
            states.append(frame.state)
    has_state = bool(features or scores) and all(st is not None and np.size(st) > 0 for st in states)
    width = len(errors[0]) if errors else 0
    return Pass(np.asarray(fvu, dtype=np.float64), np.asarray(errors, dtype=np.float64).reshape(len(errors), width),
                np.asarray(groups), np.stack(features) if features else np.zeros((0, 0), np.float32),
                np.stack(states).astype(np.float64) if has_state else None, layout,
                np.asarray(scores, dtype=np.float64) if probe is not None and has_state else None,
                {c: np.array([b[c] for b in by_camera]) for c in by_camera[0]}
                if probe is not None and probe.per_camera and has_state and by_camera else {}, inputs)


def _fit_camera_state(cal: Pass, extra: Pass | None, settings: ScoreSettings,
                      calibration: dict[str, Any]) -> CameraStateProbe | None:
    """The camera-state regression, its summary put in ``calibration`` (or why there is none)."""
    if not cal.has_state:
        calibration["camera_state_skipped"] = "the policy takes no robot state to compare the cameras with"
        return None
    parts = [cal] if extra is None else [cal, extra]
    if any(p.feature_inputs != cal.feature_inputs for p in parts):  # one runner gives both: a bug, not bad input
        raise RuntimeError(f"camera features from {[p.feature_inputs for p in parts]} cannot be fitted together")
    try:
        probe, summary = fit_camera_state(np.concatenate([p.features for p in parts]),
                                          np.concatenate([p.states for p in parts]),
                                          episode_groups(*(p.groups for p in parts)),
                                          camera_grids(cal.layout), settings, inputs=cal.feature_inputs)
    except CannotFit as exc:  # recorded in ood.json; anything else (a bug, a bad file) stops calibration
        calibration["camera_state_skipped"] = str(exc)
        return None
    episodes = summary["episodes"]
    if episodes < STEADY_STATE_FIT_EPISODES:
        # With --state-fit-dataset-root given already, more of its episodes (all by default) is the remedy.
        more = ("add the policy's training episodes (--state-fit-dataset-root)" if extra is None else
                "more of the policy's training episodes make it steadier (--state-fit-episode; all by default)")
        summary["episodes_note"] = (
            f"the camera-state regression learned from {episodes} episodes: with fewer than "
            f"{STEADY_STATE_FIT_EPISODES} it fits them better than new ones and its threshold flags more than "
            f"its target; {more}")
    if not probe.reads_encoder_input:
        # Said, so that a reader (and the demo's cache check) knows it is not by choice.
        summary["inputs_note"] = ("the policy's forward pass gave no encoder input tokens (a LeRobot that calls "
                                  "its encoder another way?): the regressions read the encoder's output only")
    calibration["camera_state"] = summary
    return probe


def check_episodes_apart(root: Path, episodes: list[int], evaluate: list[int] | None,
                         state_fit: StateFit | None) -> None:
    """Calibration, evaluation and camera-state fit episodes must not share an episode.

    The threshold is judged on episodes it was not fitted on, and the camera-state regression is
    cross-fitted by whole episodes: the same episode on two sides would defeat both.
    """
    if evaluate and set(evaluate) & set(episodes):
        raise UserError("--evaluate-episode overlaps --episode: evaluate on episodes the threshold was not fitted on")
    if state_fit is not None and state_fit.root.resolve() == Path(root).resolve():
        shared = sorted(set(state_fit.episodes) & (set(episodes) | set(evaluate or [])))
        if shared:
            raise UserError(f"--state-fit-episode shares episode(s) {shared} with --episode/--evaluate-episode "
                            "of the same dataset: the camera-state regression must learn from other episodes")


def _trained_on(loaded: LoadedSae, root: Path, episodes: list[int]) -> tuple[list[int], str] | None:
    """Which of ``root``'s ``episodes`` the SAE was trained on, and the hint to use the ones it held out.

    None when it saw none of them, trained on another dataset, or is from before ``training_episodes``
    was recorded in its metrics (or they are damaged): nothing to say then.
    """
    try:
        metrics = json.loads((loaded.directory / METRICS_FILE).read_text(encoding="utf-8"))
        trained = {int(e) for e in metrics.get("training_episodes") or []}
        held = [int(e) for e in metrics.get("heldout_episodes") or []]
        trained_root = Path((loaded.cfg.source or {})["dataset_root"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):  # a damaged metrics.json: no note
        return None
    seen = sorted(trained & set(episodes))
    if not seen or trained_root.resolve() != Path(root).resolve():
        return None
    return seen, f" (it held out {episode_ranges(held)})" if held else ""


def sae_training_note(loaded: LoadedSae, root: Path, episodes: list[int]) -> str | None:
    """Why a threshold fitted on episodes the SAE was trained on is too low, or None.

    The SAE reconstructs its own training tokens better than new ones: on the demo, 8 of its training
    episodes gave a p99 threshold of 0.0148 against 0.0285 from 8 episodes it held out of the same
    dataset (whose median frame, 0.0117, is close to that threshold).
    """
    return _training_note(loaded, root, episodes, "calibration", "it reconstructs them better than new data, so "
                          "this threshold is lower than it should be and flags more ordinary frames than its target; "
                          "calibrate")


def evaluation_training_note(loaded: LoadedSae, root: Path, episodes: list[int]) -> str | None:
    """Why an evaluation on episodes the SAE was trained on flatters it, or None.

    Their clean frames reconstruct better than new data would, so they sit further below the corrupted
    ones than new clean frames do: the AUROCs read higher, and fewer clean frames are flagged.
    """
    return _training_note(loaded, root, episodes, "evaluation", "it reconstructs their clean frames better than new "
                          "data, so these AUROCs are higher and the clean flagged fraction lower than on new data; "
                          "evaluate")


def _training_note(loaded: LoadedSae, root: Path, episodes: list[int], role: str, consequence: str) -> str | None:
    """``role`` episodes among the SAE's training episodes: how many, ``consequence``, and which to use."""
    trained = _trained_on(loaded, root, episodes)
    if trained is None:
        return None
    seen, unseen = trained
    return (f"{len(seen)} of the {len(episodes)} {role} episodes ({episode_ranges(seen)}) are among those the SAE "
            f"was trained on: {consequence} on episodes it did not see{unseen}")


def calibrate(runner: PolicyRunner, loaded: LoadedSae, root: Path, episodes: list[int], *, rule: str = "p99",
              sigmas: float = 3.0, evaluate: list[int] | None = None, progress: bool = True,
              score: ScoreSettings | None = None, state_fit: StateFit | None = None) -> CalibrationResult:
    check_episodes_apart(root, episodes, evaluate, state_fit)
    check_dimensions(runner, loaded)
    score = score or ScoreSettings()
    info = read_info(root)
    cal = _pass(runner, loaded, root, episodes, progress, "calibrate")
    fit = fit_threshold(cal.fvu, rule, sigmas)
    calibration = {"sae_id": loaded.sae_id, "pai_ros_version": __version__, "score": "per-frame FVU",
                   "policy_path": str(runner.loaded.path), "dataset_root": str(root), "episodes": episodes, **fit}
    rename = camera_rename_for(runner, info)
    if rename:
        calibration["camera_rename"] = rename
    seen = sae_training_note(loaded, root, episodes)
    if seen:
        calibration["sae_training_note"] = seen
    positions = None
    try:
        positions, summary = calibrate_positions(cal.token_errors, cal.groups, score)
        calibration["position_score"] = {"file": POSITIONS_FILE, **summary}
    except CannotFit as exc:
        # Too few frames for held-out statistics: the frame-level threshold still stands.
        calibration["position_score_skipped"] = str(exc)
    extra = None
    if state_fit is not None and cal.has_state:
        stride = state_fit.stride_for(len(cal.groups))
        extra = _pass(runner, None, state_fit.root, state_fit.episodes, progress, "camera-state fit", stride=stride)
        if not extra.has_state:  # said, not silently dropped: the user asked for these episodes
            raise UserError(f"{state_fit.root} has no robot state (observation.state) for the camera-state "
                            "regression to learn from")
        calibration["camera_state_fit"] = {"dataset_root": str(state_fit.root), "episodes": state_fit.episodes,
                                           "frame_stride": stride}
        if stride != state_fit.frame_stride:
            calibration["camera_state_fit"]["note"] = (
                f"ran with a frame stride of {stride} instead of {state_fit.frame_stride}: the regression fits at "
                f"most {MAX_FIT_FRAMES} frames, and running more would only have dropped them after")
    probe = _fit_camera_state(cal, extra, score, calibration)
    if not evaluate:
        return CalibrationResult(calibration, positions=positions, camera_state=probe)
    first = next(iter_episode(root, evaluate[0], info, rename=runner.camera_rename))
    shapes = {c: im.shape for c, im in first.images.items() if c in runner.spec.cameras}
    kinds = corruptions([c for c in runner.spec.cameras], shapes)
    clean = _pass(runner, loaded, root, evaluate, progress, "clean", probe=probe)
    corrupted = {name: _pass(runner, loaded, root, evaluate, progress, name, fn, probe=probe)
                 for name, fn in kinds.items()}
    threshold = fit["threshold"]
    report = {
        "sae_id": loaded.sae_id, "calibration_episodes": episodes, "evaluation_episodes": evaluate,
        "threshold": threshold, "rule": rule,
        "clean": _error_stats(clean.fvu, threshold),
        "corruptions": {name: {**_error_stats(c.fvu, threshold), "auroc": auroc(clean.fvu, c.fvu)}
                        for name, c in corrupted.items()},
    }
    flattered = evaluation_training_note(loaded, root, evaluate)
    if flattered:
        report["sae_training_note"] = flattered
    clean_scores, corrupted_scores = None, {}
    if positions is not None:
        st = calibration["position_score"]["threshold"]
        clean_scores = frame_scores(positions, clean.token_errors, score)
        report["position_score_threshold"] = st
        report["clean"]["score_flagged_fraction"] = float((clean_scores > st).mean())
        for name, c in corrupted.items():
            corrupted_scores[name] = s = frame_scores(positions, c.token_errors, score)
            report["corruptions"][name].update(score_auroc=auroc(clean_scores, s),
                                               score_flagged_fraction=float((s > st).mean()))
    if probe is not None and clean.camera_state_scores is not None:
        ct = calibration["camera_state"]["threshold"]
        base = clean.camera_state_scores
        report["camera_state_threshold"] = ct
        report["clean"]["camera_state_flagged_fraction"] = float((base > ct).mean())
        for name, c in corrupted.items():
            s = c.camera_state_scores
            report["corruptions"][name].update(camera_state_auroc=auroc(base, s),
                                               camera_state_flagged_fraction=float((s > ct).mean()))
            if c.camera_scores:  # which camera disagrees
                report["corruptions"][name]["camera_state_over_own_threshold"] = _over_own_threshold(c)
        if clean.camera_scores:
            report["clean"]["camera_state_over_own_threshold"] = _over_own_threshold(clean)
    if "swapped_cameras" not in kinds:
        report["note"] = "swapped_cameras needs two or more cameras of the same size"
    return CalibrationResult(calibration, report, clean.fvu, {n: c.fvu for n, c in corrupted.items()}, positions,
                             clean_scores, corrupted_scores, probe)


def _error_stats(errors: np.ndarray, threshold: float) -> dict[str, Any]:
    """A pass's frames, mean error and share over ``threshold``, all over its frames with a finite error
    (as the AUROC is), with ``non_finite_frames`` saying how many others there were, when any."""
    kept = finite(errors)
    n = int(np.asarray(errors).size - kept.size)
    return {"frames": int(np.asarray(errors).size), **({"non_finite_frames": n} if n else {}),
            "mean_error": float(kept.mean()) if kept.size else math.nan,  # NaN as the AUROC of no frame
            "flagged_fraction": float((kept > threshold).mean()) if kept.size else math.nan}


def _over_own_threshold(p: Pass) -> dict[str, float]:
    """Per camera, the share of the pass's frames over that camera's own threshold (its score > 1)."""
    return {camera: float((scores > 1.0).mean()) for camera, scores in p.camera_scores.items()}


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
    if result.camera_state is not None:
        sha = save_probe(result.camera_state, directory, loaded.sae_id)
        calibration["camera_state"] = {**calibration["camera_state"], "sha256": sha}
        written.append(directory / CAMERA_STATE_FILE)
    # The old report and plot judged the old threshold: gone before the new ood.json lands, so an
    # interruption from here on leaves no report (or a plot without one), never an old one that
    # reads as the new calibration's.
    (directory / REPORT_FILE).unlink(missing_ok=True)
    (directory / PLOT_FILE).unlink(missing_ok=True)
    write_json_atomic(directory / OOD_FILE, calibration)
    if result.positions is None:
        (directory / POSITIONS_FILE).unlink(missing_ok=True)  # named by no ood.json any more
    if result.camera_state is None:
        (directory / CAMERA_STATE_FILE).unlink(missing_ok=True)
    report = result.report
    if report is not None and result.clean is not None:
        aurocs = {name: c["auroc"] for name, c in report["corruptions"].items()}
        plot_ood(result.clean, result.corrupted, report["threshold"], aurocs, directory / PLOT_FILE)
        write_json_atomic(directory / REPORT_FILE, report)  # last: a report is there only beside its plot
        written += [directory / REPORT_FILE, directory / PLOT_FILE]
    return written


def summary_lines(result: CalibrationResult, written: list[Path]) -> list[str]:
    """What ``pai sae calibrate`` prints: each threshold, its notes, and the AUROC per corruption."""
    lines: list[str] = []
    say = lines.append
    c = result.calibration
    say(f"OOD threshold {c['threshold']:.4g} ({c['rule']}) from {c['frames']} frames -> {written[0]}")
    if c.get("sae_training_note"):
        say(f"note: {c['sae_training_note']}")
    pos = c.get("position_score")
    if pos:  # the per-position score (issue 14): is_ood follows it
        say(f"per-position OOD score threshold {pos['threshold']:.4g} (target FPR {pos['target_fpr']:g}, "
            f"cross-fitted on {pos['held_out_frames']} frames)")
        if pos.get("note"):
            say(f"note: {pos['note']}")
    if c.get("camera_state_fit", {}).get("note"):
        say(f"note: the camera-state fit {c['camera_state_fit']['note']}")
    cs = c.get("camera_state")
    if cs:
        say(f"camera-state threshold {cs['threshold']:.4g} (cameras vs joints; target FPR {cs['target_fpr']:g}, "
            f"cross-fitted on {cs['held_out_frames']} frames of {cs['episodes']} episodes)")
        regressions = {c: r for c, r in cs.get("regressions", {}).items() if c}  # "": one over every camera
        if regressions:
            say("  one regression per camera; state explained on held-out episodes (R^2): " + "; ".join(
                f"{c} {'/'.join('-' if v is None else f'{v:.2f}' for v in r['state_explained'])}"  # -: a constant joint
                for c, r in regressions.items()))
        for key in ("episodes_note", "note"):
            if cs.get(key):
                say(f"note: {cs[key]}")
    elif c.get("camera_state_skipped"):
        say(f"no camera-state score: {c['camera_state_skipped']}")
    if result.report:
        if result.report.get("sae_training_note"):
            say(f"note: {result.report['sae_training_note']}")
        for name, r in result.report["corruptions"].items():
            score = f"; per-position score AUROC {r['score_auroc']:.3f}" if "score_auroc" in r else ""
            if "camera_state_auroc" in r:
                score += (f"; camera-state AUROC {r['camera_state_auroc']:.3f}, flagged "
                          f"{r['camera_state_flagged_fraction']:.1%} (clean "
                          f"{result.report['clean']['camera_state_flagged_fraction']:.1%})")
            if r.get("camera_state_over_own_threshold"):
                score += " (over their own threshold: " + ", ".join(
                    f"{cam} {v:.0%}" for cam, v in r["camera_state_over_own_threshold"].items()) + ")"
            clean_left = result.report["clean"].get("non_finite_frames", 0)
            if clean_left or r.get("non_finite_frames"):
                score += (f" ({clean_left} clean and {r.get('non_finite_frames', 0)} corrupted frames with a "
                          "non-finite error left out of the AUROC)")
            say(f"  {name}: AUROC {r['auroc']:.3f}, flagged {r['flagged_fraction']:.1%} "
                f"(clean flagged {result.report['clean']['flagged_fraction']:.1%}){score}")
    return lines
