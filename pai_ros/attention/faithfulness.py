"""Deletion and insertion: how faithful is a map to what the policy's actions depend on (no ground truth).

For one frame, one camera and one method's map over that camera's token cells:

* **deletion**: replace the cells with the blurred image, most important first (the method's
  ranking), and after each step measure how far the predicted actions moved from the
  prediction on the intact frame, in normalised action units (LeRobot's mean/std), divided by
  how far the fully blurred camera moves them. The curve runs from 0 (nothing deleted) to 1
  (all deleted); a faithful ranking makes it rise early.
* **insertion**: start from the blurred camera and put the original cells back in the same
  order; the curve is the fraction of the way back to the intact prediction
  (``1 - distance / full distance``), 0 to 1, rising early for a faithful ranking.

Both areas under the curve (fraction of cells on the x axis) are therefore "higher is more
faithful"; a random order is the floor to beat and integrated gradients the offline reference.
The other cameras and the state stay as recorded. Frames where blurring the camera changes
the prediction by less than ``min_change`` (the camera does not matter there) are skipped and
counted. The blur is integrated gradients' blur baseline, the cells the encoder's token cells.

A patchwork of blurred cells is itself unlike anything the policy was trained on, and can move
its actions further than blurring the whole camera: deletion curves then overshoot 1 and the
order that leaves the most patchwork (random) scores highest. The **symmetric gain** (Blücher et
al. 2024's symmetric relevance gain) cancels that: deletion with the most important cells first
minus deletion with the least important first. Deleting the ``n`` least important cells leaves
the top ``cells - n`` intact and blurs the rest, the image insertion shows at ``cells - n``
restored, so no extra forward pass is needed: the gain is ``deletion AUC + insertion AUC - 1``
(up to the rounding of cell counts). A random order scores 0 in expectation, a ranking whose
first cells carry the change about 1, and one worse than random below 0. Frames where blurring
barely moves the prediction give large ratios either way, so the summary also reports the
gain's median over frames.

Which output is measured (``output``): ``chunk`` (every action of the predicted chunk; the maps
explain the chunk: mean over queries, relevance target ``chunk``) or ``first`` (the first
action; query 0, relevance target ``first``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pai_ros.attention.attribution import QuerySelection
from pai_ros.attention.explainers import explaining
from pai_ros.attention.integrated_gradients import (
    IGConfig,
    baseline_image,
    cell_bounds,
    integrated_gradients,
)
from pai_ros.attention.maps import maps_for_tick
from pai_ros.attention.relevance import RelevanceTarget
from pai_ros.jsonfile import json_text
from pai_ros.plotting import pyplot, save_figure
from pai_ros.policy.observation import Observation
from pai_ros.policy.runner import PolicyRunner
from pai_ros.require import require

FAITHFULNESS_METHODS = ("cross_attention", "rollout", "relevance", "relevance_cross", "input_gradient",
                        "integrated_gradients", "random")
OUTPUTS = ("chunk", "first")


@dataclass(frozen=True)
class FaithfulnessConfig:
    steps: int = 10  # curve points after 0: fractions 0, 1/steps, ..., 1 of the camera's cells
    output: str = "chunk"
    seed: int = 0  # the random reference order
    batch_size: int = 32  # perturbed frames per forward pass
    min_change: float = 1e-6

    def __post_init__(self) -> None:
        require("deletion/insertion steps", self.steps, at_least=2, note=" (a curve needs two points)",
                error=ValueError)
        if self.output not in OUTPUTS:
            raise ValueError(f"faithfulness output '{self.output}' is not one of {', '.join(OUTPUTS)}")
        require("batch size", self.batch_size, at_least=1, error=ValueError)

    @property
    def fractions(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.steps + 1)


def area(fractions: np.ndarray, curve: np.ndarray) -> float:
    """Area under a curve sampled at ``fractions`` (trapezoids)."""
    return float(np.sum((curve[1:] + curve[:-1]) * np.diff(fractions)) / 2.0)


def symmetric_gain(fractions: np.ndarray, deletion: np.ndarray, insertion: np.ndarray) -> float:
    """Deletion area, most important cells first, minus the deletion area least important first.

    The second curve is ``1 - insertion(1 - f)`` (see the module docstring), so its area is
    ``1 - area(insertion)`` on the symmetric grid of fractions.
    """
    return area(fractions, deletion) + area(fractions, insertion) - 1.0


@dataclass
class MethodCurves:
    """One method on one camera, over frames."""

    deletion: list[np.ndarray] = field(default_factory=list)
    insertion: list[np.ndarray] = field(default_factory=list)

    def summary(self, fractions: np.ndarray) -> dict:
        if not self.deletion:
            return {"frames": 0}
        d, i = np.mean(self.deletion, axis=0), np.mean(self.insertion, axis=0)
        gains = [symmetric_gain(fractions, fd, fi) for fd, fi in zip(self.deletion, self.insertion)]
        q25, median, q75 = np.percentile(gains, [25, 50, 75])
        return {"frames": len(self.deletion), "deletion_auc": area(fractions, d), "insertion_auc": area(fractions, i),
                "symmetric_gain": symmetric_gain(fractions, d, i), "symmetric_gain_median": float(median),
                "symmetric_gain_quartiles": [float(q25), float(q75)],
                "deletion_curve": d.round(5).tolist(), "insertion_curve": i.round(5).tolist()}


@dataclass
class FaithfulnessReport:
    config: FaithfulnessConfig
    methods: tuple[str, ...]
    curves: dict[str, dict[str, MethodCurves]]  # camera -> method -> curves
    skipped: dict[str, int]  # camera -> frames where the blurred camera did not change the prediction
    map_seconds: dict[str, float]  # method -> total seconds spent computing its maps
    frames: int = 0

    def to_dict(self) -> dict:
        f = self.config.fractions
        return {"output": self.config.output, "steps": self.config.steps, "frames": self.frames,
                "fractions": f.round(5).tolist(), "skipped_frames": self.skipped,
                "map_seconds_per_frame": {m: s / max(self.frames, 1) for m, s in self.map_seconds.items()},
                "cameras": {cam: {m: c.summary(f) for m, c in per.items()} for cam, per in self.curves.items()}}


def _chunks(runner: PolicyRunner, raw: dict[str, torch.Tensor], key: str, images: torch.Tensor,
            batch_size: int) -> torch.Tensor:
    """Normalised chunks ``(n, Q, D)`` with camera ``key`` replaced by each of ``images (n, 3, H, W)``."""
    loaded, spec = runner.loaded, runner.spec
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            part = images[start:start + batch_size]
            n = len(part)
            batch = {k: v.unsqueeze(0).expand(n, *v.shape) for k, v in raw.items() if k != key}
            batch[key] = part
            batch = loaded.preprocessor(batch)
            if spec.state_dim is None:
                batch["observation.state"] = torch.zeros(n, 0, device=runner.device)
            out.append(loaded.policy.predict_action_chunk(batch))
    runner.capture.reset()  # these forwards are not a tick's
    return torch.cat(out)


def method_grids(runner: PolicyRunner, obs: Observation, methods: tuple[str, ...], config: FaithfulnessConfig,
                 ig: IGConfig, rng: np.random.Generator, seconds: dict[str, float]) -> dict[str, dict[str, np.ndarray]]:
    """Each method's per-camera grid for ``obs`` (fresh forward passes), explaining ``config.output``."""
    selection = QuerySelection("mean") if config.output == "chunk" else QuerySelection("index", 0, 1)
    target = RelevanceTarget(config.output)
    grids: dict[str, dict[str, np.ndarray]] = {}
    live = [m for m in methods if m in ("cross_attention", "rollout")]
    if live:
        t0 = time.perf_counter()
        result = runner.step(obs)
        if not result.ran_model:
            raise ValueError("faithfulness needs a forward pass per frame: use a runner in replan mode")
        for m in live:
            grids[m] = maps_for_tick(result, m, selection).grids
        for m in live:
            seconds[m] = seconds.get(m, 0.0) + (time.perf_counter() - t0) / len(live)
    for m in ("relevance", "relevance_cross", "input_gradient"):
        if m in methods:
            t0 = time.perf_counter()
            with explaining(runner, m, target):
                result = runner.step(obs)
            maps = maps_for_tick(result, m)
            if maps is None:
                raise RuntimeError(result.capture.explanation_error or f"{m} gave no map")
            grids[m] = maps.grids
            seconds[m] = seconds.get(m, 0.0) + time.perf_counter() - t0
    if "integrated_gradients" in methods:
        t0 = time.perf_counter()
        q = slice(0, runner.chunk_size) if config.output == "chunk" else slice(0, 1)
        grids["integrated_gradients"] = integrated_gradients(runner, obs, q, ig).grids
        seconds["integrated_gradients"] = seconds.get("integrated_gradients", 0.0) + time.perf_counter() - t0
    if "random" in methods:
        some = next(iter(grids.values()), None)
        if some is None:  # only the random order asked for: one forward pass for the grid sizes
            layout = runner.step(obs).capture.layout
            some = {c: np.zeros((layout.camera(c).grid_h, layout.camera(c).grid_w)) for c in runner.spec.cameras}
        grids["random"] = {c: rng.random(g.shape) for c, g in some.items()}
    return grids


def frame_curves(runner: PolicyRunner, obs: Observation, camera: str, grids: dict[str, np.ndarray],
                 config: FaithfulnessConfig) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """Deletion and insertion curves of each method's grid for ``camera`` (None: the camera does not matter)."""
    spec = runner.spec
    raw = spec.to_batch(obs, runner.device)
    key = spec.cameras[camera][0]
    img = raw[key]
    blur = baseline_image(img, "blur")
    _, h, w = img.shape
    gh, gw = next(iter(grids.values())).shape
    rows = np.searchsorted(cell_bounds(h, gh)[1:], np.arange(h), side="right")
    cols = np.searchsorted(cell_bounds(w, gw)[1:], np.arange(w), side="right")
    cell_of_pixel = torch.from_numpy(rows[:, None] * gw + cols[None, :]).to(img.device)  # (H, W)
    cells = gh * gw
    counts = np.round(config.fractions[1:-1] * cells).astype(int)
    images = [img, blur]
    for grid in grids.values():
        order = np.argsort(-np.asarray(grid, dtype=np.float64).ravel(), kind="stable")
        rank = np.empty(cells, dtype=np.int64)
        rank[order] = np.arange(cells)
        rank_of_pixel = torch.from_numpy(rank).to(img.device)[cell_of_pixel]
        for n in counts:
            images.append(torch.where(rank_of_pixel < n, blur, img))  # deletion: first n cells blurred
        for n in counts:
            images.append(torch.where(rank_of_pixel < n, img, blur))  # insertion: first n cells restored
    chunks = _chunks(runner, raw, key, torch.stack(images), config.batch_size)
    if config.output == "first":
        chunks = chunks[:, :1]
    flat = chunks.reshape(len(chunks), -1).double()
    dist = (flat - flat[0]).norm(dim=1).cpu().numpy()  # distance from the intact frame's prediction
    full = dist[1]
    if not full > config.min_change:
        return None
    out = {}
    k = len(counts)
    for i, method in enumerate(grids):
        part = dist[2 + 2 * k * i:2 + 2 * k * (i + 1)] / full
        deletion = np.concatenate([[0.0], part[:k], [1.0]])
        insertion = np.concatenate([[0.0], 1.0 - part[k:], [1.0]])
        out[method] = (deletion, insertion)
    return out


def faithfulness(runner: PolicyRunner, observations: list[Observation], methods: tuple[str, ...] = FAITHFULNESS_METHODS,
                 config: FaithfulnessConfig = FaithfulnessConfig(), ig: IGConfig = IGConfig(),
                 cameras: list[str] | None = None, progress: bool = False) -> FaithfulnessReport:
    """Deletion and insertion curves of ``methods`` over ``observations`` (see the module docstring).

    Each frame costs every method's map plus ``2 + 2 * (steps - 1) * len(methods)`` forward passes
    per camera (256 a frame for 7 methods, 10 steps, 2 cameras: minutes a frame for LeRobot's default ACT
    on a CPU), hence ``progress``.
    """
    unknown = [m for m in methods if m not in FAITHFULNESS_METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)} (choose from {', '.join(FAITHFULNESS_METHODS)})")
    cams = cameras or list(runner.spec.cameras)
    rng = np.random.default_rng(config.seed)
    report = FaithfulnessReport(config, tuple(methods), {c: {m: MethodCurves() for m in methods} for c in cams},
                                {c: 0 for c in cams}, {})
    for obs in tqdm(observations, desc="faithfulness", unit="frame", disable=not progress):
        runner.reset()
        grids = method_grids(runner, obs, tuple(methods), config, ig, rng, report.map_seconds)
        if report.frames == 0:  # the cells are known once the backbone has seen a frame
            _check_steps(config.steps, max(grid.size for per in grids.values() for grid in per.values()))
        report.frames += 1
        for cam in cams:
            curves = frame_curves(runner, obs, cam, {m: grids[m][cam] for m in methods}, config)
            if curves is None:
                report.skipped[cam] += 1
                continue
            for m, (d, i) in curves.items():
                report.curves[cam][m].deletion.append(d)
                report.curves[cam][m].insertion.append(i)
    return report


def _check_steps(steps: int, cells: int) -> None:
    # A curve point per step: beyond one cell a step, points repeat and each costs forward passes.
    if steps > cells:
        from pai_ros.errors import UserError

        raise UserError(f"--faithfulness-steps {steps} is more than the {cells} cells of the largest camera: "
                        f"at most {cells} steps give different points")


REPORT_FILE = "faithfulness.json"


def check_report_dir(directory: Path, settings: dict) -> None:
    """``directory`` (``OUTPUT/faithfulness``) may take a report of ``settings``: absent, or a report of the
    same settings (run again, it is replaced). Said before the minutes of work, not after them."""
    from pai_ros.errors import UserError
    from pai_ros.jsonfile import read_json

    directory = Path(directory)
    if not directory.exists():
        return
    if not (directory / REPORT_FILE).is_file():
        raise UserError(f"{directory} exists and is not a faithfulness report (no {REPORT_FILE}); write into "
                        "another --output-dir")
    old = read_json(directory / REPORT_FILE, "faithfulness report", want_object=True)
    for key, value in settings.items():  # reports from before a setting was recorded lack it: not compared
        if key in old and old[key] != value:
            raise UserError(f"{directory} holds a report made with other settings ({key.replace('_', ' ')} "
                            f"{old[key]}; now {value}): write into another --output-dir, or remove it to replace it")


def episode_observations(root: Path, episode: int, max_frames: int,
                         rename: dict[str, str] | None = None) -> list[Observation]:
    """Up to ``max_frames`` frames of one episode, evenly spaced (first and last included);
    ``rename``: dataset camera -> policy camera (the runner's ``camera_rename``)."""
    from pai_ros.data.episodes import episode_length, iter_episode, pick_evenly, read_info

    info = read_info(root)
    total = episode_length(info, root, episode)
    frames = list(iter_episode(root, episode, info, rename=rename)) if total is None else None
    total = total if total is not None else len(frames)
    wanted = set(pick_evenly(total, max_frames))
    source = frames if frames is not None else iter_episode(root, episode, info, rename=rename)
    return [Observation(f.images, f.state, f.env_state) for i, f in enumerate(source) if i in wanted]


def write_report(report: FaithfulnessReport, directory: Path, title: str = "",
                 settings: dict | None = None) -> dict:
    """``faithfulness.json`` (with ``settings``: what it was run on, for :func:`check_report_dir`) and
    ``faithfulness.png`` into ``directory``, which appears only when both are complete."""

    from pai_ros.staging import staged_directory

    summary = {**(settings or {}), **report.to_dict()}
    with staged_directory(directory) as partial:
        (partial / REPORT_FILE).write_text(json_text(summary))
        plot_curves(summary, partial / "faithfulness.png", title)
    return summary


def plot_curves(summary: dict, path: Path, title: str = "") -> None:
    """Deletion (solid) and insertion (dashed) curves per camera and method, into a PNG."""
    plt = pyplot()
    cams = list(summary["cameras"])
    fig, axes = plt.subplots(1, len(cams), figsize=(5.5 * len(cams), 6.0), dpi=100, squeeze=False)
    x = np.asarray(summary["fractions"])
    for ax, cam in zip(axes[0], cams):
        for i, (method, s) in enumerate(summary["cameras"][cam].items()):
            if not s.get("frames"):
                continue
            color = f"C{i}"
            ax.plot(x, s["deletion_curve"], color=color,
                    label=f"{method}: AUC del {s['deletion_auc']:.2f} / ins {s['insertion_auc']:.2f}, median gain "
                          f"{s['symmetric_gain_median']:.2f}")
            ax.plot(x, s["insertion_curve"], color=color, linestyle="--")  # one legend entry per method
        ax.set_title(f"{cam}: deletion (solid), insertion (dashed)")
        ax.set_xlabel("fraction of cells deleted / inserted, most important first")
        ax.set_ylabel("share of the full change of the prediction")
        values = [v for s in summary["cameras"][cam].values() if s.get("frames")
                  for v in (*s["deletion_curve"], *s["insertion_curve"])]
        # insertion can first move away from the intact prediction: show it rather than clip it
        ax.set_ylim(min(-0.05, min(values, default=0) - 0.05), max(1.15, max(values, default=1) + 0.05))
        # Below the axes: inside, 14 entries covered the curves they describe.
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    save_figure(fig, path, title)
