"""H.264 MP4 writing with PyAV: browser-playable, RGB in, no BGR anywhere."""

from __future__ import annotations

import errno
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


#: Presentation times are kept in 1/90000 s, MPEG's usual clock: fine enough for any stamp spacing.
TIME_BASE = Fraction(1, 90000)


class Mp4Writer:
    """Append RGB uint8 frames to an H.264 (yuv420p, faststart) MP4.

    Frames follow each other at ``fps`` unless :meth:`write` is given each frame's time: then every
    frame shows when it happened (a variable frame rate), so a recording whose ticks were skipped
    still plays in real time. The size is fixed by the first frame and must be even in both
    dimensions (yuv420p).
    """

    def __init__(self, path: str | Path, fps: float, crf: int = 23, preset: str = "veryfast") -> None:
        import av

        quiet_ffmpeg()  # libx264's statistics are not for the user
        self.path = Path(path)
        self._container = av.open(str(self.path), mode="w", options={"movflags": "+faststart"})
        self._stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(crf), "preset": preset}
        self._stream.codec_context.time_base = TIME_BASE
        self._fps = float(fps)
        self._size: tuple[int, int] | None = None
        self._first_s: float | None = None
        self._last_pts = -1
        self._failed = False  # a mux raised (a full disk): muxing again would crash PyAV (SIGSEGV)
        self.frames = 0

    def write(self, rgb: np.ndarray, at_s: float | None = None) -> None:
        """Append one frame; ``at_s`` (seconds, any origin, increasing) is when it happened.

        Without ``at_s`` the frame comes ``1/fps`` after the previous one.
        """
        import av

        if self._failed:  # before encoding: nothing more goes into a container whose mux failed
            raise OSError(errno.EIO, "an earlier write to this video failed", str(self.path))
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
        if at_s is None:
            pts = round(self.frames / self._fps / TIME_BASE) if self._first_s is None else self._last_pts + round(
                1 / self._fps / TIME_BASE)
        else:
            if self._first_s is None:
                if self.frames:
                    raise ValueError("give every frame its time or none: the first frames had none")
                self._first_s = float(at_s)
            pts = round((float(at_s) - self._first_s) / TIME_BASE)
        if pts <= self._last_pts:
            raise ValueError(f"frame times must increase: {at_s} s is not after the previous frame")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts, frame.time_base = pts, TIME_BASE
        self._last_pts = pts
        self._mux(self._stream.encode(frame))
        self.frames += 1

    def _mux(self, packets: list) -> None:
        try:
            for packet in packets:
                self._container.mux(packet)
        except BaseException:
            self._failed = True
            raise

    def close(self) -> None:
        """Flush and finish the file; after a failed write only release it (the file is not whole)."""
        if self._container is None:
            return
        try:
            if self._size is not None and not self._failed:
                self._mux(self._stream.encode(None))
        finally:
            # PyAV crashed (SIGSEGV) when the encoder was flushed into a container whose last mux
            # had failed (a full disk: every attention video, bag conversion and demo); closing
            # it without muxing again is safe.
            container, self._container = self._container, None
            container.close()

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


def frame_times(path: str | Path) -> list[float]:
    """Decode an MP4 and return each frame's presentation time in seconds (for tests and checks)."""
    import av

    with av.open(str(path)) as container:
        return [float(f.pts * f.time_base) for f in container.decode(video=0)]
