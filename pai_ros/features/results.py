"""A feature results directory: what ``pai features record`` / ``pai bag2parquet`` leave, what
``pai features analyse`` adds and what the feature browser reads and writes::

    record.json                         (record) policy, SAE, dataset, token layout, episodes
    episode_000003/features.parquet     (record) one row per frame, frame order
    episode_000003/feature_tokens.parquet
    features.parquet                    (bag2parquet) one row per FeatureActivations message
    analysis/analysis.json              (analyse) ranking, statistics, top frames
    analysis/thumbs/*.png               (analyse) top frames with the feature's heatmap
    analysis/effects.json, effects.png  (effects) what ablating / clamping each top feature does
    names.json                          (browser) {feature: {name, description, updated}}

Every path handed out is resolved inside the directory: nothing outside it can be reached
through a name taken from a file or the browser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pai_ros.errors import UserError
from pai_ros.features.tables import (
    FEATURES_FILE,
    FEATURES_REQUIRED,
    TOKENS_FILE,
    open_checked_table,
    read_checked,
)
from pai_ros.jsonfile import read_json
from pai_ros.unfinished import unfinished_demo_reason
from pai_ros.wording import lacking_requested, listed

RECORD_FILE = "record.json"
ANALYSIS_DIR = "analysis"
ANALYSIS_FILE = "analysis.json"
NAMES_FILE = "names.json"
EFFECTS_FILE = "effects.json"
_EPISODE_DIR = re.compile(r"^episode_(\d{6})$")


def rank_correlation_text(rho: float | None) -> str:
    """``effects.json``'s rank correlation as people read it: None (not measured) is "n/a" and why."""
    return "n/a (one feature, or all effects or all activation scores equal)" if rho is None else f"{rho:.2f}"


@dataclass(frozen=True)
class Source:
    """One features table: an episode of a recording, or a whole bag (episode 0)."""

    episode: int
    features: Path
    tokens: Path | None  # token-level codes (records only)


def _holds_features(path: Path) -> bool:
    """Whether ``path`` is a results directory: a record, a bag's features table or a recorded episode."""
    if (path / RECORD_FILE).is_file() or (path / FEATURES_FILE).is_file():
        return True
    try:
        return any(_EPISODE_DIR.match(c.name) and (c / FEATURES_FILE).is_file() for c in path.iterdir())
    except OSError:
        return False  # a parent we may not list: not known to be a results directory


class ResultsDir:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        if self.root.is_file():
            raise UserError(f"{self.root} is a file, not a results directory")
        if not self.root.is_dir():
            reason = unfinished_demo_reason(self.root)
            raise UserError(f"results directory not found: {self.root}" + (f" ({reason})" if reason else ""))
        self._refuse_a_part()

    def _refuse_a_part(self) -> None:
        """Refuse a piece of a results directory (its analysis/ or one episode_NNNNNN/), naming the whole: the
        piece's own advice ("analyse it first", then "record first") went round in circles, and an episode
        analysed alone got an analysis/ of its own inside the recording."""
        parent = self.root.parent
        if self.root.name == ANALYSIS_DIR and _holds_features(parent) and not _holds_features(self.root):
            piece = f"the {ANALYSIS_DIR}/ folder"
        elif (_EPISODE_DIR.match(self.root.name) and (self.root / FEATURES_FILE).is_file()
              and (parent / RECORD_FILE).is_file()):  # not a bag2parquet output that happens to be named so
            piece = "one episode"
        else:
            return
        raise UserError(f"{self.root} is {piece} of the results directory {parent}: pass {parent} instead")

    # ------------------------------------------------------------------ contents

    @property
    def record(self) -> dict[str, Any] | None:
        path = self.root / RECORD_FILE
        if not path.is_file():
            return None
        data = read_json(path, "record metadata")
        layout = (data.get("layout") or {}) if isinstance(data, dict) else None
        cams = layout.get("cameras", []) if isinstance(layout, dict) else None
        if not isinstance(cams, list) or not all(
                isinstance(c, dict) and {"name", "grid_h", "grid_w", "offset"} <= c.keys() for c in cams):
            raise UserError(f"{path} is not a `pai features record` metadata file (its token layout is damaged); "
                            "record again or remove it")
        return data

    def lacking(self, what: str, advice: str) -> UserError:
        """``ROOT has no WHAT: ADVICE``; in an interrupted demo run, that run instead of the advice (the
        demo writes every piece, and each piece's own advice would send the user round in circles)."""
        return UserError(f"{self.root} has no {what}: {unfinished_demo_reason(self.root) or advice}")

    def sources(self) -> list[Source]:
        found = []
        for child in sorted(self.root.iterdir()):
            m = _EPISODE_DIR.match(child.name)
            if m and (child / FEATURES_FILE).is_file():
                tokens = child / TOKENS_FILE
                found.append(Source(int(m.group(1)), child / FEATURES_FILE, tokens if tokens.is_file() else None))
        if not found and (self.root / FEATURES_FILE).is_file():
            found.append(Source(0, self.root / FEATURES_FILE, None))
        if not found:
            raise self.lacking(FEATURES_FILE, self.earlier_step() or "run `pai features record` or `pai bag2parquet`")
        return found

    def unrecorded_episodes(self) -> str | None:
        """Which episodes ``pai features record`` was asked for are not here (a run interrupted before it
        reached them), and how to get them; None when all are, or the record predates the list."""
        try:
            requested = (self.record or {}).get("requested_episodes") or []
            here = {s.episode for s in self.sources()}
            missing = sorted({int(e) for e in requested} - here)
        except (UserError, TypeError, ValueError):
            return None  # no record, no recording or a damaged list (each said where it matters)
        if not missing:
            return None
        # The same command records every episode it is given, the finished ones again (it does not skip them).
        return (f"{lacking_requested(self.root, missing, '`pai features record`')}; `pai features record` into the "
                "same --output-dir with --episode naming only those adds them (the same command as before records "
                f"every episode it names again), then `pai features analyse {self.root}`")

    def earlier_step(self) -> str | None:
        """For the output of an earlier step of the feature pipeline, what leads from it to features:
        pointed at activations or an SAE, "run `pai features record`" alone leaves the user a step short."""
        from pai_ros.sae.activations import COLLECT_FILE
        from pai_ros.sae.model import CFG_FILE, WEIGHTS_FILE

        if (self.root / COLLECT_FILE).is_file():
            return (f"it is a `pai sae collect` output (activations); train an SAE on it (`pai sae train --activations "
                    f"{self.root} --output S`), record with that SAE (`pai features record --sae S ... "
                    "--output-dir R`) and analyse that (`pai features analyse R`): R is the results directory")
        if (self.root / CFG_FILE).is_file() and (self.root / WEIGHTS_FILE).is_file():
            return (f"it is an SAE (`pai sae train` output); record with it (`pai features record --sae {self.root} "
                    "... --output-dir R`) and analyse that (`pai features analyse R`): R is the results directory")
        return None

    def source(self, episode: int) -> Source:
        for s in self.sources():
            if s.episode == episode:
                return s
        raise UserError(f"{self.root} has no episode {episode}")

    @property
    def analysis_dir(self) -> Path:
        return self.root / ANALYSIS_DIR

    def analysis(self) -> dict[str, Any]:
        path = self.analysis_dir / ANALYSIS_FILE
        if not path.is_file():
            raise self.lacking("analysis yet", self.earlier_step() or f"run `pai features analyse {self.root}` first")
        data = read_json(path, "analysis")
        if not isinstance(data, dict) or "features" not in data:
            raise UserError(f"{path} is not a pai_ros feature analysis; run `pai features analyse` again")
        return data

    def stale_analysis(self) -> str | None:
        """Why the analysis no longer covers this directory (episodes recorded after it), or None."""
        try:
            covered = {int(e) for e in self.analysis().get("episodes", [])}
            newer = sorted({s.episode for s in self.sources()} - covered)
        except (UserError, TypeError, ValueError):
            return None  # no analysis or no recording (each said where it matters): nothing to compare
        if not newer:
            return None
        shown = listed(newer, most=8)
        return (f"the analysis covers {len(covered)} episode(s), but {self.root} also holds episode(s) {shown} "
                f"recorded after it: run `pai features analyse {self.root}` again to include them")

    @property
    def names_path(self) -> Path:
        return self.root / NAMES_FILE

    def inside(self, relative: str | Path, base: Path | None = None) -> Path:
        """``base / relative`` resolved, refused unless it stays inside the results directory."""
        path = ((base or self.root) / relative).resolve()
        if path != self.root and self.root not in path.parents:
            raise UserError(f"refusing a path outside the results directory: {relative}")
        return path

    # ------------------------------------------------------------------ reading

    def timeline(self, episode: int, feature: int) -> tuple[np.ndarray, np.ndarray]:
        """(frame number, the feature's frame-level activation; 0 where it did not fire)."""
        path = self.source(episode).features
        table = read_checked(open_checked_table(path, FEATURES_REQUIRED, "features table"), path,
                             ["feature_indices", "activations"])
        indices = table.column("feature_indices").to_pylist()
        values = table.column("activations").to_pylist()
        out = np.zeros(len(indices), dtype=np.float32)
        for i, (idx, act) in enumerate(zip(indices, values)):
            for f, a in zip(idx, act):
                if f == feature:
                    out[i] = a
                    break
        return np.arange(len(out)), out

    def effects(self) -> dict[str, Any] | None:
        """``analysis/effects.json`` when it was measured for the current analysis (else None: stale or absent)."""
        path = self.analysis_dir / EFFECTS_FILE
        if not path.is_file():
            return None
        effects = read_json(path, "feature effects", want_object=True)
        return effects if effects.get("analysis_created") == self.analysis().get("created") else None
