"""`pai demo --output-dir`: what it may replace (pai_ros.ros.demo.prepare_output_dir)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pai_ros.errors import UserError

pytestmark = pytest.mark.ros  # pai_ros.ros imports rclpy


def test_overwrite_replaces_only_an_earlier_demo(tmp_path: Path) -> None:
    from pai_ros.ros.demo import DEMO_MARKER, REPORT_FILE, prepare_output_dir

    out = prepare_output_dir(tmp_path / "demo", overwrite=False)
    assert (out / DEMO_MARKER).is_file()
    (out / "bag").mkdir()
    # Interrupted (Ctrl-C): no report.json. Said as such, and --overwrite replaces it.
    with pytest.raises(UserError, match="holds an unfinished demo run"):
        prepare_output_dir(out, overwrite=False)
    (out / REPORT_FILE).write_text("{}")
    with pytest.raises(UserError, match="holds an earlier pai demo output; choose a new path or pass --overwrite"):
        prepare_output_dir(out, overwrite=False)
    prepare_output_dir(out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [DEMO_MARKER]
    # A demo output from before the marker (its bag, tables and report) is still recognised.
    old = tmp_path / "old"
    (old / "bag").mkdir(parents=True)
    (old / "parquet").mkdir()
    (old / REPORT_FILE).write_text('{"ticks": 21}')
    prepare_output_dir(old, overwrite=True)
    assert sorted(p.name for p in old.iterdir()) == [DEMO_MARKER]
    # Anything else stays, --overwrite or not (a directory with a bag/ of its own too): it used to be deleted.
    mine = tmp_path / "mine"
    (mine / "bag").mkdir(parents=True)
    (mine / "thesis.tex").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(UserError, match="is not an earlier pai demo output"):
            prepare_output_dir(mine, overwrite=overwrite)
    assert (mine / "thesis.tex").read_text() == "mine"
