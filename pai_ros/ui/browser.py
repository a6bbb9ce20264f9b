"""What the feature browser shows, computed from a results directory (no Gradio here).

Everything the page displays comes from files of the results directory: ``analysis.json`` (read
once, when the server starts), ``names.json`` (read on every request, so a reloaded page shows
what was saved) and the features tables (for timelines). Anything that names a file (thumbnail
paths in ``analysis.json``) is resolved with :meth:`ResultsDir.inside`, and images are decoded
here, on the server, so the page never sees a filesystem path and nothing it sends is ever
opened as one: the browser only picks feature numbers and episodes, which are checked against
the analysis.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pai_ros.errors import UserError
from pai_ros.features.names import load_names, save_name, shown_version
from pai_ros.features.results import ResultsDir, rank_correlation_text

# Statistics of analysis.json in the order and wording the table shows; unknown ones follow.
_STAT_LABELS = {
    "firing_rate": "firing rate (fraction of frames)",
    "mean": "mean activation",
    "std": "standard deviation",
    "variance": "variance",
    "max": "max activation",
    "mean_when_active": "mean when active",
    "mean_token_count": "mean active tokens per frame",
}
_TOP_FRAMES_SHOWN = 10


@dataclass(frozen=True)
class Thumbnail:
    """One top frame of a feature on one camera, decoded for display."""

    image: np.ndarray  # RGB, uint8
    caption: str
    episode: int
    frame: int


def load_image(results: ResultsDir, relative: str) -> np.ndarray:
    """An RGB image named by ``analysis.json`` (relative to ``analysis/``), refused outside RESULTS."""
    import cv2  # here: only image display pays its import

    path = results.inside(relative, base=results.analysis_dir)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"thumbnail {relative} is missing or not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _number(value: Any) -> str:
    """Four significant digits for floats (statistics span orders of magnitude)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class FeatureBrowser:
    """The browser's model: the analysed features, their names, images and timelines."""

    def __init__(self, results: ResultsDir) -> None:
        self.results = results
        self.analysis = results.analysis()
        # analysis.json lists features in rank order; keep that order (dicts preserve it).
        self.features: dict[int, dict[str, Any]] = {}
        try:
            for entry in self.analysis["features"]:
                self.features[int(entry["feature"])] = entry
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{results.analysis_dir} has a damaged feature list; run `pai features analyse` "
                            "again") from None
        if not self.features:
            raise UserError(f"{results.analysis_dir} lists no features; run `pai features analyse` again")
        self.cameras: list[str] = [str(c) for c in self.analysis.get("cameras") or []]
        # What each feature does to the actions (pai features effects), when measured for this analysis.
        effects = results.effects()
        self.effects_info = effects
        self.effects: dict[int, dict[str, Any]] = {int(r["feature"]): r for r in (effects or {}).get("features", [])}
        self.episodes: list[int] = [s.episode for s in results.sources()]
        self.unrecorded = results.unrecorded_episodes()  # episodes an interrupted `pai features record` never reached

    # ------------------------------------------------------------------ the feature list

    def shown_version(self, feature: Any) -> str:
        """What the form shows of the feature's names.json entry now (handed back with a save)."""
        return shown_version(self.names().get(int(self.entry(feature)["feature"])))

    def names(self) -> dict[int, dict[str, Any]]:
        """names.json as it is now on disk (another browser tab may have saved since)."""
        return load_names(self.results.names_path)

    def label(self, feature: int, names: dict[int, dict[str, Any]]) -> str:
        name = names.get(feature, {}).get("name", "")
        if name:
            return f"#{feature} · {name}"
        return f"#{feature} (rank {self.features[feature].get('rank', '?')})"

    def choices(self) -> list[tuple[str, int]]:
        """(label, feature) pairs: named features first, then the rest, each group in rank order."""
        names = self.names()
        named = [f for f in self.features if names.get(f, {}).get("name")]
        rest = [f for f in self.features if not names.get(f, {}).get("name")]
        return [(self.label(f, names), f) for f in named + rest]

    def entry(self, feature: Any) -> dict[str, Any]:
        """The analysis entry of a feature the page asked for (refused unless it was analysed)."""
        try:
            key = int(feature)
        except (TypeError, ValueError):
            raise UserError(f"not a feature number: {feature!r}") from None
        if key not in self.features:
            raise UserError(f"feature {key} is not in this analysis")
        return self.features[key]

    # ------------------------------------------------------------------ one feature

    def title(self, feature: int) -> str:
        entry = self.entry(feature)
        name = self.names().get(int(feature), {}).get("name", "")
        rank_by = self.analysis.get("rank_by", "score")
        heading = f"## Feature #{int(feature)}" + (f" · {name}" if name else "")
        return (f"{heading}\nrank {entry.get('rank', '?')} of {len(self.features)} analysed "
                f"(by {rank_by}, score {_number(entry.get('score', float('nan')))})")

    def thumbnails(self, feature: int, camera: str) -> tuple[list[Thumbnail], list[str]]:
        """The feature's top frames on ``camera``, and one line per thumbnail that could not be shown."""
        shown: list[Thumbnail] = []
        problems: list[str] = []
        for top in self.entry(feature).get("top_frames", []):
            relative = (top.get("thumbnails") or {}).get(camera)
            if not relative:
                continue
            episode, frame, activation = int(top["episode"]), int(top["frame"]), float(top["activation"])
            try:
                image = load_image(self.results, relative)
            except UserError as exc:
                problems.append(str(exc))
                continue
            # Short: thumbnails are small (the enlarged view shows the whole caption).
            caption = f"ep {episode} · frame {frame} · act {activation:.3g} · {camera}"
            shown.append(Thumbnail(image, caption, episode, frame))
        return shown, problems

    def top_frame_images(self, feature: int) -> tuple[dict[str, list[Thumbnail]], str]:
        """Thumbnails per camera, and a Markdown note on the ones missing (empty when none is)."""
        per_camera: dict[str, list[Thumbnail]] = {}
        problems: list[str] = []
        for camera in self.cameras:
            per_camera[camera], missing = self.thumbnails(feature, camera)
            problems += missing
        lines = []
        if not any(per_camera.values()) and not problems:
            lines.append("*No thumbnails for this feature: the analysis had no camera images "
                         "(a bag conversion, or the dataset was not found when it ran).*")
        lines += [f"⚠ {p}" for p in problems]
        return per_camera, "\n\n".join(lines)

    def _effects_target(self) -> str:
        """What the effects measured: the actions, or only some dimensions over the next few actions."""
        dims, horizon = self.effects_info.get("action_dims"), self.effects_info.get("horizon")
        what = "the actions" if dims is None else f"action dimension(s) {', '.join(map(str, dims))}"
        return what if horizon is None else f"{what} over the next {horizon} actions"

    def statistics_markdown(self, feature: int) -> str:
        """The feature's statistics over all analysed frames, as a Markdown table."""
        stats: dict[str, Any] = self.entry(feature).get("stats", {})
        keys = [k for k in _STAT_LABELS if k in stats] + [k for k in stats if k not in _STAT_LABELS]
        lines = ["| statistic | value |", "|---|---|"]
        lines += [f"| {_STAT_LABELS.get(k, k)} | {_number(stats[k])} |" for k in keys]
        effect = self.effects.get(int(feature))
        if effect is not None:
            n = len(self.effects)
            lines += [f"| action change when ablated | {_number(effect['ablate_effect'])} "
                      f"(effect rank {effect['effect_rank']} of {n}) |",
                      f"| action change when clamped at {_number(effect['clamp_value'])} | "
                      f"{_number(effect['clamp_effect'])} |"]
        return "\n".join(lines)

    def top_frames_markdown(self, feature: int) -> str:
        """The strongest frames as a table: the same list as the thumbnails, readable without images."""
        top = self.entry(feature).get("top_frames", [])[:_TOP_FRAMES_SHOWN]
        if not top:
            return "*no frames where this feature fired*"
        lines = ["| episode | frame | activation |", "|---|---|---|"]
        lines += [f"| {t['episode']} | {t['frame']} | {_number(float(t['activation']))} |" for t in top]
        return "\n".join(lines)

    def default_episode(self, feature: int) -> int:
        """The episode of the feature's strongest frame: where its timeline is most telling."""
        for top in self.entry(feature).get("top_frames", []):
            if int(top["episode"]) in self.episodes:
                return int(top["episode"])
        return self.episodes[0]

    def episode(self, value: Any) -> int:
        """An episode the page asked for, refused unless the results directory has it."""
        try:
            episode = int(value)
        except (TypeError, ValueError):
            raise UserError(f"not an episode number: {value!r}") from None
        if episode not in self.episodes:
            raise UserError(f"episode {episode} is not in this results directory")
        return episode

    def timeline_figure(self, feature: int, episode: Any, highlight: int | None = None):
        """The feature's activation over every frame of an episode, its top frames marked."""
        from matplotlib.figure import (
            Figure,  # no pyplot: no global figure registry in a server
        )

        feature, episode = int(self.entry(feature)["feature"]), self.episode(episode)
        frames, values = self.results.timeline(episode, feature)
        tops = self.entry(feature).get("per_episode", {}).get(str(episode), [])
        fig = Figure(figsize=(9, 2.8), dpi=100)
        ax = fig.add_subplot()
        ax.plot(frames, values, color="tab:blue", linewidth=1.2, label="activation")
        if tops:
            ax.scatter([t["frame"] for t in tops], [t["activation"] for t in tops], color="tab:red", zorder=3,
                       s=24, label="top frames")
        if highlight is not None:
            ax.axvline(highlight, color="tab:orange", linestyle="--", linewidth=1, label=f"frame {highlight}")
        ax.set_xlabel("frame")
        ax.set_ylabel("activation")
        ax.set_title(f"feature #{feature}, episode {episode}")
        ax.set_xlim(0, max(len(frames) - 1, 1))
        ax.grid(alpha=0.3)
        if tops or highlight is not None:
            ax.legend(loc="upper right", fontsize="small")
        fig.tight_layout()
        return fig

    # ------------------------------------------------------------------ the page header

    def summary_markdown(self) -> str:
        a = self.analysis
        cameras = ", ".join(self.cameras) or "none"
        return (f"SAE `{a.get('sae_id', '?')}` · {len(self.features)} of {a.get('num_features', '?')} features "
                f"analysed, ranked by {a.get('rank_by', '?')} · {a.get('frames', '?')} frames in "
                f"{len(self.episodes)} episode(s) · cameras: {cameras} · results: `{self.results.root.name}`"
                + (f" · effects on {self._effects_target()} measured for {len(self.effects)} features over "
                   f"{self.effects_info.get('frames', '?')} frames (rank correlation with this ranking "
                   f"{rank_correlation_text(self.effects_info.get('rank_correlation_effect_vs_activation'))})"
                   if self.effects else "")
                + (f" · {a['thumbnails_note']}" if a.get("thumbnails_note") else "")
                + (f" · {self.unrecorded}" if self.unrecorded else ""))

    def ranking_image(self) -> np.ndarray | None:
        """The ranking plot of the analysis, when it has one that can be read."""
        relative = self.analysis.get("ranking_plot")
        if not relative:
            return None
        try:
            return load_image(self.results, relative)
        except UserError:
            return None

    # ------------------------------------------------------------------ naming

    def save(self, feature: Any, name: str | None, description: str | None, shown: str | None = None) -> str:
        """Store a name (atomically, in names.json) and say what was stored; see :meth:`save_shown`."""
        return self.save_shown(feature, name, description, shown)[0]

    def save_shown(self, feature: Any, name: str | None, description: str | None,
                   shown: str | None = None) -> tuple[str, str]:
        """:meth:`save`, and what the form now shows of the entry, as the save wrote it (read again after
        the lock is released, another server's save in between would pass for what the form shows).

        ``shown``: see :func:`~pai_ros.features.names.save_name` (a name changed elsewhere meanwhile is
        not overwritten)."""
        key = int(self.entry(feature)["feature"])
        names = save_name(self.results.names_path, key, name or "", description or "", shown=shown)
        where = Path(self.results.names_path).name
        if key not in names:
            return f"Removed the name of feature #{key} from {where}.", shown_version(None)
        saved = names[key]
        what = f"as “{saved['name']}”" if saved["name"] else "(description only)"
        return f"Saved feature #{key} {what} in {where} at {saved['updated']}.", shown_version(saved)
