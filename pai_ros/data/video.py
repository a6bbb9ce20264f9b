"""Choose a video decoding backend for LeRobotDataset that really works on this machine."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def video_backend() -> str:
    """``torchcodec`` when it can load the system FFmpeg libraries, else ``pyav``.

    LeRobot picks torchcodec whenever the package is installed, but it fails at decode time
    if the FFmpeg shared libraries are missing or its build does not match torch. Importing
    its decoder module loads those libraries, so a failed import tells before any decoding.
    """
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception:  # ImportError, OSError, RuntimeError: any means "cannot decode"
        return "pyav"
    return "torchcodec"
