"""What each feature does to the actions: ablate it, clamp it high, measure the change of the chunk.

Ranking features by how strongly they fire says what the policy *sees*; ranking them by how much
the predicted actions change when they are removed says what it *uses*. For each of the
analysis's top features, over held-out frames of the recording (evenly spaced), the policy runs
unchanged, with the feature ablated (zero on every token) and with it clamped to its strongest
activation in the recording (on every token), at the SAE's site with the SAE's error term kept
(:mod:`pai_ros.sae.steering`). The effect is the root-mean-square change of the predicted action
chunk, in the policy's normalised action units (each dimension in units of its training standard
deviation or range, so dimensions are comparable). ``action_dims`` and ``horizon`` narrow what is
measured to the part of the action that matters for a question, e.g. only the gripper over the
next few steps: on the demo the whole-chunk effect is dominated by the reach, while success is
decided by when the gripper closes.

Output: ``RESULTS/analysis/effects.json`` (per feature: both effects, its rank by effect and by
activation, plus the rank correlation of the two rankings) and ``effects.png``. The browser shows
the effect next to the activation statistics.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pai_ros import __version__
from pai_ros.data.episodes import episode_length, iter_picked_frames, pick_evenly, read_info
from pai_ros.errors import UserError
from pai_ros.features.results import EFFECTS_FILE, RECORD_FILE, ResultsDir
from pai_ros.jsonfile import write_json_atomic
from pai_ros.plotting import pyplot, save_figure
from pai_ros.policy.observation import Observation
from pai_ros.policy.runner import PolicyRunner
from pai_ros.ranks import average_ranks
from pai_ros.require import require
from pai_ros.sae.model import LoadedSae
from pai_ros.sae.steering import Steering, SteeringHook

EFFECTS_PLOT = "effects.png"


@dataclass(frozen=True)
class EffectSettings:
    top_features: int = 32
    frames: int = 64
    clamp_scale: float = 1.0  # clamp to this times the feature's strongest activation in the recording
    batch_size: int = 16
    action_dims: tuple[int, ...] | None = None  # action dimensions measured (None: all)
    horizon: int | None = None  # the first this many actions of the chunk (None: the whole chunk)

    def __post_init__(self) -> None:
        for name in ("top_features", "frames", "batch_size"):
            require(f"--{name.replace('_', '-')}", getattr(self, name), at_least=1)
        require("--clamp-scale", self.clamp_scale, above=0)
        if self.horizon is not None:
            require("--horizon", self.horizon, at_least=1)
        if self.action_dims is not None and (not self.action_dims or min(self.action_dims) < 0
                                             or len(set(self.action_dims)) != len(self.action_dims)):
            raise UserError(f"--action-dims must be distinct indices >= 0, got {list(self.action_dims)}")

    def units(self) -> str:
        dims = "all action dimensions" if self.action_dims is None else f"action dimensions {list(self.action_dims)}"
        steps = "the whole chunk" if self.horizon is None else f"its first {self.horizon} actions"
        return f"RMS change of the normalised action chunk ({dims}, {steps})"


def held_out_batches(runner: PolicyRunner, root: Path, episodes: list[int], frames: int,
                     batch_size: int) -> tuple[list[dict[str, torch.Tensor]], int]:
    """``frames`` frames spread evenly over ``episodes``, preprocessed and stacked into batches (and how many)."""
    info = read_info(root)
    lengths = {e: episode_length(info, root, e) for e in episodes}
    unknown = [e for e, n in lengths.items() if n is None]
    if unknown:
        raise UserError(f"cannot read the length of episode(s) {unknown} from {root / 'meta' / 'episodes'}")
    pairs = [(e, f) for e in episodes for f in range(lengths[e])]
    if not pairs:
        raise UserError(f"the recorded episodes {episodes} of {root} have no frames")
    pick = {pairs[i] for i in pick_evenly(len(pairs), frames)}
    singles = [runner.preprocess(Observation(frame.images, frame.state, frame.env_state))
               for frame in iter_picked_frames(root, episodes, pick, info, rename=runner.camera_rename)]
    # The preprocessor's batch also carries non-tensor entries (task text, complementary data): keep the first's.
    batches = [{k: torch.cat([b[k] for b in singles[i:i + batch_size]]) if torch.is_tensor(v) else v
                for k, v in singles[i].items()} for i in range(0, len(singles), batch_size)]
    return batches, len(singles)


@torch.inference_mode()
def chunk_changes(runner: PolicyRunner, loaded: LoadedSae, batches: list[dict[str, torch.Tensor]],
                  steerings: list[Steering], progress: bool = True, *, action_dims: tuple[int, ...] | None = None,
                  horizon: int | None = None) -> np.ndarray:
    """RMS change of the normalised action chunk under each steering, averaged over frames ``[len(steerings)]``.

    ``action_dims`` / ``horizon``: only those dimensions / the first ``horizon`` actions are compared.
    """
    policy, sae = runner.policy, loaded.sae.to(runner.device)
    hook = SteeringHook(policy.model.encoder)

    def measured(chunk: torch.Tensor) -> torch.Tensor:
        chunk = chunk[:, :horizon]
        return chunk if action_dims is None else chunk[..., list(action_dims)]

    def predict(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return measured(policy.predict_action_chunk(batch))

    try:
        base = [predict(b) for b in batches]
        out = np.zeros(len(steerings))
        for i, steering in enumerate(tqdm(steerings, desc="feature effects", unit="steering", disable=not progress)):
            hook.arm(sae, steering)
            try:
                diffs = [((predict(b) - ref) ** 2).mean(dim=(1, 2)).sqrt()
                         for b, ref in zip(batches, base)]
            finally:
                hook.disarm()
            out[i] = float(torch.cat(diffs).mean())
        return out
    finally:
        hook.remove()


def _check_measured_span(runner: PolicyRunner, settings: EffectSettings) -> None:
    """``--action-dims`` and ``--horizon`` within the policy's action chunk."""
    size, dim = runner.chunk_size, int(runner.loaded.config.action_feature.shape[0])
    if settings.action_dims is not None and max(settings.action_dims) >= dim:
        raise UserError(f"--action-dims {list(settings.action_dims)}: the policy's actions have {dim} dimensions "
                        f"(0..{dim - 1})")
    if settings.horizon is not None and settings.horizon > size:
        raise UserError(f"--horizon {settings.horizon}: the policy predicts chunks of {size} actions")


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rank correlation, ties at their average rank, over the pairs with both values finite;
    None (not measured) below two such pairs or when either side is constant (effects are often
    exactly 0: all tied is no ranking to correlate)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    a, b = a[both], b[both]
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(np.corrcoef(average_ranks(a), average_ranks(b))[0, 1])


def effect_ranks(effects: np.ndarray) -> np.ndarray:
    """1-based rank of each effect, largest first; equal effects share the best rank of their tie
    ("1, 2, 2, 4"), rather than taking distinct ranks in the order of the activation ranking. A
    non-finite effect (a steered prediction that overflowed) is measured as nothing: it ranks last."""
    effects = np.asarray(effects, dtype=np.float64)
    effects = np.where(np.isfinite(effects), effects, -np.inf)
    return 1 + (effects[None, :] > effects[:, None]).sum(axis=1)


def features_to_measure(results: ResultsDir, loaded: LoadedSae, settings: EffectSettings) -> list[dict[str, Any]]:
    """The analysis's top features, once the directory is known to fit the SAE (no policy needed:
    a command checks this before it spends the time to load one)."""
    analysis = results.analysis()
    if results.record is None:
        raise results.lacking(RECORD_FILE, results.earlier_step() or "effects need a `pai features record` directory "
                              "(a bag's features have no frames to run the policy on)")
    if analysis.get("sae_id") != loaded.sae_id:
        raise UserError(f"the analysis in {results.root} is of SAE {analysis.get('sae_id')}, but {loaded.directory} "
                        f"now holds SAE {loaded.sae_id} (trained again since?): record and analyse again")
    ranked = analysis["features"][:settings.top_features]
    if not ranked:
        raise UserError(f"the analysis in {results.root} ranks no feature (none fired)")
    return ranked


def feature_effects(results: ResultsDir, runner: PolicyRunner, loaded: LoadedSae,
                    settings: EffectSettings = EffectSettings(), *, progress: bool = True) -> Path:
    """Measure and write ``analysis/effects.json`` + ``effects.png``; returns the JSON's path."""
    ranked = features_to_measure(results, loaded, settings)
    _check_measured_span(runner, settings)  # before frames are read
    analysis, record = results.analysis(), results.record
    episodes = [s.episode for s in results.sources()]
    root = Path(record["dataset_root"])
    batches, frames = held_out_batches(runner, root, episodes, settings.frames, settings.batch_size)
    d_sae = loaded.cfg.d_sae
    steerings = []
    for f in ranked:
        peak = float(f["stats"]["max"]) * settings.clamp_scale
        steerings.append(Steering.build([f["feature"]], "ablate", [], num_features=d_sae, max_value=np.inf))
        steerings.append(Steering.build([f["feature"]], "clamp", [peak], num_features=d_sae, max_value=np.inf))
    change = chunk_changes(runner, loaded, batches, steerings, progress, action_dims=settings.action_dims,
                           horizon=settings.horizon)
    ablate, clamp = change[0::2], change[1::2]
    effect_rank = effect_ranks(ablate)
    rows = [{"feature": int(f["feature"]), "activation_rank": int(f["rank"]), "effect_rank": int(effect_rank[i]),
             "ablate_effect": float(ablate[i]), "clamp_effect": float(clamp[i]),
             "clamp_value": float(steerings[2 * i + 1].values[0]), "activation_score": float(f["score"])}
            for i, f in enumerate(ranked)]
    out = {
        "format": 1, "pai_ros_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "analysis_created": analysis.get("created"), "sae_id": loaded.sae_id, "rank_by": analysis.get("rank_by"),
        "frames": frames, "episodes": episodes,
        "clamp_scale": settings.clamp_scale, "units": settings.units(),
        "action_dims": None if settings.action_dims is None else list(settings.action_dims),
        "horizon": settings.horizon,
        "rank_correlation_effect_vs_activation": spearman(-ablate, -np.array([f["score"] for f in ranked])),
        "features": sorted(rows, key=lambda r: r["effect_rank"]),
    }
    target = results.analysis_dir / EFFECTS_FILE
    _plot(rows, results.analysis_dir / EFFECTS_PLOT)
    write_json_atomic(target, out)
    return target


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    rows = sorted(rows, key=lambda r: r["activation_rank"])
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.32 * len(rows) + 2), 3.6))
    ax.bar(x - 0.2, [r["ablate_effect"] for r in rows], 0.4, label="ablated")
    ax.bar(x + 0.2, [r["clamp_effect"] for r in rows], 0.4, label="clamped at its peak")
    ax.set_xticks(x, [str(r["feature"]) for r in rows], rotation=90, fontsize=7)
    ax.set_xlabel("feature (in order of the activation ranking)")
    ax.set_ylabel("RMS change of the action chunk\n(normalised units)")
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=110)
