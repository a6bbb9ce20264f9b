"""Writing RGB images as PNG files people open (contact sheets, feature thumbnails)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pai_ros.staging import staged_file


def write_png(path: Path, rgb: np.ndarray) -> Path:
    """Write the RGB uint8 image ``rgb`` to ``path`` as PNG, whole or not at all.

    ``cv2.imwrite`` reports a failure only by returning False, which callers forget to check,
    and a crash while it writes leaves a truncated PNG that looks like a picture; here the
    encode is checked and the bytes go through a staged file, so ``path`` is either the new
    picture or what was there before.
    """
    path = Path(path)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"{path}: expected an RGB uint8 image of shape (H, W, 3), got {rgb.dtype} {rgb.shape}")
    # OpenCV's encoders take BGR; this is the I/O edge where the project's RGB is turned around.
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"OpenCV could not encode the {rgb.shape} image for {path} as PNG")
    with staged_file(path) as tmp:
        tmp.write_bytes(encoded.tobytes())
    return path
