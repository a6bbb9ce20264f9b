"""Convert camera message payloads to RGB arrays and back, without ROS (pure numpy + OpenCV).

The ROS adapters pass the fields of ``sensor_msgs/Image`` (encoding, height, width, step,
data) or ``sensor_msgs/CompressedImage`` (format, data); everything here works on those plain
values so that it can be tested and fuzzed without ROS. Images inside pai_ros are always
``H x W x 3`` uint8 RGB; this module is the one place where other layouts are converted.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Raw encodings accepted from cameras: name -> (channels, conversion to RGB or None).
RAW_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
}
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")


class ImageConversionError(ValueError):
    """The message cannot be turned into an RGB image (unsupported or malformed)."""


def raw_to_rgb(encoding: str, height: int, width: int, step: int,
               data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """``sensor_msgs/Image`` fields -> ``H x W x 3`` uint8 RGB (a new array).

    Every accepted encoding has 8-bit channels, so the message's byte order does not matter.
    """
    enc = encoding.lower()
    if enc not in RAW_ENCODINGS:
        raise ImageConversionError(f"unsupported image encoding '{encoding}' "
                                   f"(supported: {', '.join(RAW_ENCODINGS)}, or CompressedImage jpeg/png)")
    channels, code = RAW_ENCODINGS[enc]
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"image has no pixels ({height}x{width})")
    row_bytes = width * channels
    if step < row_bytes:
        raise ImageConversionError(f"row step {step} is smaller than width x channels = {row_bytes}")
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).ravel()
    if buf.size < step * (height - 1) + row_bytes:
        raise ImageConversionError(f"{encoding} image of {height}x{width} (step {step}) needs "
                                   f"{step * height} bytes, got {buf.size}")
    rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes), strides=(step, 1))
    img = rows.reshape(height, width, channels) if channels > 1 else rows.reshape(height, width)
    if code is None:
        return np.array(img, dtype=np.uint8, copy=True)
    return cv2.cvtColor(np.ascontiguousarray(img), code)


def compressed_to_rgb(fmt: str, data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (JPEG or PNG) -> ``H x W x 3`` uint8 RGB."""
    f = fmt.lower()
    if not any(name in f for name in COMPRESSED_FORMATS):
        raise ImageConversionError(f"unsupported compressed format '{fmt}' (supported: jpeg, png)")
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).ravel()
    if buf.size == 0:
        raise ImageConversionError("compressed image is empty")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageConversionError(f"compressed image ({fmt}, {buf.size} bytes) does not decode")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_to_raw(rgb: np.ndarray) -> tuple[str, int, int, int, bytes]:
    """``H x W x 3`` uint8 RGB -> (encoding, height, width, step, data) of an rgb8 Image."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageConversionError(f"expected HxWx3 uint8 RGB, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    return "rgb8", h, w, w * 3, np.ascontiguousarray(rgb).tobytes()


def rgb_to_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageConversionError("JPEG encoding failed")
    return buf.tobytes()


def resize_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize to the policy's input size (area interpolation when shrinking, linear when growing)."""
    if rgb.shape[:2] == (height, width):
        return rgb
    shrinking = height * width < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
