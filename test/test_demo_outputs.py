"""What `pai demo` makes of its live run's bag (pai_ros.demo.outputs), without ROS."""

from __future__ import annotations

from pathlib import Path


def test_a_live_run_without_features_gives_a_note_not_an_error(tmp_path: Path) -> None:
    # bag2parquet writes features.parquet only when the topic had messages: a live run whose policy
    # published none (no SAE, or it did not load) must still finish its report.
    from pai_ros.demo.outputs import analyse_live_features

    summary = analyse_live_features(tmp_path, progress=False)
    assert summary["messages"] == 0 and "published none" in summary["note"]


def test_the_combined_heatmap_video_takes_attention_heatmaps_only() -> None:
    # A feature's heatmap ends in /<camera>/heatmap too: taken for an attention map, it would overwrite
    # that camera's tile with another picture.
    from pai_ros.demo.outputs import _attention_heatmap_camera

    assert _attention_heatmap_camera("/attention/front/heatmap") == "front"
    assert _attention_heatmap_camera("/arm1/attention/wrist/heatmap") == "wrist"
    assert _attention_heatmap_camera("/features/feature_3/front/heatmap") is None
    assert _attention_heatmap_camera("/front/heatmap") is None
