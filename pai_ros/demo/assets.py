"""The demo assets cache: build once, verify every time, never expose a half-built asset.

Layout under ``<cache>/demo/v<GENERATOR_VERSION>-<settings hash>/``::

    datasets/pai_demo_reach/            training episodes (LeRobotDataset v3.0)
    datasets/pai_demo_reach_heldout/    held-out episodes, another seed
    policy/                             the trained ACT checkpoint (pretrained_model)
    train/                              lerobot-train's output dir and log (no optimiser state)
    report/                             loss curve PNG, held-out evaluation, timings
    closed_loop/                        the policy driving the simulated demo robot: success rate
                                        (built by pai_ros.demo.closed_loop, which `pai demo-assets` runs)

Each stage is built aside, swapped into place when complete and sealed with a manifest of its
files (:mod:`pai_ros.demo.stage_cache`); a stage that no longer matches it is rebuilt, and stale
partial directories from an interrupted run are removed. This module says what each stage is,
how it is built and when a later stage is out of date.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pai_ros.demo.dataset import DatasetSpec
from pai_ros.demo.learning_gate import LearningGate
from pai_ros.demo.stage_cache import (
    MANIFEST,
    build_stage,
    default_cache_dir,
    ensure_stage,
    is_sealed,
    locked,
    prepare_root,
    say,
)
from pai_ros.demo.train import TrainSettings
from pai_ros.errors import UserError
from pai_ros.jsonfile import json_text
from pai_ros.require import require
from pai_ros.sim.scene import SceneConfig
from pai_ros.staging import (
    remove_all_staging_under,
    staging_path,
    swap_into_place,
)

if TYPE_CHECKING:  # heavy imports (torch, LeRobot) stay inside the builders
    from pai_ros.policy.runner import PolicyRunner
    from pai_ros.sae.model import LoadedSae

#: Bump when the scene renderer, the dataset writer or the training recipe changes meaning:
#: every cache built by an older generator is then rebuilt.
GENERATOR_VERSION = 1
TRAIN_REPO_ID = "pai/pai_demo_reach"
HELDOUT_REPO_ID = "pai/pai_demo_reach_heldout"


@dataclass(frozen=True)
class DemoSettings:
    # Episodes end 4 frames after the grasp (the gripper is closed in about a third of the frames instead of
    # 73%); twice the layouts of the first demo for about the same number of frames (~1,500).
    scene: SceneConfig = field(default_factory=lambda: SceneConfig(frames_after_close=4))
    train_episodes: int = 100
    heldout_episodes: int = 16
    train_seed: int = 1
    heldout_seed: int = 2
    training: TrainSettings = field(default_factory=TrainSettings)
    gate: LearningGate = field(default_factory=LearningGate)

    def with_steps(self, steps: int) -> DemoSettings:
        require("--steps", steps, at_least=1)
        return dataclasses.replace(self, training=dataclasses.replace(self.training, steps=steps))

    def key(self) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return f"v{GENERATOR_VERSION}-{hashlib.sha256(blob).hexdigest()[:10]}"

    @property
    def train_spec(self) -> DatasetSpec:
        return DatasetSpec(TRAIN_REPO_ID, self.train_episodes, self.train_seed)

    @property
    def heldout_spec(self) -> DatasetSpec:
        return DatasetSpec(HELDOUT_REPO_ID, self.heldout_episodes, self.heldout_seed)


@dataclass
class DemoAssets:
    root: Path
    settings: DemoSettings

    @property
    def dataset_root(self) -> Path:
        return self.root / "datasets" / "pai_demo_reach"

    @property
    def heldout_root(self) -> Path:
        return self.root / "datasets" / "pai_demo_reach_heldout"

    @property
    def policy_dir(self) -> Path:
        return self.root / "policy"

    @property
    def train_dir(self) -> Path:
        return self.root / "train"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def sae_dir(self) -> Path:
        return self.root / "sae"

    @property
    def closed_loop_dir(self) -> Path:
        return self.root / "closed_loop"

    def has_sae(self) -> bool:
        return is_sealed(self.sae_dir)

    def has_policy(self) -> bool:
        return is_sealed(self.policy_dir)

    def describe(self) -> str:
        lines = [f"demo assets ({self.settings.key()}) in {self.root}",
                 f"  dataset:          {self.dataset_root}  (repo_id {TRAIN_REPO_ID})",
                 f"  held-out dataset: {self.heldout_root}  (repo_id {HELDOUT_REPO_ID})"]
        if self.has_policy():
            lines.append(f"  policy:           {self.policy_dir}")
            summary = self.report_dir / "summary.json"
            if summary.is_file():
                s = json.loads(summary.read_text())
                ev = s.get("heldout", {})
                lines.append(f"  report:           {self.report_dir}  (final training loss "
                             f"{s.get('final_loss', float('nan')):.4f}, held-out action MAE "
                             f"{ev.get('mae_policy', float('nan')):.4f} vs {ev.get('mae_images_swapped', float('nan')):.4f} "
                             "with swapped images)")
                if s.get("learned") is False:
                    lines.append("  WARNING:          this policy did not learn the task (training_attempts in "
                                 "report/summary.json); the demo's pictures and figures will not match the README")
            if self.has_sae():
                lines.append(f"  SAE:              {self.sae_dir}  (features for policy_node's sae_path)")
            closed = self.closed_loop_dir / CLOSED_LOOP_FILE
            if is_sealed(self.closed_loop_dir) and closed.is_file():
                c = json.loads(closed.read_text())
                lines.append(f"  closed loop:      {c['success_rate']:.0%} of {c['episodes']} simulated episodes "
                             f"(seed {c['seed']}) succeed, mean final distance {c['mean_final_distance']:.3f}  "
                             f"({self.closed_loop_dir})")
        else:
            lines.append("  policy:           not trained (run without --no-train)")
        return "\n".join(lines)


# ------------------------------------------------------------------------------- stages

def ensure_demo_assets(cache_dir: Path | None = None, settings: DemoSettings | None = None, *,
                       rebuild: bool = False, train: bool = True, progress: bool = True) -> DemoAssets:
    """Return the demo assets, building whatever is missing or corrupt."""
    settings = settings or DemoSettings()
    root = prepare_root(Path(cache_dir) if cache_dir else default_cache_dir(), settings.key())
    assets = DemoAssets(root=root, settings=settings)
    with locked(root):
        # Only under the lock: outside it, a "stale" staging directory may be another process's build.
        remove_all_staging_under(root)
        for final, spec in ((assets.dataset_root, settings.train_spec), (assets.heldout_root, settings.heldout_spec)):
            ensure_stage(final, f"dataset {spec.repo_id}",
                          lambda tmp, spec=spec: _build_dataset(tmp, spec, settings.scene, progress), rebuild)
        if train:
            # Training depends on the dataset: a rebuilt dataset invalidates the policy.
            stale = is_sealed(assets.policy_dir) and (
                assets.policy_dir / MANIFEST).stat().st_mtime < (assets.dataset_root / MANIFEST).stat().st_mtime
            ensure_stage(assets.policy_dir, "demo policy",
                          lambda tmp: _build_policy(tmp, assets, progress), rebuild or stale)
            ensure_stage(assets.report_dir, "demo report",
                          lambda tmp: _build_report(tmp, assets), rebuild or stale or _report_outdated(assets))
            ensure_stage(assets.sae_dir, "demo SAE", lambda tmp: _build_sae(tmp, assets, progress),
                          rebuild or stale or _older_than_policy(assets.sae_dir, assets))
            missing = _calibration_missing(assets)
            if missing:
                say(f"recalibrating the cached demo SAE: its ood.json predates {missing} "
                     "(the SAE is kept; about 3 min on a 2-core CPU)")
                build_stage(assets.sae_dir, lambda tmp: _recalibrate_sae(tmp, assets, progress))

    return assets


def _report_outdated(assets: DemoAssets) -> bool:
    return _older_than_policy(assets.report_dir, assets)


def _calibration_missing(assets: DemoAssets) -> str | None:
    """Which OOD score a sealed demo SAE's calibration predates (None: it has them all, or there is none).

    Such an SAE is recalibrated, not retrained: the scores are fitted from the same SAE and policy.
    """
    ood = assets.sae_dir / "ood.json"
    if not is_sealed(assets.sae_dir) or not ood.is_file():
        return None
    try:
        data = json.loads(ood.read_text())
    except (OSError, ValueError):
        return None  # unreadable: the manifest check rebuilds a corrupt stage
    missing = [name for key, name in (("position_score", "the per-position score"),
                                      ("camera_state", "the camera-state score"))
               if key not in data and f"{key}_skipped" not in data]
    fit = data.get("camera_state_fit")
    stride = fit.get("frame_stride", 1) if isinstance(fit, dict) else 1
    if isinstance(stride, int) and stride > 1 and "note" not in fit:
        # Fitted on every 2nd training frame by choice (the old default), not for want of room:
        # on the demo every frame detects occlusion better (AUROC 0.887 -> 0.903).
        missing.append("the camera-state fit on every training frame")
    camera = data.get("camera_state")
    inputs = camera.get("inputs") if isinstance(camera, dict) else None
    reads_input = isinstance(inputs, list) and "encoder_input" in inputs
    if isinstance(camera, dict) and ("regressions" not in camera or not (reads_input or "inputs_note" in camera)):
        # One regression over both cameras, or per camera on the encoder's output only (both
        # until 2026-12-06): one per camera on its input and output tokens names the camera that
        # disagrees and detects more (occlusion 0.905 / 0.910 per camera on the output alone ->
        # 0.948 / 0.922 on the demo's two splits, noise 0.78 / 0.67 -> 0.90 / 0.85; RESULTS).
        # A calibration that could not read the input says so (inputs_note): not redone forever.
        missing.append("the per-camera camera-state regressions on the encoder's input and output")
    return " and ".join(missing) or None


def _older_than_policy(stage: Path, assets: DemoAssets) -> bool:
    return is_sealed(stage) and (stage / MANIFEST).stat().st_mtime < (assets.policy_dir / MANIFEST).stat().st_mtime


def _build_dataset(tmp: Path, spec: DatasetSpec, scene: SceneConfig, progress: bool) -> dict:
    from pai_ros.demo.dataset import write_dataset

    start = time.monotonic()
    say(f"rendering {spec.num_episodes} episodes into {tmp.name} (LeRobotDataset v3.0, H.264 videos)")
    frames = write_dataset(tmp, spec, scene, progress=progress)
    _check_dataset_loads(tmp, spec, frames)
    return {"seconds": round(time.monotonic() - start, 1), "repo_id": spec.repo_id}


def _check_dataset_loads(root: Path, spec: DatasetSpec, expected: int) -> None:
    """Only a dataset that LeRobot reads back in full gets sealed."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from pai_ros.data.video import video_backend

    ds = LeRobotDataset(spec.repo_id, root=root, video_backend=video_backend())
    if ds.num_episodes != spec.num_episodes or ds.num_frames != expected:
        raise RuntimeError(f"dataset written with {ds.num_episodes} episodes / {ds.num_frames} frames, "
                           f"expected {spec.num_episodes} / {expected}")
    ds[len(ds) - 1]  # decodes the last frame of every camera


def better_attempt(candidate: dict, kept: dict) -> bool:
    """Whether a training attempt should replace the one kept so far: one that passed the learning gate beats
    one that did not (whatever their chunk errors); between equals, the lower chunk error wins."""
    if candidate["learned"] != kept["learned"]:
        return bool(candidate["learned"])
    return candidate["chunk_error_ratio"] < kept["chunk_error_ratio"]


def _build_policy(tmp: Path, assets: DemoAssets, progress: bool) -> dict:
    """Train, check on the held-out episodes that the policy learned the task, retrain with the next
    seed if not (at most ``gate.attempts`` trainings); the first that passes is kept, else the one with
    the lowest chunk error (:func:`better_attempt`)."""
    from pai_ros.data.video import video_backend
    from pai_ros.demo.evaluate import evaluate_heldout
    from pai_ros.demo.train import train_act

    gate = assets.settings.gate
    attempts: list[dict] = []
    best: tuple[Path, dict] | None = None  # (lerobot-train output dir, attempt info)
    for attempt in range(gate.attempts):
        s = dataclasses.replace(assets.settings.training, seed=assets.settings.training.seed + attempt)
        say(f"training the demo ACT with lerobot-train: {s.steps} steps, batch {s.batch_size}, seed {s.seed} "
             f"({s.steps / 60:.0f}-{s.steps * 2.3 / 60:.0f} min on a 2-core CPU, 1-2.3 s a step with its load)"
             + (f"; attempt {attempt + 1} of {gate.attempts}" if attempt else ""))
        work = staging_path(assets.train_dir, f"partial-seed{s.seed}")  # each attempt apart: the best is kept
        shutil.rmtree(work, ignore_errors=True)
        result = train_act(assets.dataset_root, TRAIN_REPO_ID, work, s, video_backend=video_backend(),
                           progress=progress)
        # Keep the run's log and config for reference; drop the optimiser state (hundreds of MB).
        for state_dir in work.glob("checkpoints/*/training_state"):
            shutil.rmtree(state_dir)
        os.replace(result.log_path, work / "lerobot-train.log")
        ev = evaluate_heldout(result.checkpoint_dir, assets.heldout_root, HELDOUT_REPO_ID)
        learned = ev.learned(gate)
        info = {"seed": s.seed, "seconds": round(result.seconds, 1), "loss_curve": result.loss_curve,
                "learned": learned, "chunk_error_ratio": round(ev.chunk_error_ratio, 4),
                "image_use_ratio": round(ev.image_use_ratio, 3), "gripper_accuracy": round(ev.gripper_accuracy, 3),
                "first_close_success": round(ev.first_close_success, 3)}
        attempts.append({k: v for k, v in info.items() if k != "loss_curve"})
        say(f"seed {s.seed}: {ev.verdict()}: " + ("learned the task" if learned else "did NOT learn the task"))
        if best is None or better_attempt(info, best[1]):
            if best is not None:
                shutil.rmtree(best[0], ignore_errors=True)
            best = (work, info)
        else:
            shutil.rmtree(work, ignore_errors=True)
        if learned:
            break
    assert best is not None
    work, info = best
    if not info["learned"]:
        say(f"WARNING: no training of {gate.attempts} learned the task (chunk error at most "
             f"{gate.max_chunk_error_ratio}x holding still, images at least {gate.min_image_use_ratio}x, first close "
             f"over the target in {gate.min_first_close_success:.0%} of episodes); "
             f"keeping seed {info['seed']}, the lowest chunk error. The demo's figures will not match the README's.")
    shutil.copytree(work / "checkpoints" / "last" / "pretrained_model", tmp)
    swap_into_place(work, assets.train_dir)
    return {**info, "settings": dataclasses.replace(assets.settings.training, seed=info["seed"]).as_dict(),
            "attempts": attempts, "total_seconds": round(sum(a["seconds"] for a in attempts), 1)}


def _build_report(tmp: Path, assets: DemoAssets) -> dict:
    from pai_ros.demo.evaluate import evaluate_heldout
    from pai_ros.demo.report import plot_loss_curve

    tmp.mkdir(parents=True)
    policy_info = json.loads((assets.policy_dir / MANIFEST).read_text())["info"]
    curve = [tuple(p) for p in policy_info.get("loss_curve", [])]
    say("evaluating the demo policy on the held-out episodes")
    ev = evaluate_heldout(assets.policy_dir, assets.heldout_root, HELDOUT_REPO_ID)
    if curve:
        plot_loss_curve(curve, tmp / "training_loss.png")
    summary = {
        "settings_key": assets.settings.key(),
        "training_seconds": policy_info.get("seconds"),
        "training_seed": policy_info.get("seed"),
        "learned": ev.learned(assets.settings.gate),  # see pai_ros.demo.learning_gate
        "training_attempts": policy_info.get("attempts", []),
        "training_steps": assets.settings.training.steps,
        "final_loss": curve[-1][1] if curve else float("nan"),
        "loss_curve": curve,
        "heldout": ev.as_dict(),
        "disk_bytes": {name: sum(p.stat().st_size for p in (assets.root / name).rglob("*") if p.is_file())
                       for name in ("datasets", "policy", "train")},
    }
    (tmp / "summary.json").write_text(json_text(summary))
    return {"final_loss": summary["final_loss"], "mae_policy": ev.mae_policy}


# The demo SAE's settings live outside DemoSettings on purpose: changing them rebuilds the SAE
# stage only, never the datasets or the (35-75-minute) policy. At most 3000 steps or 50 passes over
# the tokens, whichever is fewer (the toy assets of the tests have a few hundred tokens).
DEMO_SAE_STEPS = 3000
DEMO_SAE_EPOCHS = 50


def _build_sae(tmp: Path, assets: DemoAssets, progress: bool) -> dict:
    """Collect the policy's tokens on the training episodes, train a TopK SAE, calibrate its OOD
    threshold on the first half of the held-out episodes and report on the second half."""
    from pai_ros.data.episodes import read_info
    from pai_ros.policy.runner import activations_runner
    from pai_ros.sae.collect import CollectSettings, collect_activations
    from pai_ros.sae.model import load_sae
    from pai_ros.sae.train import TrainSettings
    from pai_ros.sae.train_output import run_training

    say("training the demo SAE: collect encoder tokens, train, calibrate (about 4 min on a 2-core CPU)")
    runner = activations_runner(assets.policy_dir, "auto")
    work = staging_path(assets.root / "activations")
    shutil.rmtree(work, ignore_errors=True)
    try:
        episodes = list(range(int(read_info(assets.dataset_root)["total_episodes"])))
        tokens = collect_activations(runner, assets.dataset_root, episodes, work, CollectSettings(),
                                     progress=progress).rows
        settings = TrainSettings()
        steps = min(DEMO_SAE_STEPS, max(100, DEMO_SAE_EPOCHS * tokens // settings.batch_size))
        _, metrics = run_training(work, tmp, dataclasses.replace(settings, steps=steps), progress=progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    loaded = load_sae(tmp)
    threshold = _calibrate_sae(runner, loaded, assets, progress)
    runner.close()
    return {"sae_id": loaded.sae_id, "fvu": metrics["fvu"], "l0": metrics["l0"],
            "dead_fraction": metrics["dead_fraction"], "ood_threshold": threshold}


def _calibrate_sae(runner: PolicyRunner, loaded: LoadedSae, assets: DemoAssets, progress: bool) -> float:
    """Calibrate the demo SAE on the first half of the held-out episodes, report on the second half;
    returns the frame-level threshold."""
    from pai_ros.data.episodes import read_info
    from pai_ros.sae.calibrate import StateFit, calibrate, write_calibration

    held = list(range(int(read_info(assets.heldout_root)["total_episodes"])))
    half = max(1, len(held) // 2)
    training = list(range(int(read_info(assets.dataset_root)["total_episodes"])))
    # The camera-state regression also learns from the training episodes: the held-out half alone
    # (8 episodes) gave it a threshold that flagged 16% of clean frames (bench/RESULTS.md).
    result = calibrate(runner, loaded, assets.heldout_root, held[:half], evaluate=held[half:] or None,
                       progress=progress, state_fit=StateFit(assets.dataset_root, training))
    write_calibration(loaded, result)
    return float(result.calibration["threshold"])


def _recalibrate_sae(tmp: Path, assets: DemoAssets, progress: bool) -> dict:
    """The cached demo SAE copied unchanged and calibrated again (for calibrations older than a score)."""
    from pai_ros.policy.runner import activations_runner
    from pai_ros.sae.model import load_sae

    shutil.copytree(assets.sae_dir, tmp, ignore=shutil.ignore_patterns(MANIFEST))
    info = json.loads((assets.sae_dir / MANIFEST).read_text()).get("info") or {}
    runner = activations_runner(assets.policy_dir, "auto")
    try:
        threshold = _calibrate_sae(runner, load_sae(tmp), assets, progress)
    finally:
        runner.close()
    return {**info, "ood_threshold": threshold}



# The closed-loop evaluation (pai_ros.demo.closed_loop builds it; `pai demo-assets` asks for it) lives
# outside DemoSettings on purpose, like the SAE's settings: adding or changing it evaluates again
# (a minute or two), never retrains the policy.
CLOSED_LOOP_EPISODES = 50
CLOSED_LOOP_SEED = 0
CLOSED_LOOP_FILE = "summary.json"


def ensure_policy_stage(assets: DemoAssets, final: Path, label: str, build: Callable[[Path], dict | None], *,
                        rebuild: bool = False) -> None:
    """Build a stage derived from the trained policy (under the cache lock), or reuse it while it is
    sealed, intact and newer than the policy. For packages above demo/ that add their own stage."""
    if not assets.has_policy():
        raise UserError(f"the demo policy is not trained yet in {assets.root}: run `pai demo-assets` first")
    with locked(assets.root):
        ensure_stage(final, label, build, rebuild or _older_than_policy(final, assets))
