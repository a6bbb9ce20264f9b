"""Fuzzing bag2parquet at the message level: bad CDR payloads inside an otherwise valid MCAP bag.

test_bag_to_parquet.py fuzzes the container (random bytes, damaged MCAP files); here every bag
is well-formed and only the payload of one message is malformed. The oracle is the bag reader's
own deserialiser: a payload it cannot decode must make the conversion fail with one
:class:`UserError` line and leave no output; a payload it decodes (however odd its fields) must
convert, with the valid messages around it in the tables and any undecodable image counted as
a skipped frame, never a crash. No ROS process is needed (bags are written with BagWriter).
"""

from __future__ import annotations

import math
import tempfile
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import run_pai
from helpers.feature_fields import appended_fields
from helpers.fuzzing import examples, ros_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pai_ros.bags.to_parquet import bag_to_parquet
from pai_ros.bags.typestore import FEATURE_ACTIVATIONS_TYPE, deserialize, typestore
from pai_ros.bags.writer import BagWriter
from pai_ros.errors import UserError

STORE = typestore()
T = STORE.types
IMAGE, COMPRESSED, JOINT_STATE = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/JointState"
DIAGNOSTICS = "diagnostic_msgs/msg/DiagnosticArray"
TOPICS = {IMAGE: "/cam/image_raw", COMPRESSED: "/cam/image_raw/compressed", JOINT_STATE: "/joint_states",
          FEATURE_ACTIVATIONS_TYPE: "/features", DIAGNOSTICS: "/diagnostics"}
TABLE = {JOINT_STATE: "joint_states", FEATURE_ACTIVATIONS_TYPE: "features", DIAGNOSTICS: "diagnostics",
         IMAGE: "frames", COMPRESSED: "frames"}
T0 = 1_700_000_000_000_000_000

FUZZ = settings(max_examples=examples(60), deadline=timedelta(seconds=20),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def header(i: int):
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=100 + i, nanosec=i), frame_id="f")


def ser(msg, msgtype: str) -> bytes:
    return bytes(STORE.serialize_cdr(msg, msgtype))


def valid_message(msgtype: str, i: int = 0):
    """One well-formed message of each converted type."""
    if msgtype == IMAGE:
        return T[IMAGE](header=header(i), height=2, width=4, encoding="rgb8", is_bigendian=0, step=12,
                        data=np.full(24, 40 + i, np.uint8))
    if msgtype == COMPRESSED:
        ok, png = cv2.imencode(".png", np.full((2, 4, 3), 40 + i, np.uint8))
        assert ok
        return T[COMPRESSED](header=header(i), format="png", data=png.ravel())
    if msgtype == JOINT_STATE:
        return T[JOINT_STATE](header=header(i), name=["x", "y"], position=np.array([i, -1.5]),
                              velocity=np.array([0.5, 0.25]), effort=np.array([], float))
    if msgtype == FEATURE_ACTIVATIONS_TYPE:
        return T[msgtype](header=header(i), sae_id="sae", num_features=64, feature_indices=np.array([3, 9], np.uint32),
                          activations=np.array([2.0, 1.0], np.float32), token_counts=np.array([4, 1], np.uint32),
                          num_tokens=12, mean_l0=2.5, reconstruction_error=0.1, ood_threshold=math.nan, is_ood=False,
                          **appended_fields())
    KV, DS = T["diagnostic_msgs/msg/KeyValue"], T["diagnostic_msgs/msg/DiagnosticStatus"]
    return T[DIAGNOSTICS](header=header(i), status=[DS(level=1, name="pai/x", message="m", hardware_id="h",
                                                       values=[KV(key="k", value="v")])])


def convert_with(tmp: Path, msgtype: str, payload: bytes, videos: bool) -> tuple[Path, object] | UserError:
    """A bag with two valid messages of ``msgtype`` around ``payload``, converted; the result or the error."""
    topic = TOPICS[msgtype]
    with BagWriter(tmp / "bag") as w:
        w.write(topic, msgtype, ser(valid_message(msgtype, 0), msgtype), T0)
        w.write(topic, msgtype, payload, T0 + 1_000_000)
        w.write(topic, msgtype, ser(valid_message(msgtype, 2), msgtype), T0 + 2_000_000)
    out = tmp / "out"
    try:
        return out, bag_to_parquet(tmp / "bag", out, progress=False, videos=videos)
    except UserError as exc:
        assert "\n" not in str(exc)
        assert not out.exists(), "a failed conversion left an output directory"
        assert not list(tmp.glob("out.partial-*")), "a failed conversion left its partial directory"
        return exc


def check_outcome(msgtype: str, payload: bytes, videos: bool) -> list[dict] | None:
    """Convert and check the outcome against the deserialiser; the table rows when it converted."""
    with tempfile.TemporaryDirectory(prefix="fuzzbag-") as tmp:
        return _check_outcome(Path(tmp), msgtype, payload, videos)


def _check_outcome(tmp: Path, msgtype: str, payload: bytes, videos: bool) -> list[dict] | None:
    try:
        decoded = deserialize(STORE, payload, msgtype)
    except Exception:  # noqa: BLE001 - the reader cannot decode it: the bag is corrupt
        decoded = None
    result = convert_with(tmp, msgtype, payload, videos)
    if decoded is None:
        assert isinstance(result, UserError), "an undecodable payload was converted"
        assert "truncated or corrupt" in str(result)
        return None
    assert not isinstance(result, UserError), f"a decodable payload was refused: {result}"
    out, summary = result
    rows = pq.read_table(out / f"{TABLE[msgtype]}.parquet").to_pylist()
    assert summary.messages == 3
    if msgtype == DIAGNOSTICS:  # one row per status: the valid messages have one each
        assert len(rows) == 2 + len(decoded.status)
    elif msgtype in (IMAGE, COMPRESSED):
        skipped = sum(summary.skipped_frames.get(TOPICS[msgtype], {}).values())
        assert len(rows) == 3 - skipped and skipped in (0, 1)
        if videos:
            assert summary.videos[TOPICS[msgtype]].frames == 3 - skipped
    else:
        assert len(rows) == 3
    stamps = [r["stamp_ns"] for r in rows]
    assert stamps[0] == 100 * 10**9 and stamps[-1] == 102 * 10**9 + 2  # the valid neighbours survive
    assert not list(out.parent.glob("out.partial-*"))
    return rows


@st.composite
def corrupted_payloads(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid payload of a converted type, damaged the way storage and transport damage bytes."""
    msgtype = draw(st.sampled_from(sorted(TOPICS)))
    data = bytearray(ser(valid_message(msgtype, 1), msgtype))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["flip", "word", "cut", "append"]))
        if kind == "flip" and data:
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
        elif kind == "word" and len(data) >= 8:  # a length or size field replaced: 4-byte aligned after the header
            at = 4 + 4 * draw(st.integers(0, (len(data) - 8) // 4))
            data[at:at + 4] = draw(st.sampled_from([0, 1, 7, 255, 2**16, 2**31 - 1, 2**32 - 1])).to_bytes(4, "little")
        elif kind == "cut":
            del data[draw(st.integers(0, len(data))):]
        elif kind == "append":
            data += draw(st.binary(min_size=1, max_size=16))
    return msgtype, bytes(data)


@FUZZ
@given(case=corrupted_payloads())
def test_corrupted_payload_is_a_user_error_or_converts(case) -> None:
    check_outcome(*case, videos=False)


@FUZZ
@given(msgtype=st.sampled_from(sorted(TOPICS)), body=st.binary(max_size=200),
       encapsulation=st.sampled_from([b"", b"\x00\x01\x00\x00", b"\x00\x00\x00\x00", b"\x00\x02\x00\x00"]))
def test_random_payload_is_a_user_error_or_converts(msgtype: str, body: bytes, encapsulation: bytes) -> None:
    check_outcome(msgtype, encapsulation + body, videos=False)


IMAGE_ENCODINGS = st.sampled_from(["rgb8", "bgr8", "mono8", "rgba8", "bgra8", "16UC1", "32FC1", "yuv422", ""])


@st.composite
def odd_images(draw: st.DrawFn) -> tuple[str, bytes]:
    """Images that decode as CDR but whose fields lie: sizes, steps, encodings, compressed bytes."""
    if draw(st.booleans()):
        h, w = draw(st.integers(0, 12)), draw(st.integers(0, 12))
        msg = T[IMAGE](header=header(1), height=draw(st.one_of(st.just(h), st.integers(0, 2**32 - 1))),
                       width=draw(st.one_of(st.just(w), st.integers(0, 2**32 - 1))), encoding=draw(IMAGE_ENCODINGS),
                       is_bigendian=draw(st.integers(0, 1)), step=draw(st.integers(0, 2**32 - 1) | st.integers(0, 40)),
                       data=np.frombuffer(draw(st.binary(max_size=500)), np.uint8))
        return IMAGE, ser(msg, IMAGE)
    ok, good = cv2.imencode(draw(st.sampled_from([".png", ".jpg"])), np.full((6, 8, 3), 90, np.uint8))
    assert ok
    data = bytearray(good.tobytes())
    for _ in range(draw(st.integers(0, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    data = data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data
    msg = T[COMPRESSED](header=header(1), format=draw(st.sampled_from(["png", "jpeg", "rgb8; jpeg compressed bgr8",
                                                                      "tiff", ""])),
                        data=np.frombuffer(bytes(data), np.uint8))
    return COMPRESSED, ser(msg, COMPRESSED)


@settings(FUZZ, max_examples=examples(40))
@given(case=odd_images())
def test_images_with_lying_fields_are_skipped_frames_not_crashes(case) -> None:
    check_outcome(*case, videos=True)


@FUZZ
@given(data=st.data(), msgtype=st.sampled_from([JOINT_STATE, FEATURE_ACTIVATIONS_TYPE]))
def test_arrays_of_mismatched_lengths_and_non_finite_values_are_kept_as_recorded(data: st.DataObject,
                                                                                 msgtype: str) -> None:
    """bag2parquet saves raw numbers: odd but decodable arrays are written as they are."""
    floats = hnp.arrays(np.float64, st.integers(0, 5))
    if msgtype == JOINT_STATE:
        msg = T[JOINT_STATE](header=header(1), name=data.draw(st.lists(ros_text(4), max_size=4)),
                             position=data.draw(floats), velocity=data.draw(floats), effort=data.draw(floats))
    else:
        idx = hnp.arrays(np.uint32, st.integers(0, 5))
        msg = T[msgtype](header=header(1), sae_id=data.draw(ros_text(8)),
                         num_features=data.draw(st.integers(0, 2**32 - 1)), feature_indices=data.draw(idx),
                         activations=data.draw(hnp.arrays(np.float32, st.integers(0, 5))),
                         token_counts=data.draw(idx), num_tokens=data.draw(st.integers(0, 2**32 - 1)),
                         mean_l0=data.draw(st.floats(width=32)), reconstruction_error=data.draw(st.floats(width=32)),
                         ood_threshold=data.draw(st.floats(width=32)), is_ood=data.draw(st.booleans()),
                         **{**appended_fields(), "ood_score": data.draw(st.floats(width=32)),
                            "steered_features": data.draw(idx)})
    rows = check_outcome(msgtype, ser(msg, msgtype), videos=False)
    assert rows is not None
    row = rows[1]
    fields = (("position", "velocity", "effort") if msgtype == JOINT_STATE
              else ("feature_indices", "activations", "steered_features"))
    for name in fields:  # bit for bit, NaN included
        dtype = np.float64 if name != "activations" else np.float32
        dtype = np.uint32 if name in ("feature_indices", "steered_features") else dtype
        assert np.asarray(row[name], dtype).tobytes() == np.asarray(getattr(msg, name), dtype).tobytes()


def test_rclpy_style_padding_after_the_message_is_accepted() -> None:
    """rclpy's serialize_message leaves up to 8 bytes after a JointState; ros2 bag play ignores them."""
    payload = ser(valid_message(JOINT_STATE, 1), JOINT_STATE) + bytes(8)
    with pytest.raises(Exception, match="size mismatch"):
        STORE.deserialize_cdr(payload, JOINT_STATE)  # rosbags alone refuses it ...
    assert check_outcome(JOINT_STATE, payload, videos=False) is not None  # ... the converter does not


def test_cli_corrupt_message_is_one_line_and_exit_1(tmp_path: Path) -> None:
    payload = ser(valid_message(JOINT_STATE, 1), JOINT_STATE)
    payload = payload[:20] + (2**31 - 1).to_bytes(4, "little") + payload[24:]  # the name count
    with BagWriter(tmp_path / "bag") as w:
        w.write("/joint_states", JOINT_STATE, ser(valid_message(JOINT_STATE, 0), JOINT_STATE), T0)
        w.write("/joint_states", JOINT_STATE, payload, T0 + 1)
    res = run_pai("bag2parquet", str(tmp_path / "bag"), str(tmp_path / "out"), "--quiet", timeout=120)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pai bag2parquet: error: cannot read bag"), res.stderr
    assert "truncated or corrupt" in lines[0] and "Traceback" not in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]
