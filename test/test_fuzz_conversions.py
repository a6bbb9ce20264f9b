"""Fuzzing the message <-> array conversions (hypothesis).

The contract: valid input round-trips exactly; invalid input raises the module's own error
(:class:`ImageConversionError`) with a message, never another exception and never a hang.
The expected pixels are computed here with plain NumPy indexing, not with OpenCV, so a wrong
channel order in the converter cannot agree with itself.

The pai_ros.imaging tests need no ROS; the pai_ros.ros.messages ones import message classes
from the ROS wheels and the built overlay (pai_ros.msg), so they carry the ``ros`` marker.
"""

from __future__ import annotations

import re
import struct
import zlib
from datetime import timedelta
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from helpers.fuzzing import examples, ros_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pai_ros.imaging.convert import RAW_ENCODINGS, compressed_to_rgb, raw_to_rgb, rgb_to_raw
from pai_ros.imaging.errors import ImageConversionError

FUZZ = settings(max_examples=examples(150), deadline=timedelta(seconds=2), suppress_health_check=[HealthCheck.too_slow])

# Encodings whose pixels round-trip exactly. YUV 4:2:2 (shared chroma) and Bayer mosaics
# (interpolated colours) cannot; test_image_encodings.py checks their colours instead.
CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
INTERPOLATED = {"yuv422", "uyvy", "yuv422_yuy2", "yuyv", "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8"}
assert set(CHANNELS) | INTERPOLATED == set(RAW_ENCODINGS)  # a new encoding needs an expectation here


def expected_rgb(encoding: str, pixels: np.ndarray) -> np.ndarray:
    """What the RGB image of ``pixels`` in ``encoding`` is, by definition of the encoding."""
    if encoding == "mono8":
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if encoding.startswith("bgr"):
        return pixels[:, :, 2::-1]
    return pixels[:, :, :3]


@st.composite
def raw_images(draw: st.DrawFn) -> tuple[str, int, int, int, bytes, np.ndarray]:
    """A valid Image: (encoding, height, width, step, data, the pixels it encodes)."""
    encoding = draw(st.sampled_from(sorted(CHANNELS)))
    ch = CHANNELS[encoding]
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    shape = (h, w) if ch == 1 else (h, w, ch)
    pixels = draw(hnp.arrays(np.uint8, shape, elements=st.integers(0, 255)))
    pad = draw(st.integers(0, 7))                      # row padding: step > width * channels
    tail = draw(st.binary(max_size=16))                # bytes after the last row are ignored
    rows = pixels.reshape(h, w * ch)
    data = np.hstack([rows, np.full((h, pad), 0xAB, np.uint8)]).tobytes() + tail
    return encoding, h, w, w * ch + pad, data, pixels


@FUZZ
@given(image=raw_images(), upper=st.booleans(), as_array=st.booleans(), numpy_sizes=st.booleans())
def test_valid_raw_images_convert_exactly(image, upper: bool, as_array: bool, numpy_sizes: bool) -> None:
    encoding, h, w, step, data, pixels = image
    enc = encoding.upper() if upper else encoding
    payload = np.frombuffer(data, np.uint8) if as_array else data   # rosbags gives arrays, rclpy array.array/bytes
    sizes = (np.uint32(h), np.uint32(w), np.uint32(step)) if numpy_sizes else (h, w, step)
    rgb = raw_to_rgb(enc, *sizes, payload)
    assert rgb.dtype == np.uint8 and rgb.shape == (h, w, 3)
    np.testing.assert_array_equal(rgb, expected_rgb(encoding, pixels))


ENCODING_NAMES = st.sampled_from([*CHANNELS, "RGB8", "16UC1", "32FC1", "mono16", "bayer_rggb8", "yuv422", "8UC3", "",
                                  "jpeg"])
ENCODINGS = st.one_of(ENCODING_NAMES, st.text(max_size=12))   # any Python str: the pure converter
ROS_ENCODINGS = st.one_of(ENCODING_NAMES, ros_text(12))       # what an Image message can carry
SIZES = st.one_of(st.integers(-3, 40), st.integers(-(2 ** 64), 2 ** 64),
                  st.integers(0, 2 ** 32 - 1).map(np.uint32), st.sampled_from([2 ** 31, 2 ** 32 - 1, 2 ** 63]))


@FUZZ
@given(encoding=ENCODINGS, height=SIZES, width=SIZES, step=SIZES, data=st.binary(max_size=600))
def test_arbitrary_raw_fields_convert_or_raise_image_conversion_error(encoding, height, width, step, data) -> None:
    try:
        rgb = raw_to_rgb(encoding, height, width, step, data)
    except ImageConversionError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    # Accepted: then it really was a well-formed image of a supported encoding.
    ch = RAW_ENCODINGS[encoding.lower()][0]  # bytes per pixel
    assert 0 < int(height) and 0 < int(width) and int(step) >= int(width) * ch
    assert len(data) >= int(step) * (int(height) - 1) + int(width) * ch
    assert rgb.shape == (int(height), int(width), 3) and rgb.dtype == np.uint8


@pytest.mark.parametrize("fields, needle", [
    (("rgb8", 2, 2, 5, bytes(12)), "row step 5 is smaller than width x channels = 6"),
    (("rgb8", 2, 2, 6, bytes(11)), "needs 12 bytes, got 11"),
    (("rgb8", 2, 3, 10, bytes(18)), "needs 19 bytes, got 18"),  # the last row needs no padding
    (("32FC1", 2, 2, 8, bytes(16)), "unsupported image encoding '32FC1'"),
    (("mono8", 0, 4, 4, b""), "has no pixels"),
    (("rgb8", np.uint32(2 ** 31), np.uint32(1), np.uint32(6), bytes(100)), "needs 12884901885 bytes"),  # no wrap
    (("rgb8", 1.5, 1, 3, b"abc"), "height must be an integer"),
    ((None, 1, 1, 3, b"abc"), "encoding must be a string"),
    (("rgb8", 1, 1, 3, "abc"), "data must be bytes"),
])
def test_malformed_raw_fields_name_the_problem(fields, needle: str) -> None:
    with pytest.raises(ImageConversionError, match=re.escape(needle)):
        raw_to_rgb(*fields)
    assert raw_to_rgb("rgb8", 2, 3, 10, bytes(19)).shape == (2, 3, 3)  # ... so 19 bytes are enough


def _png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok
    return buf.tobytes()


def _jpeg(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


RGB_IMAGES = st.tuples(st.integers(1, 24), st.integers(1, 24)).flatmap(
    lambda hw: hnp.arrays(np.uint8, (*hw, 3), elements=st.integers(0, 255)))


@FUZZ
@given(rgb=RGB_IMAGES, fmt=st.sampled_from(["png", "PNG", "rgb8; png compressed bgr8"]))
def test_png_round_trips_exactly(rgb: np.ndarray, fmt: str) -> None:
    np.testing.assert_array_equal(compressed_to_rgb(fmt, _png(rgb)), rgb)


@FUZZ
@given(colour=st.tuples(*[st.integers(0, 255)] * 3), h=st.integers(8, 32), w=st.integers(8, 32),
       fmt=st.sampled_from(["jpeg", "jpg", "rgb8; jpeg compressed bgr8"]))
def test_jpeg_keeps_size_and_colour_order(colour, h: int, w: int, fmt: str) -> None:
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[...] = colour
    out = compressed_to_rgb(fmt, _jpeg(rgb))
    assert out.shape == (h, w, 3)
    # A flat colour survives JPEG almost exactly; a swapped channel order would be off by far more.
    assert np.abs(out.astype(int) - np.array(colour)).max() <= 3


@st.composite
def garbled_compressed(draw: st.DrawFn) -> tuple[str, bytes]:
    rgb = draw(RGB_IMAGES)
    good = bytearray(draw(st.sampled_from([_png, _jpeg]))(rgb))
    for _ in range(draw(st.integers(0, 6))):                        # flipped bits anywhere
        good[draw(st.integers(0, len(good) - 1))] ^= 1 << draw(st.integers(0, 7))
    if draw(st.booleans()):                                          # a size field made huge
        at = draw(st.integers(0, max(0, len(good) - 4)))
        good[at:at + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x00"]))
    cut = draw(st.integers(0, len(good)))
    data = bytes(good[:cut]) if draw(st.booleans()) else bytes(good)
    fmt = draw(st.one_of(st.sampled_from(["jpeg", "png", "jpg", "bmp", "", "rgb8; jpeg compressed bgr8"]),
                         st.text(max_size=10)))
    return fmt, data


def _assert_rgb_or_error(fmt: str, data: bytes) -> None:
    try:
        out = compressed_to_rgb(fmt, data)
    except ImageConversionError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3 and out.size > 0


@FUZZ
@given(case=garbled_compressed())
def test_garbled_compressed_images_decode_or_raise_image_conversion_error(case) -> None:
    _assert_rgb_or_error(*case)


@FUZZ
@given(fmt=st.sampled_from(["jpeg", "png"]), data=st.binary(max_size=300),
       magic=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb"]))
def test_random_bytes_behind_image_magic(fmt: str, data: bytes, magic: bytes) -> None:
    _assert_rgb_or_error(fmt, magic + data)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_headers_that_lie_are_refused_before_decoding() -> None:
    """A few hundred bytes must not make OpenCV allocate gigabytes (it trusts these headers)."""
    png = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
           + _png_chunk(b"IDAT", zlib.compress(bytes(64))) + _png_chunk(b"IEND", b""))
    with pytest.raises(ImageConversionError, match="claims 30000x30000 pixels"):
        compressed_to_rgb("png", png)
    jpeg = bytearray(_jpeg(np.zeros((8, 8, 3), np.uint8)))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", 30000, 30000)  # frame height, width
    with pytest.raises(ImageConversionError, match="claims 30000x30000 pixels"):
        compressed_to_rgb("jpeg", bytes(jpeg))
    chunk_lie = bytearray(_png(np.zeros((2, 2, 3), np.uint8)))
    chunk_lie[33:37] = b"\xff\x00\x00\x0a"  # the length of the chunk after IHDR
    with pytest.raises(ImageConversionError, match="claims 4278190090 bytes"):
        compressed_to_rgb("png", bytes(chunk_lie))


def test_only_png_and_jpeg_data_reach_the_decoder() -> None:
    ok, bmp = cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))
    assert ok
    with pytest.raises(ImageConversionError, match="neither PNG nor JPEG"):
        compressed_to_rgb("png", bmp.tobytes())
    with pytest.raises(ImageConversionError, match="compressed image is empty"):
        compressed_to_rgb("jpeg", b"")
    with pytest.raises(ImageConversionError, match="unsupported compressed format 'tiff'"):
        compressed_to_rgb("tiff", _png(np.zeros((2, 2, 3), np.uint8)))


@FUZZ
@given(arr=hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.float32, np.int8]),
                      hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5)))
def test_rgb_to_raw_accepts_exactly_hxwx3_uint8(arr: np.ndarray) -> None:
    valid = arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    if not valid:
        with pytest.raises(ImageConversionError, match="expected HxWx3 uint8 RGB"):
            rgb_to_raw(arr)
        return
    enc, h, w, step, data = rgb_to_raw(arr)
    assert (enc, h, w, step, len(data)) == ("rgb8", arr.shape[0], arr.shape[1], 3 * arr.shape[1], arr.size)
    if arr.size:
        np.testing.assert_array_equal(raw_to_rgb(enc, h, w, step, data), arr)


# ------------------------------------------------------------------ pai_ros.ros.messages


def _cdr_round_trip(msg, msgtype: str):
    """rclpy's CDR bytes decoded by the bag reader's type store (what bag2parquet sees)."""
    from rclpy.serialization import serialize_message

    from pai_ros.bags.typestore import deserialize, typestore

    return deserialize(typestore(), serialize_message(msg), msgtype)


@pytest.mark.ros
@FUZZ
@given(rgb=RGB_IMAGES, sliced=st.booleans(), frame_id=ros_text(8))
def test_rgb_image_round_trips_through_the_message_and_cdr(rgb: np.ndarray, sliced: bool, frame_id: str) -> None:
    from std_msgs.msg import Header

    from pai_ros.ros.messages import ImageDecoder, rgb_image

    if sliced:  # a non-contiguous view, as crops and channel flips produce
        rgb = np.ascontiguousarray(np.concatenate([rgb, rgb], axis=1))[:, ::2]
    msg = rgb_image(rgb, Header(frame_id=frame_id))
    assert msg.header.frame_id == frame_id and msg.encoding == "rgb8" and msg.is_bigendian == 0
    np.testing.assert_array_equal(ImageDecoder().to_rgb(msg), rgb)
    decoded = _cdr_round_trip(msg, "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(raw_to_rgb(decoded.encoding, decoded.height, decoded.width, decoded.step,
                                             decoded.data), rgb)


@pytest.mark.ros
@FUZZ
@given(image=raw_images(), bigendian=st.booleans())
def test_image_decoder_ignores_byte_order_for_8_bit_encodings(image, bigendian: bool) -> None:
    from sensor_msgs.msg import Image

    from pai_ros.ros.messages import ImageDecoder

    encoding, h, w, step, data, pixels = image
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian), step=step, data=data)
    np.testing.assert_array_equal(ImageDecoder().to_rgb(msg), expected_rgb(encoding, pixels))


@pytest.mark.ros
@FUZZ
@given(fields=st.tuples(ROS_ENCODINGS, st.integers(0, 40), st.integers(0, 40), st.integers(0, 200),
                        st.binary(max_size=300)))
def test_image_decoder_raises_only_image_conversion_error(fields) -> None:
    from sensor_msgs.msg import Image

    from pai_ros.ros.messages import ImageDecoder

    encoding, h, w, step, data = fields
    try:
        rgb = ImageDecoder().to_rgb(Image(height=h, width=w, encoding=encoding, step=step, data=data))
    except ImageConversionError as exc:
        assert str(exc)
        return
    assert rgb.shape == (h, w, 3)


# Joint names as a peer can send them: UTF-8 without NUL. A lone surrogate ('\ud800') is not
# encodable and was once drawn here (rclpy.serialize_message raised UnicodeEncodeError).
NAMES = st.lists(ros_text(10), max_size=8)


def test_make_test_runs_hypothesis_reproducibly() -> None:
    """make test / CI: fixed examples and no database (a green run stays green); make fuzz explores."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    ci = settings.get_profile("ci")
    assert ci.derandomize and ci.database is None
    fuzz = settings.get_profile("fuzz")
    assert not fuzz.derandomize and fuzz.max_examples >= 10 * ci.max_examples
    assert not Path(fuzz.database.path).resolve().is_relative_to(repo)  # findings outlive the clone
    assert "--hypothesis-profile=ci" in (repo / "scripts" / "run_tests.sh").read_text()
    assert "--hypothesis-profile=fuzz" in (repo / "Makefile").read_text()


def test_ros_text_draws_only_what_a_ros_string_can_hold() -> None:
    """No surrogate and no NUL: hypothesis searches the strategy for one and must not find it."""
    import unicodedata

    from hypothesis import find
    from hypothesis.errors import NoSuchExample

    surrogate = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
    assert unicodedata.category(find(surrogate, lambda c: True)) == "Cs"  # such characters exist ...
    with pytest.raises(UnicodeEncodeError):
        "\ud800".encode("utf-8")                                         # ... and no message can carry one
    for bad in (lambda s: any(unicodedata.category(c) == "Cs" for c in s), lambda s: "\x00" in s):
        with pytest.raises(NoSuchExample):
            find(ros_text(10), bad, settings=settings(max_examples=500, database=None))


@pytest.mark.ros
@FUZZ
@given(data=st.data(), names=NAMES, sec=st.integers(0, 2 ** 31 - 1), nanosec=st.integers(0, 999_999_999))
def test_joint_state_round_trips_bit_for_bit(data: st.DataObject, names: list[str], sec: int, nanosec: int) -> None:
    from builtin_interfaces.msg import Time

    from pai_ros.ros.messages import joint_state, to_stamp
    from pai_ros.timestamps import stamp_to_ns

    values = data.draw(hnp.arrays(st.sampled_from([np.float64, np.float32]), len(names)))  # NaN, inf, -0.0 too
    stamp = Time(sec=sec, nanosec=nanosec)
    assert to_stamp(stamp_to_ns(stamp)) == stamp
    msg = joint_state(names, values, stamp, "base")
    expected = values.astype(np.float64)
    for got in (msg, _cdr_round_trip(msg, "sensor_msgs/msg/JointState")):
        assert list(got.name) == names and got.header.frame_id == "base"
        assert (got.header.stamp.sec, got.header.stamp.nanosec) == (sec, nanosec)
        # Bitwise: NaN payloads and the sign of zero survive too.
        assert np.asarray(got.position, np.float64).tobytes() == expected.tobytes()
        assert len(got.velocity) == 0 and len(got.effort) == 0


@st.composite
def frame_features(draw: st.DrawFn) -> tuple[SimpleNamespace, int]:
    num_features = draw(st.integers(1, 2 ** 32 - 1))
    n = draw(st.integers(0, min(num_features, 40)))
    indices = draw(hnp.arrays(np.uint32, n, elements=st.integers(0, num_features - 1), unique=True))
    features = SimpleNamespace(
        feature_indices=indices,
        activations=draw(hnp.arrays(np.float32, n, elements=st.floats(width=32, allow_nan=False))),
        token_counts=draw(hnp.arrays(np.uint32, n)),
        num_tokens=draw(st.integers(0, 2 ** 32 - 1)),
        mean_l0=draw(st.floats(0, 1e6, width=32)),
        reconstruction_error=draw(st.floats(width=32, allow_nan=False)))
    return features, num_features


@pytest.mark.ros
@FUZZ
@given(case=frame_features(), threshold=st.one_of(st.none(), st.floats(0, 1e3, width=32)),
       sae_id=st.text(alphabet="0123456789abcdef", max_size=16))
def test_feature_activations_round_trip_through_the_message_and_cdr(case, threshold, sae_id: str) -> None:
    from builtin_interfaces.msg import Time

    from pai_ros.bags.typestore import FEATURE_ACTIVATIONS_TYPE
    from pai_ros.ros.messages import feature_activations

    features, num_features = case
    msg = feature_activations(features, sae_id, num_features, Time(sec=5, nanosec=7), threshold)
    for got in (msg, _cdr_round_trip(msg, FEATURE_ACTIVATIONS_TYPE)):
        assert got.sae_id == sae_id and got.num_features == num_features and got.num_tokens == features.num_tokens
        np.testing.assert_array_equal(np.asarray(got.feature_indices, np.uint32), features.feature_indices)
        np.testing.assert_array_equal(np.asarray(got.activations, np.float32), features.activations)
        np.testing.assert_array_equal(np.asarray(got.token_counts, np.uint32), features.token_counts)
        assert np.float32(got.mean_l0) == np.float32(features.mean_l0)
        assert np.float32(got.reconstruction_error) == np.float32(features.reconstruction_error)
        if threshold is None:
            assert np.isnan(got.ood_threshold) and not got.is_ood
        else:
            assert np.float32(got.ood_threshold) == np.float32(threshold)
            assert bool(got.is_ood) == (features.reconstruction_error > threshold)


@pytest.mark.ros
@pytest.mark.parametrize("change, needle", [
    ({"activations": np.zeros(1, np.float32)}, "of one length"),
    ({"token_counts": np.zeros((2, 1), np.uint32)}, "of one length"),
    ({"feature_indices": np.array([3, 8], np.int64)}, r"lie in \[0, 8\)"),
    ({"feature_indices": np.array([-1, 2], np.int64)}, r"lie in \[0, 8\)"),
])
def test_feature_activations_refuses_a_broken_frame(change: dict, needle: str) -> None:
    from builtin_interfaces.msg import Time

    from pai_ros.ros.messages import feature_activations

    features = SimpleNamespace(feature_indices=np.array([3, 1], np.uint32), activations=np.ones(2, np.float32),
                               token_counts=np.ones(2, np.uint32), num_tokens=4, mean_l0=1.0,
                               reconstruction_error=0.5)
    for key, value in change.items():
        setattr(features, key, value)
    with pytest.raises(ValueError, match=needle):
        feature_activations(features, "id", 8, Time(), None)
