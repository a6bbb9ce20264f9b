"""Camera encodings beyond rgb/bgr/mono: YUV 4:2:2 and Bayer by pai_ros, the rest through cv_bridge.

The raw conversions are pure (no ROS). cv_bridge itself cannot be installed here (the index has
only the ROS 1 port, broken on NumPy 2), so the routing test gives the decoder a stand-in with
cv_bridge's one method; on a ROS 2 install the real bridge takes that place.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pai_ros.imaging.convert import raw_to_rgb
from pai_ros.imaging.errors import ImageConversionError

H, W = 6, 8


def colour_image() -> np.ndarray:
    """Smooth colour blocks (demosaicing and chroma subsampling are exact on flat 2x2 cells)."""
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:, : W // 2] = (200, 100, 30)
    rgb[:, W // 2:] = (20, 160, 220)
    return rgb


def bayer(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """The mosaic a sensor with colour filter ``pattern`` (e.g. RGGB, row-major 2x2) records."""
    out = np.zeros(rgb.shape[:2], np.uint8)
    for i, colour in enumerate(pattern):
        dy, dx = divmod(i, 2)
        out[dy::2, dx::2] = rgb[dy::2, dx::2, "RGB".index(colour)]
    return out


@pytest.mark.parametrize("encoding, pattern", [("bayer_rggb8", "RGGB"), ("bayer_bggr8", "BGGR"),
                                               ("bayer_gbrg8", "GBRG"), ("bayer_grbg8", "GRBG")])
def test_bayer_mosaics_are_demosaiced_to_the_right_colours(encoding: str, pattern: str) -> None:
    rgb = colour_image()
    mosaic = bayer(rgb, pattern)
    out = raw_to_rgb(encoding, H, W, W, mosaic.tobytes())
    # Away from the block edge every 3x3 neighbourhood is one colour: demosaicing is exact there.
    assert np.abs(out[2:4, 1:3].astype(int) - rgb[2:4, 1:3]).max() <= 2
    assert np.abs(out[2:4, 5:7].astype(int) - rgb[2:4, 5:7]).max() <= 2


@pytest.mark.parametrize("encoding, code", [("yuv422_yuy2", cv2.COLOR_RGB2YUV_YUY2), ("yuyv", cv2.COLOR_RGB2YUV_YUY2),
                                            ("yuv422", cv2.COLOR_RGB2YUV_UYVY), ("uyvy", cv2.COLOR_RGB2YUV_UYVY)])
def test_yuv422_round_trips(encoding: str, code: int) -> None:
    rgb = colour_image()
    packed = cv2.cvtColor(rgb, code)  # (H, W, 2): two bytes per pixel
    step = W * 2 + 4  # padded rows, as some drivers send
    data = np.zeros((H, step), np.uint8)
    data[:, : W * 2] = packed.reshape(H, W * 2)
    out = raw_to_rgb(encoding, H, W, step, data.tobytes())
    assert out.shape == (H, W, 3) and np.abs(out.astype(int) - rgb).max() <= 2


def test_odd_width_yuv_and_tiny_bayer_are_refused_in_one_line() -> None:
    with pytest.raises(ImageConversionError, match="YUV 4:2:2 needs an even width"):
        raw_to_rgb("yuv422_yuy2", 2, 3, 6, bytes(12))
    with pytest.raises(ImageConversionError, match="at least 2x2"):
        raw_to_rgb("bayer_rggb8", 1, 4, 4, bytes(4))
    with pytest.raises(ImageConversionError, match="needs 106 bytes, got 10"):
        raw_to_rgb("yuv422", H, W, W * 2 + 2, bytes(10))


def test_unknown_encodings_say_what_would_convert_them() -> None:
    with pytest.raises(ImageConversionError, match="unsupported image encoding '16UC1'.*cv_bridge converts more"):
        raw_to_rgb("16UC1", H, W, W * 2, bytes(H * W * 2))


@pytest.mark.ros
def test_decoder_routes_encodings_pai_ros_lacks_through_cv_bridge() -> None:
    from sensor_msgs.msg import Image

    from pai_ros.ros.messages import ImageDecoder

    class StandInBridge:  # cv_bridge's interface (not installable here; see the module docstring)
        def __init__(self) -> None:
            self.calls: list[str] = []

        def imgmsg_to_cv2(self, msg: Image, desired_encoding: str) -> np.ndarray:
            self.calls.append(msg.encoding)
            assert desired_encoding == "rgb8"
            if msg.encoding == "16UC1":
                raise TypeError("[16UC1] is not a color format")
            return np.full((msg.height, msg.width, 3), 7, np.uint8)

    bridge = StandInBridge()
    decoder = ImageDecoder(bridge=bridge)
    rgb16 = Image(height=2, width=2, encoding="rgb16", step=12, data=bytes(24))
    assert decoder.to_rgb(rgb16).tolist() == np.full((2, 2, 3), 7).tolist() and bridge.calls == ["rgb16"]
    # pai_ros's own conversion stays in charge of what it knows beyond the bridge-first set...
    yuyv = Image(height=2, width=2, encoding="yuv422_yuy2", step=4, data=bytes([128] * 8))
    assert decoder.to_rgb(yuyv).shape == (2, 2, 3) and bridge.calls == ["rgb16"]
    # ... and whatever the bridge raises becomes one ImageConversionError (a rejection in the node).
    with pytest.raises(ImageConversionError, match="cv_bridge cannot convert the 16UC1 image"):
        decoder.to_rgb(Image(height=2, width=2, encoding="16UC1", step=4, data=bytes(8)))
    without = ImageDecoder(bridge=None)
    with pytest.raises(ImageConversionError, match="unsupported image encoding 'rgb16'"):
        without.to_rgb(rgb16)
