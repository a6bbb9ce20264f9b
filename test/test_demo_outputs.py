"""What `pai demo` makes of its live run's bag (pai_ros.demo.outputs), without ROS."""

from __future__ import annotations

from pathlib import Path


def test_a_live_run_without_features_gives_a_note_not_an_error(tmp_path: Path) -> None:
    # bag2parquet writes features.parquet only when the topic had messages: a live run whose policy
    # published none (no SAE, or it did not load) must still finish its report.
    from pai_ros.demo.outputs import feature_summary

    summary = feature_summary(tmp_path, progress=False)
    assert summary["messages"] == 0 and "published none" in summary["note"]
