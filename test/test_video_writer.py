"""The MP4 writer: fixed-rate frames, frames at their own times (real-time playback), and refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pai_ros.media.video import Mp4Writer, count_frames, frame_times


def _frame(v: int) -> np.ndarray:
    return np.full((32, 48, 3), v, np.uint8)


def test_frames_without_times_follow_at_the_frame_rate(tmp_path: Path) -> None:
    path = tmp_path / "fixed.mp4"
    with Mp4Writer(path, fps=10) as w:
        for i in range(5):
            w.write(_frame(40 * i))
    assert count_frames(path) == 5
    assert frame_times(path) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4], abs=1e-4)


def test_frames_with_times_play_when_they_happened(tmp_path: Path) -> None:
    # A recording with skipped ticks: 0.27 s between two heatmaps must stay 0.27 s, not one frame.
    stamps = [1000.0, 1000.0667, 1000.3333, 1000.6, 1001.2]
    path = tmp_path / "timed.mp4"
    with Mp4Writer(path, fps=15) as w:
        for i, t in enumerate(stamps):
            w.write(_frame(40 * i), at_s=t)
    assert count_frames(path) == len(stamps)
    assert frame_times(path) == pytest.approx([t - stamps[0] for t in stamps], abs=1e-3)


def test_times_must_increase_and_cannot_start_halfway(tmp_path: Path) -> None:
    with Mp4Writer(tmp_path / "a.mp4", fps=15) as w:
        w.write(_frame(0), at_s=5.0)
        with pytest.raises(ValueError, match="must increase"):
            w.write(_frame(1), at_s=5.0)
    with Mp4Writer(tmp_path / "b.mp4", fps=15) as w:
        w.write(_frame(0))
        with pytest.raises(ValueError, match="every frame its time or none"):
            w.write(_frame(1), at_s=1.0)


def test_a_full_disk_is_an_os_error_not_a_crash(tmp_path: Path) -> None:
    # PyAV crashed the process (SIGSEGV, no message) when the writer flushed its encoder into a file whose
    # last write had failed: a full disk under every attention video, bag conversion and demo. /dev/full
    # fails every write with ENOSPC; a subprocess, so that a crash fails this test instead of pytest.
    import subprocess
    import sys

    target = tmp_path / "video.mp4"
    target.symlink_to("/dev/full")
    script = f"""
import errno, numpy as np
from pai_ros.media.video import Mp4Writer
try:
    with Mp4Writer({str(target)!r}, fps=15) as w:
        for i in range(100):
            w.write(np.random.default_rng(i).integers(0, 255, (240, 320, 3), dtype=np.uint8))
except OSError as exc:
    print("raised", exc.errno == errno.ENOSPC, exc.filename)
w = Mp4Writer({str(target)!r}, fps=15)
try:
    for i in range(100):
        w.write(np.zeros((240, 320, 3), np.uint8))
except OSError:
    pass
try:
    w.write(np.zeros((240, 320, 3), np.uint8))  # a caller that goes on anyway: refused, not encoded
except OSError as exc:
    print("again", exc.errno == errno.EIO, exc.filename)
w.close()
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split("\n")[:2] == [f"raised True {target}", f"again True {target}"]
