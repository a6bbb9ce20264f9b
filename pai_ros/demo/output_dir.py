"""What ``pai demo`` (live and closed loop) may write into and replace: its output directory.

``make demo`` always passes ``--overwrite``, so the rules matter: it replaces only an earlier
demo output (marked by :data:`DEMO_MARKER`), never a file added to it since (its manifest, as
for every pai output), except the feature names given in the browser, which it keeps while the
demo's SAE is the one they name, and the analyses other commands computed from its outputs.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from pai_ros.errors import UserError
from pai_ros.jsonfile import read_json, write_json_atomic
from pai_ros.staging import check_replaceable, json_file_with, make_output_dir, write_manifest
from pai_ros.unfinished import DEMO_MARKER, REPORT_FILE

if TYPE_CHECKING:
    from pai_ros.demo.assets import DemoAssets


#: What a demo output may hold that the demo did not write and keeps: the names given to its
#: features in `pai features ui out/demo/features` (the user's work; `make demo` always overwrites).
NAMES = "features/names.json"
KEPT_FILES = (NAMES,)
#: What other pai commands compute from a demo's outputs (`pai features analyse` / `effects` on its
#: features or tables): replaced with the demo, as their inputs are.
DERIVED_FILES = ("features/analysis/*", "parquet/analysis/*")


def demo_sae_id(assets: DemoAssets) -> str | None:
    """The content id of the demo assets' SAE (None without one): what kept feature names must name."""
    from pai_ros.sae.model import content_id

    return content_id(assets.sae_dir) if assets.has_sae() else None


def prepare_output_dir(out: Path, overwrite: bool, sae_id: str | None = None) -> Path:
    """An empty ``out`` (but for :data:`KEPT_FILES`), marked as a demo output: a non-empty one is refused
    unless it is an earlier demo's and ``overwrite`` is given; --overwrite never deletes other files."""
    check_output_dir(out, overwrite, sae_id)
    if out.is_dir():
        _remove_all_but(out, {out / rel for rel in KEPT_FILES if (out / rel).is_file()})
    out = make_output_dir(out)
    (out / DEMO_MARKER).write_text("written by pai demo: --overwrite may replace this directory\n")
    return out


def check_output_dir(out: Path, overwrite: bool, sae_id: str | None = None) -> None:
    """What :func:`prepare_output_dir` refuses, said without touching anything (the kept feature names
    only once ``sae_id``, the SAE they must name, is known)."""
    if out.is_dir() and (out / DEMO_MARKER).is_file() and not (out / REPORT_FILE).exists() and not overwrite:
        raise UserError(f"output directory {out} holds an unfinished demo run (no {REPORT_FILE}: interrupted?); "
                        "pass --overwrite to replace it")
    check_replaceable(out, overwrite, made_by="pai demo", what_marks_it=DEMO_MARKER, is_mine=_is_demo_output,
                      keep=KEPT_FILES, derived=DERIVED_FILES)
    if sae_id is not None and (out / NAMES).is_file():
        # names.json is keyed by feature number only: kept for another SAE it would label other features.
        try:
            named = read_json(out / "features" / "record.json", "feature recording", want_object=True).get("sae_id")
        except UserError:  # no recording beside them: which SAE they name cannot be told
            named = None
        if named != sae_id:
            raise UserError(f"{out / NAMES} names the features of SAE {named or '(unknown)'}, and the demo's SAE is "
                            f"now {sae_id}: move it out first (its names would label other features)")


def finish_output_dir(out: Path, report: dict) -> None:
    """``report.json`` (its presence says the run finished), then the list of what the demo wrote."""
    write_json_atomic(out / REPORT_FILE, report)
    write_manifest(out, leave_out=KEPT_FILES)


def _remove_all_but(directory: Path, kept: set[Path]) -> None:
    """Delete everything under ``directory`` but the files ``kept`` (and the directories holding them)."""
    for entry in list(directory.iterdir()):
        if entry in kept:
            continue
        if entry.is_dir() and not entry.is_symlink():
            if any(entry in k.parents for k in kept):
                _remove_all_but(entry, kept)
            else:
                shutil.rmtree(entry)
        else:
            entry.unlink()


def _is_demo_output(out: Path) -> bool:
    """Marked by a demo, or a demo's from before the marker: its report beside its bag and tables."""
    if (out / DEMO_MARKER).is_file():
        return True
    return (out / "bag").is_dir() and (out / "parquet").is_dir() and json_file_with(out / REPORT_FILE, ("ticks",))
