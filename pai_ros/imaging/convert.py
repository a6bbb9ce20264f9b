"""Convert camera message payloads to RGB arrays and back, without ROS (pure numpy + OpenCV).

The ROS adapters pass the fields of ``sensor_msgs/Image`` (encoding, height, width, step,
data) or ``sensor_msgs/CompressedImage`` (format, data); everything here works on those plain
values so that it can be tested and fuzzed without ROS. Images inside pai_ros are always
``H x W x 3`` uint8 RGB; this module is the one place where other layouts are converted.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from pai_ros.imaging.errors import ImageConversionError

#: Raw encodings accepted from cameras: name -> (bytes per pixel, conversion to RGB or None).
#: Names as in ROS's sensor_msgs/image_encodings.hpp. YUV 4:2:2 packs two pixels in four bytes
#: (``yuv422`` is UYVY, ``yuv422_yuy2`` YUYV: what USB cameras send); Bayer is the raw sensor
#: mosaic, demosaiced here. OpenCV names a Bayer pattern by its second row's first two pixels,
#: hence RGGB -> BayerBG (checked by test_image_encodings.py on synthetic mosaics).
RAW_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
    "yuv422": (2, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": (2, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": (2, cv2.COLOR_YUV2RGB_YUY2),
    "yuyv": (2, cv2.COLOR_YUV2RGB_YUY2),
    "bayer_rggb8": (1, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr8": (1, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": (1, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg8": (1, cv2.COLOR_BayerGB2RGB),
}
#: One channel of intensity: the policy gets it as grey RGB, which a colour-trained policy never saw.
GREY_ENCODINGS = frozenset({"mono8"})
_NEEDS_EVEN_WIDTH = {"yuv422", "uyvy", "yuv422_yuy2", "yuyv"}  # two pixels share one U and one V
_NEEDS_2X2 = {name for name in RAW_ENCODINGS if name.startswith("bayer_")}  # one 2x2 cell per colour sample
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")
#: Largest compressed image decoded (pixels). A few hundred corrupt bytes can claim 30000x30000
#: pixels, and OpenCV then spends seconds and gigabytes decoding it; no camera stream is this big.
MAX_COMPRESSED_PIXELS = 1 << 26
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); they carry the size.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def raw_to_rgb(encoding: str, height: int, width: int, step: int,
               data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """``sensor_msgs/Image`` fields -> ``H x W x 3`` uint8 RGB (a new array).

    Every accepted encoding has 8-bit samples, so the message's byte order does not matter.
    Anything malformed raises :class:`ImageConversionError` and nothing else, so callers (the
    policy node, the bag converter) can skip one bad frame without guarding against more.
    """
    if not isinstance(encoding, str):
        raise ImageConversionError(f"image encoding must be a string, got {type(encoding).__name__}")
    # Plain ints: sizes may arrive as NumPy uint32 (rosbags), whose products would wrap around.
    height, width, step = _size(height, "height"), _size(width, "width"), _size(step, "step")
    enc = encoding.lower()
    if enc not in RAW_ENCODINGS:
        raise ImageConversionError(f"unsupported image encoding {encoding!r} "
                                   f"(supported: {', '.join(RAW_ENCODINGS)}, or CompressedImage jpeg/png; "
                                   "with a ROS 2 install, cv_bridge converts more)")
    channels, code = RAW_ENCODINGS[enc]
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"image has no pixels ({height}x{width})")
    if (enc in _NEEDS_EVEN_WIDTH and width % 2) or (enc in _NEEDS_2X2 and (width < 2 or height < 2)):
        raise ImageConversionError(f"{encoding} image of {height}x{width}: "
                                   f"{'YUV 4:2:2 needs an even width' if enc in _NEEDS_EVEN_WIDTH else 'a Bayer mosaic needs at least 2x2 pixels'}")
    row_bytes = width * channels
    if step < row_bytes:
        raise ImageConversionError(f"row step {step} is smaller than width x channels = {row_bytes}")
    buf = _bytes_view(data)
    needed = step * (height - 1) + row_bytes  # the last row needs no padding
    if buf.size < needed:
        raise ImageConversionError(f"{encoding} image of {height}x{width} (step {step}) needs "
                                   f"{needed} bytes, got {buf.size}")
    rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes), strides=(step, 1))
    img = rows.reshape(height, width, channels) if channels > 1 else rows.reshape(height, width)
    if code is None:
        return np.array(img, dtype=np.uint8, copy=True)
    return cv2.cvtColor(np.ascontiguousarray(img), code)


def message_to_rgb(msg: Any) -> np.ndarray:
    """A deserialised ``Image`` or ``CompressedImage`` (rosbags' or rclpy's: read by field name; only
    the raw one has ``encoding``) -> ``H x W x 3`` uint8 RGB."""
    if hasattr(msg, "encoding"):
        return raw_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data)
    return compressed_to_rgb(msg.format, msg.data)


def compressed_to_rgb(fmt: str, data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (JPEG or PNG) -> ``H x W x 3`` uint8 RGB."""
    if not isinstance(fmt, str):
        raise ImageConversionError(f"compressed image format must be a string, got {type(fmt).__name__}")
    f = fmt.lower()
    if not any(name in f for name in COMPRESSED_FORMATS):
        raise ImageConversionError(f"unsupported compressed format {fmt!r} (supported: jpeg, png)")
    buf = _bytes_view(data)
    if buf.size == 0:
        raise ImageConversionError("compressed image is empty")
    _check_compressed_header(buf[:65536].tobytes(), buf.size, fmt)
    # OpenCV logs its own complaint about broken data to stderr; our error says it in one line.
    level = cv2.getLogLevel()
    cv2.setLogLevel(0)  # 0: silent
    try:
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # e.g. a header that claims more pixels than OpenCV allows
        reason = getattr(exc, "err", "") or "OpenCV error"  # the failed check, without file and line
        raise ImageConversionError(f"compressed image ({fmt!r}, {buf.size} bytes) does not decode ({reason})") from None
    finally:
        cv2.setLogLevel(level)
    if bgr is None:
        raise ImageConversionError(f"compressed image ({fmt!r}, {buf.size} bytes) does not decode")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _check_compressed_header(head: bytes, total: int, fmt: str) -> None:
    """Refuse, before OpenCV sees them, PNG/JPEG headers that claim more than the data can hold.

    OpenCV trusts them: a PNG chunk length of 4 GB makes it allocate 4 GB, a JPEG frame of
    30000x30000 is decoded into 2.7 GB. Only the headers are read here; anything this does not
    recognise is left to OpenCV.
    """
    size: tuple[int, int] | None = None
    if not head.startswith((_PNG_SIGNATURE, b"\xff\xd8")):
        # OpenCV would sniff and decode BMP, TIFF, WebP, ... as well: decoders no camera needs.
        raise ImageConversionError(f"compressed image ({fmt!r}, {total} bytes) is neither PNG nor JPEG data")
    if head.startswith(_PNG_SIGNATURE):
        pos = len(_PNG_SIGNATURE)
        while pos + 8 <= len(head):
            length = int.from_bytes(head[pos:pos + 4], "big")
            kind = head[pos + 4:pos + 8]
            if length > total - pos - 12:
                raise ImageConversionError(f"PNG chunk {kind!r} at byte {pos} claims {length} bytes, only "
                                           f"{max(0, total - pos - 12)} follow (truncated or corrupt)")
            if kind == b"IHDR" and length >= 8:
                size = (int.from_bytes(head[pos + 12:pos + 16], "big"), int.from_bytes(head[pos + 8:pos + 12], "big"))
            if kind == b"IEND":
                break
            pos += 12 + length
    else:
        pos = 2
        while pos + 4 <= len(head) and size is None:
            if head[pos] != 0xFF:
                break  # not at a marker: corrupt, OpenCV will say so
            marker = head[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
                pos += 2
                continue
            if marker == 0xDA:  # start of scan: the frame header would have come before
                break
            if marker in _JPEG_SOF and pos + 9 <= len(head):
                size = (int.from_bytes(head[pos + 5:pos + 7], "big"), int.from_bytes(head[pos + 7:pos + 9], "big"))
            pos += 2 + int.from_bytes(head[pos + 2:pos + 4], "big")
    if size is not None and size[0] * size[1] > MAX_COMPRESSED_PIXELS:
        raise ImageConversionError(f"compressed image ({fmt!r}) claims {size[0]}x{size[1]} pixels, more than "
                                   f"{MAX_COMPRESSED_PIXELS} (corrupt, or not a camera image)")


def _size(value: object, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ImageConversionError(f"image {name} must be an integer, got {value!r}")
    return int(value)


def _bytes_view(data: object) -> np.ndarray:
    """The message's data field as a flat uint8 array (no copy where possible)."""
    try:
        if isinstance(data, np.ndarray):
            return np.ascontiguousarray(data).view(np.uint8).ravel()
        return np.frombuffer(data, dtype=np.uint8)  # bytes, bytearray, memoryview, array.array
    except (TypeError, ValueError) as exc:
        raise ImageConversionError(f"image data must be bytes, got {type(data).__name__} ({exc})") from None


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
