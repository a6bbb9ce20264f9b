"""H.264 MP4 writing with PyAV: browser-playable, RGB in, no BGR anywhere."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import TracebackType

import numpy as np


def quiet_ffmpeg() -> None:
    """Let FFmpeg (PyAV's libav) print errors only: no libx264 statistics, no muxer notes.

    Two switches, because LeRobot's video encoder calls ``av.logging.restore_default_callback()``
    after every file it writes, which hands logging back to FFmpeg's own callback: that one
    prints whatever passes FFmpeg's global level (INFO by default, several lines per file).
    """
    import av

    av.logging.set_level(av.logging.ERROR)
    av.logging.set_libav_level(av.logging.ERROR)


class Mp4Writer:
    """Append RGB uint8 frames to an H.264 (yuv420p, faststart) MP4 at a fixed frame rate.

    The size is fixed by the first frame and must be even in both dimensions (yuv420p).
    """

    def __init__(self, path: str | Path, fps: float, crf: int = 23, preset: str = "veryfast") -> None:
        import av

        quiet_ffmpeg()  # libx264's statistics are not for the user
        self.path = Path(path)
        self._container = av.open(str(self.path), mode="w", options={"movflags": "+faststart"})
        self._stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(crf), "preset": preset}
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        import av

        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 uint8 RGB frame, got {rgb.dtype} {rgb.shape}")
        h, w = rgb.shape[:2]
        if self._size is None:
            if h % 2 or w % 2:
                raise ValueError(f"H.264 (yuv420p) needs even frame sizes, got {h}x{w}")
            self._stream.height, self._stream.width = h, w
            self._size = (h, w)
        elif (h, w) != self._size:
            raise ValueError(f"frame size changed from {self._size[0]}x{self._size[1]} to {h}x{w}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        if self._size is not None:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        self._container.close()
        self._container = None

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def even_size(rgb: np.ndarray) -> np.ndarray:
    """Pad by one pixel (edge colour) where a dimension is odd, for yuv420p."""
    h, w = rgb.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return rgb
    return np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def count_frames(path: str | Path) -> int:
    """Decode an MP4 and count its frames (for tests and checks)."""
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))
