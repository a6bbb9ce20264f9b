"""``pai features analyse``: rank features, find their top frames, draw where they fire.

Two streaming passes over the features tables (one episode in memory at a time, as a dense
``[frames, F]`` matrix of frame-level activations, 0 where a feature did not fire):

1. per-feature statistics over all frames: firing rate, mean, std, variance, max, mean when
   active, mean number of tokens it fired on; the ranking score is one of them (``rank_by``);
2. for the ``top_features`` best-ranked features only: the top frames per episode, with
   adjacent-frame de-duplication (a frame within ``dedup_window`` frames of a stronger chosen
   frame of the same episode is skipped, so one event is not listed five times), and the global
   top frames, merged from the per-episode lists (de-duplication never crosses episodes, so the
   merge is exact).

Thumbnails: for every global top frame, each camera's image with the feature's activation on
that camera's cells as a heatmap (one colour scale per feature: 0 .. its maximum). They need
token-level codes and images, which recordings made by ``pai features record`` have; bag
conversions get rankings and top frames without thumbnails.

Output goes to ``RESULTS/analysis/`` (assembled in a ``.partial`` directory, then renamed):
``analysis.json`` (format ``pai_ros.features.analysis/1``, described in
:mod:`pai_ros.features.results`), ``ranking.png`` and ``thumbs/``.
"""

from __future__ import annotations

import datetime as _dt
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from pai_ros import __version__
from pai_ros.errors import UserError
from pai_ros.features.results import ANALYSIS_FILE, ResultsDir, Source
from pai_ros.features.tables import (
    FEATURES_REQUIRED,
    TOKENS_SCHEMA,
    check_no_nulls,
    open_checked_table,
    read_checked,
)
from pai_ros.jsonfile import write_json_atomic
from pai_ros.plotting import pyplot, save_figure
from pai_ros.require import require
from pai_ros.staging import staged_directory

FORMAT = "pai_ros.features.analysis/1"
RANK_BY = ("variance", "max", "firing_rate", "mean")
MAX_DENSE_VALUES = 1 << 30  # per episode matrix (4 GiB of float32; two are held)


@dataclass(frozen=True)
class AnalyseSettings:
    rank_by: str = "variance"
    top_features: int = 32
    top_frames: int = 8
    per_episode: int = 3
    dedup_window: int = 2
    thumbnails: bool = True
    thumb_height: int = 160
    colormap: str = "inferno"

    def __post_init__(self) -> None:
        if self.rank_by not in RANK_BY:
            raise UserError(f"--rank-by must be one of {', '.join(RANK_BY)}, got {self.rank_by}")
        for name in ("top_features", "top_frames", "per_episode", "thumb_height"):
            require(f"--{name.replace('_', '-')}", getattr(self, name), at_least=1)
        require("--dedup-window", self.dedup_window, at_least=0)


# ----------------------------------------------------------------------------- reading


def _episode_matrix(source: Source, num_features: int | None) -> tuple[np.ndarray, np.ndarray, str, int]:
    """(activations [frames, F], token counts [frames, F], sae_id, F) of one features table."""
    pf = open_checked_table(source.features, FEATURES_REQUIRED, "features table")
    table = read_checked(pf, source.features,
                         ["sae_id", "num_features", "feature_indices", "activations", "token_counts"])
    if table.num_rows == 0:
        raise UserError(f"{source.features} has no rows")
    check_no_nulls(table, source.features)
    lengths = [np.diff(table.column(c).combine_chunks().offsets.to_numpy())
               for c in ("feature_indices", "activations", "token_counts")]
    if not (np.array_equal(lengths[0], lengths[1]) and np.array_equal(lengths[0], lengths[2])):
        row = int(np.flatnonzero((lengths[0] != lengths[1]) | (lengths[0] != lengths[2]))[0])
        raise UserError(f"{source.features} row {row}: feature_indices, activations and token_counts differ in "
                        "length (they must share one order and length)")
    sae_ids = set(table.column("sae_id").unique().to_pylist())
    sizes = set(table.column("num_features").unique().to_pylist())
    if len(sae_ids) != 1 or len(sizes) != 1:
        raise UserError(f"{source.features} mixes features of several SAEs ({', '.join(map(str, sae_ids))}); "
                        "analyse one SAE at a time")
    f = int(sizes.pop())
    if num_features is not None and f != num_features:
        raise UserError(f"{source.features} has {f} features, other tables have {num_features}")
    if table.num_rows * f > MAX_DENSE_VALUES:  # num_features comes from the file; a damaged one asks for terabytes
        raise UserError(f"{source.features}: {table.num_rows} frames x {f} features are too many for the in-memory "
                        "analysis (is num_features right? otherwise analyse fewer episodes at a time)")
    try:
        acts = np.zeros((table.num_rows, f), dtype=np.float32)
        counts = np.zeros((table.num_rows, f), dtype=np.float32)
    except MemoryError:
        raise UserError(f"{source.features}: {table.num_rows} frames x {f} features do not fit in memory "
                        "(is num_features right?)") from None
    idx_col = table.column("feature_indices").combine_chunks()
    rows = np.repeat(np.arange(table.num_rows), np.diff(idx_col.offsets.to_numpy()))
    cols = idx_col.values.to_numpy().astype(np.int64)
    if cols.size and cols.max() >= f:
        raise UserError(f"{source.features} has a feature index >= num_features ({f})")
    acts[rows, cols] = table.column("activations").combine_chunks().values.to_numpy()
    counts[rows, cols] = table.column("token_counts").combine_chunks().values.to_numpy()
    return acts, counts, sae_ids.pop(), f


def _top_frames(values: np.ndarray, k: int, window: int) -> list[tuple[int, float]]:
    """Greedy: strongest frames first, skipping any within ``window`` frames of one already chosen."""
    order = np.argsort(-values, kind="stable")
    chosen: list[tuple[int, float]] = []
    for i in order:
        v = float(values[i])
        if v <= 0 or len(chosen) >= k:
            break
        if all(abs(int(i) - c) > window for c, _ in chosen):
            chosen.append((int(i), v))
    return chosen


# ----------------------------------------------------------------------------- analysis


def analyse(results: ResultsDir, settings: AnalyseSettings = AnalyseSettings(), *, progress: bool = True) -> Path:
    sources = results.sources()
    record = results.record  # read before the passes: a damaged record.json costs nothing yet
    stats, sae_id, f, frames = _pass_statistics(sources, progress)
    score = stats[settings.rank_by]
    ranked = [int(i) for i in np.argsort(-score, kind="stable") if stats["firing_rate"][i] > 0][:settings.top_features]
    per_episode, top = _pass_top_frames(sources, ranked, settings, progress)
    out = results.analysis_dir
    with staged_directory(out) as partial:
        cameras: list[str] = []
        thumbs: dict[tuple[int, int, int], dict[str, str]] = {}
        thumbs_note = None
        if settings.thumbnails and record is not None and record.get("layout"):
            cameras = [c["name"] for c in record["layout"]["cameras"]]
            thumbs, thumbs_note = _thumbnails(record, sources, top, stats["max"], partial, settings, progress)
        features = []
        for rank, feat in enumerate(ranked, start=1):
            features.append({
                "feature": feat, "rank": rank, "score": float(score[feat]),
                "stats": {k: float(v[feat]) for k, v in stats.items()},
                "top_frames": [{"episode": e, "frame": fr, "activation": a, "thumbnails": thumbs.get((feat, e, fr), {})}
                               for e, fr, a in top[feat]],
                "per_episode": {str(e): [{"frame": fr, "activation": a} for fr, a in lst]
                                for e, lst in sorted(per_episode[feat].items())},
            })
        analysis = {
            "format": FORMAT, "pai_ros_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "sae_id": sae_id, "num_features": f, "rank_by": settings.rank_by, "frames": frames,
            "episodes": [s.episode for s in sources], "cameras": cameras, "dedup_window": settings.dedup_window,
            "dataset_root": record.get("dataset_root") if record else None,
            "alive_features": int((stats["firing_rate"] > 0).sum()),
            "ranking_plot": "ranking.png", "features": features,
        }
        if thumbs_note is not None:
            analysis["thumbnails_note"] = thumbs_note
        _plot_ranking(stats, ranked, settings.rank_by, partial / "ranking.png")
        write_json_atomic(partial / ANALYSIS_FILE, analysis)
    return out / ANALYSIS_FILE


def _pass_statistics(sources: list[Source], progress: bool) -> tuple[dict[str, np.ndarray], str, int, int]:
    f: int | None = None
    sae_id = None
    n = 0
    for source in tqdm(sources, desc="statistics", unit="episode", disable=not progress or len(sources) < 2):
        acts, counts, sid, f_ep = _episode_matrix(source, f)
        if sae_id is not None and sid != sae_id:
            raise UserError(f"{source.features} is from SAE {sid}, other tables from {sae_id}; analyse one SAE at a time")
        if f is None:
            f, sae_id = f_ep, sid
            total = np.zeros(f, np.float64)
            total_sq = np.zeros(f, np.float64)
            fired = np.zeros(f, np.float64)
            peak = np.zeros(f, np.float64)
            tokens = np.zeros(f, np.float64)
        n += acts.shape[0]
        # Summed in float64: a float32 sum down the frames drifts by ~1e-4 of E[x], and E[x^2] - E[x]^2
        # of an always-on feature (5 +- 0.02) cancels to 1e-5 of E[x^2], so its variance came out ~20% off.
        total += acts.sum(axis=0, dtype=np.float64)
        total_sq += (acts.astype(np.float64) ** 2).sum(axis=0)
        fired += (acts > 0).sum(axis=0)
        peak = np.maximum(peak, acts.max(axis=0))
        tokens += counts.sum(axis=0)
    mean = total / n
    variance = np.maximum(total_sq / n - mean ** 2, 0.0)
    stats = {"firing_rate": fired / n, "mean": mean, "std": np.sqrt(variance), "variance": variance, "max": peak,
             "mean_when_active": np.divide(total, fired, out=np.zeros_like(total), where=fired > 0),
             "mean_token_count": np.divide(tokens, fired, out=np.zeros_like(tokens), where=fired > 0)}
    return stats, str(sae_id), int(f), n


def _pass_top_frames(sources: list[Source], ranked: list[int], settings: AnalyseSettings, progress: bool):
    per_episode: dict[int, dict[int, list[tuple[int, float]]]] = {feat: {} for feat in ranked}
    candidates: dict[int, list[tuple[int, int, float]]] = defaultdict(list)
    keep = max(settings.top_frames, settings.per_episode)
    for source in tqdm(sources, desc="top frames", unit="episode", disable=not progress or len(sources) < 2):
        acts, _counts, _sid, _f = _episode_matrix(source, None)
        for feat in ranked:
            chosen = _top_frames(acts[:, feat], keep, settings.dedup_window)
            if chosen:
                per_episode[feat][source.episode] = chosen[:settings.per_episode]
                candidates[feat].extend((source.episode, fr, a) for fr, a in chosen[:settings.top_frames])
    top = {feat: sorted(candidates[feat], key=lambda t: -t[2])[:settings.top_frames] for feat in ranked}
    return per_episode, top


# ----------------------------------------------------------------------------- pictures


def _token_codes(source: Source, frames: set[int]) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Token-level codes of the given frames (row numbers) of one recorded episode."""
    if source.tokens is None:
        return {}
    pf = open_checked_table(source.tokens, TOKENS_SCHEMA, "feature tokens table")
    table = read_checked(pf, source.tokens)
    check_no_nulls(table, source.tokens)
    out = {}
    for row in sorted(frames):
        if row < table.num_rows:
            codes = (np.asarray(table.column("token_index")[row].as_py(), dtype=np.int64),
                     np.asarray(table.column("feature_index")[row].as_py(), dtype=np.int64),
                     np.asarray(table.column("activation")[row].as_py(), dtype=np.float32))
            if not len(codes[0]) == len(codes[1]) == len(codes[2]):
                raise UserError(f"{source.tokens} row {row}: token_index, feature_index and activation differ "
                                "in length")
            out[row] = codes
    return out


def _thumbnails(record: dict[str, Any], sources: list[Source], top: dict[int, list[tuple[int, int, float]]],
                peak: np.ndarray, out: Path, settings: AnalyseSettings,
                progress: bool) -> tuple[dict[tuple[int, int, int], dict[str, str]], str | None]:
    """Heatmap thumbnails of the top frames, and a note when some could not be drawn.

    They come last, after both passes over the recording: a dataset that is gone or changed since
    the recording (another camera, fewer episodes, a damaged video) costs the thumbnails of the
    episodes it touches, said in a note (with the first reason), never the analysis.
    """
    from pai_ros.data.episodes import iter_episode, read_info

    root = Path(str(record.get("dataset_root") or ""))
    if not (root / "meta" / "info.json").is_file():
        return {}, f"dataset {root} not found; no thumbnails"
    cams = record["layout"]["cameras"]
    wanted: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))  # episode -> frame -> features
    for feat, frames in top.items():
        for e, fr, _a in frames:
            wanted[e][fr].append(feat)
    by_episode = {s.episode: s for s in sources}
    written: dict[tuple[int, int, int], dict[str, str]] = {}
    try:
        info = read_info(root)
    except UserError as exc:
        return {}, f"no thumbnails: {exc}"
    failed: dict[int, str] = {}
    for episode in tqdm(sorted(wanted), desc="thumbnails", unit="episode", disable=not progress):
        codes = _token_codes(by_episode[episode], set(wanted[episode]))
        try:
            for frame in iter_episode(root, episode, info, rename=record.get("camera_rename")):
                row = frame.frame_index
                if row in wanted[episode] and row in codes:
                    written.update(_frame_thumbnails(frame.images, cams, episode, row, wanted[episode][row],
                                                     codes[row], peak, out, settings))
        except UserError as exc:
            failed[episode] = str(exc)
    if not failed:
        return written, None
    return written, (f"no thumbnails (or not all) for episode(s) {', '.join(map(str, failed))} of {root}: "
                     f"{next(iter(failed.values()))}")


def _frame_thumbnails(images: dict[str, np.ndarray], cams: list[dict[str, Any]], episode: int, row: int,
                      features: list[int], codes: tuple[np.ndarray, np.ndarray, np.ndarray], peak: np.ndarray,
                      out: Path, settings: AnalyseSettings) -> dict[tuple[int, int, int], dict[str, str]]:
    """One frame's thumbnails: per feature, its activation grid over each camera image."""
    import cv2

    from pai_ros.attention.render import overlay
    from pai_ros.media.png import write_png

    missing = [cam["name"] for cam in cams if cam["name"] not in images]
    if missing:
        raise UserError(f"the dataset has no camera {', '.join(missing)} any more (it has {', '.join(images)})")
    tok, feat_idx, act = codes
    written = {}
    for feat in features:
        sel = feat_idx == feat
        paths = {}
        for cam in cams:
            grid = np.zeros(cam["grid_h"] * cam["grid_w"], dtype=np.float32)
            local = tok[sel] - cam["offset"]
            inside = (local >= 0) & (local < grid.size)
            grid[local[inside]] = act[sel][inside]
            grid = grid.reshape(cam["grid_h"], cam["grid_w"]) / max(float(peak[feat]), 1e-12)
            image = images[cam["name"]]
            scale = settings.thumb_height / image.shape[0]
            small = cv2.resize(image, (max(1, round(image.shape[1] * scale)), settings.thumb_height),
                               interpolation=cv2.INTER_AREA)
            pic = overlay(small, np.clip(grid, 0, 1), alpha=0.65, colormap=settings.colormap)
            rel = f"thumbs/f{feat:06d}/e{episode:06d}_f{row:06d}_{cam['name']}.png"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            write_png(out / rel, pic)
            paths[cam["name"]] = rel
        written[(feat, episode, row)] = paths
    return written


def _plot_ranking(stats: dict[str, np.ndarray], ranked: list[int], rank_by: str, out: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6), dpi=100)
    axes[0].bar(range(len(ranked)), [stats[rank_by][f] for f in ranked], color="tab:orange")
    axes[0].set_xticks(range(len(ranked)))
    axes[0].set_xticklabels([str(f) for f in ranked], rotation=90, fontsize=7)
    axes[0].set_title(f"top features by {rank_by}")
    axes[0].set_xlabel("feature")
    rate = stats["firing_rate"]
    axes[1].hist(np.log10(rate[rate > 0]), bins=40, color="tab:blue")
    axes[1].set_title(f"frame firing rates ({int((rate == 0).sum())} features never fired)")
    axes[1].set_xlabel("log10 fraction of frames where the feature fired")
    save_figure(fig, out)
