"""Writing videos prints nothing from FFmpeg: `make demo`'s first run stays readable.

FFmpeg writes to file descriptor 2 directly, so the checks run in a subprocess and read its
stderr. LeRobot's encoder hands FFmpeg's logging back to FFmpeg's own callback after every file
(restore_default_callback): the second half writes an MP4 of ours after LeRobot encoded some.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = """
import sys
from pathlib import Path
import numpy as np
from pai_ros.demo.dataset import DatasetSpec, write_dataset
from pai_ros.sim.scene import SceneConfig
from pai_ros.media.video import Mp4Writer, count_frames

out = Path(sys.argv[1])
write_dataset(out / "ds", DatasetSpec("pai/quiet", num_episodes=2, seed=3),
              SceneConfig(front_hw=(64, 80), wrist_hw=(64, 80), episode_length=8), progress=False)
with Mp4Writer(out / "ours.mp4", fps=10) as w:
    for i in range(6):
        w.write(np.full((32, 48, 3), 40 * i, np.uint8))
assert count_frames(out / "ours.mp4") == 6
print("WROTE", sorted(p.name for p in (out / "ds" / "videos").rglob("*.mp4")))
"""


@pytest.mark.slow
def test_dataset_and_mp4_writing_print_no_ffmpeg_lines(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "WROTE ['file-000.mp4', 'file-000.mp4']" in res.stdout, res.stdout  # two cameras' videos
    noise = [line for line in res.stderr.splitlines()
             if line.startswith("[") and " @ 0x" in line or line.startswith(("Map:", "frame I:"))]
    assert not noise, "FFmpeg / datasets chatter on stderr:\n" + "\n".join(noise[:10])
