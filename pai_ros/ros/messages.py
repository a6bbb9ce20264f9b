"""Message <-> core conversions shared by the nodes (the thin part of the ROS adapters)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray, Header, MultiArrayDimension
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from pai_ros.imaging.convert import RAW_ENCODINGS, compressed_to_rgb, raw_to_rgb, rgb_to_raw
from pai_ros.imaging.errors import ImageConversionError
from pai_ros.ros import topics
from pai_ros.timestamps import ns_to_sec_nanosec, stamp_to_ns

if TYPE_CHECKING:
    from pai_ros.live.sae import FeaturesOutput


def to_stamp(ns: int) -> Time:
    sec, nanosec = ns_to_sec_nanosec(ns)
    return Time(sec=sec, nanosec=nanosec)


_BRIDGE_FIRST = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")


class ImageDecoder:
    """Image/CompressedImage -> RGB array: cv_bridge where a ROS 2 install provides a working one.

    The ``cv-bridge`` on the Python package index is the ROS 1 port and breaks on NumPy 2, so the
    bridge is tried once on a tiny image and only used when it round-trips correctly.
    """

    def __init__(self, bridge: Any = "auto") -> None:
        """``bridge``: "auto" finds a working cv_bridge; None never uses one; or a CvBridge-like object."""
        self._bridge = _working_cv_bridge() if bridge == "auto" else bridge

    @property
    def backend(self) -> str:
        return "cv_bridge" if self._bridge is not None else "pai_ros"

    def to_rgb(self, msg: Any) -> np.ndarray:
        """RGB array of ``msg``; a malformed message raises :class:`ImageConversionError` only."""
        if isinstance(msg, CompressedImage):
            return compressed_to_rgb(msg.format, msg.data)
        # A working cv_bridge (a ROS 2 install) converts what it knows, including encodings pai_ros
        # does not (16-bit colour, more Bayer layouts); pai_ros's own conversion is the fallback.
        if self._bridge is not None and (msg.encoding.lower() in _BRIDGE_FIRST or msg.encoding.lower() not in RAW_ENCODINGS):
            try:
                rgb = self._bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")
            except Exception as exc:  # noqa: BLE001 - CvBridgeError, TypeError, ...: whatever the bridge raises
                raise ImageConversionError(f"cv_bridge cannot convert the {msg.encoding} image "
                                           f"({msg.height}x{msg.width}, step {msg.step}): {exc}") from None
            return np.ascontiguousarray(rgb)
        return raw_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data)


def _working_cv_bridge() -> Any | None:
    try:
        from cv_bridge import CvBridge  # type: ignore[import-not-found]

        bridge = CvBridge()
        probe = Image(height=1, width=2, encoding="bgr8", step=6, data=bytes([0, 0, 255, 255, 0, 0]))
        out = bridge.imgmsg_to_cv2(probe, desired_encoding="rgb8")
        if out.shape == (1, 2, 3) and tuple(out[0, 0]) == (255, 0, 0):
            return bridge
    except Exception:  # missing, ROS 1 port, broken against NumPy 2: use our own conversion
        return None
    return None


def rgb_image(rgb: np.ndarray, header: Header | None) -> Image:
    enc, h, w, step, data = rgb_to_raw(rgb)
    return Image(header=header if header is not None else Header(), height=h, width=w, encoding=enc,
                 is_bigendian=0, step=step, data=data)


def joint_state(names: list[str], values: np.ndarray, stamp: Time, frame_id: str = "") -> JointState:
    msg = JointState()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.name = list(names)
    msg.position = [float(v) for v in values]
    return msg


def feature_activations(features: Any, sae_id: str, num_features: int, stamp: Time, threshold: float | None,
                        frame_id: str = "", *, ood_score: float | None = None,
                        ood_score_threshold: float | None = None, is_ood: bool | None = None,
                        camera_state_score: float | None = None, camera_state_threshold: float | None = None,
                        camera_state_by_camera: dict[str, float] | None = None) -> Any:
    """``pai_ros/msg/FeatureActivations`` from a :class:`pai_ros.sae.frame.FrameFeatures`.

    ``is_ood`` is the caller's verdict (the live SAE judges by the per-position score when it
    has one); without it, the reconstruction error against ``threshold`` decides, as before.
    """
    from pai_ros.msg import FeatureActivations

    indices = np.asarray(features.feature_indices)
    n = indices.shape[0] if indices.ndim == 1 else -1
    # The message promises three arrays of one length and indices < num_features; a subscriber
    # indexes its dictionary with them, so a broken frame must not leave this node.
    if n < 0 or np.shape(features.activations) != (n,) or np.shape(features.token_counts) != (n,):
        raise ValueError(f"feature arrays must be 1-D and of one length, got {indices.shape}, "
                         f"{np.shape(features.activations)}, {np.shape(features.token_counts)}")
    if n and (int(indices.min()) < 0 or int(indices.max()) >= num_features):
        raise ValueError(f"feature indices must lie in [0, {num_features}), got {int(indices.min())}..{int(indices.max())}")
    msg = FeatureActivations()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.sae_id = sae_id
    msg.num_features = int(num_features)
    msg.feature_indices = features.feature_indices.astype(np.uint32)
    msg.activations = features.activations.astype(np.float32)
    msg.token_counts = features.token_counts.astype(np.uint32)
    msg.num_tokens = int(features.num_tokens)
    msg.mean_l0 = float(features.mean_l0)
    msg.reconstruction_error = float(features.reconstruction_error)
    msg.ood_threshold = float("nan") if threshold is None else float(threshold)
    if is_ood is None:
        is_ood = threshold is not None and features.reconstruction_error > threshold
    msg.is_ood = bool(is_ood)
    # Appended fields: NaN says "not computed" (0.0 would read as a perfectly in-distribution score).
    msg.ood_score = float("nan") if ood_score is None else float(ood_score)
    msg.ood_score_threshold = float("nan") if ood_score_threshold is None else float(ood_score_threshold)
    msg.camera_state_score = float("nan") if camera_state_score is None else float(camera_state_score)
    msg.camera_state_threshold = float("nan") if camera_state_threshold is None else float(camera_state_threshold)
    by_camera = camera_state_by_camera or {}
    msg.camera_state_cameras = list(by_camera)
    msg.camera_state_camera_scores = np.asarray(list(by_camera.values()), dtype=np.float32)
    return msg


def live_feature_activations(f: FeaturesOutput, stamp: Time) -> Any:
    """``FeatureActivations`` for one live tick's :class:`pai_ros.live.sae.FeaturesOutput`."""
    return feature_activations(f.frame, f.sae_id, f.num_features, stamp, f.threshold, ood_score=f.ood_score,
                               ood_score_threshold=f.ood_score_threshold, is_ood=f.is_ood,
                               camera_state_score=f.camera_state_score, camera_state_threshold=f.camera_state_threshold,
                               camera_state_by_camera=f.camera_state_by_camera)


# ------------------------------------------------------------------ live tick inputs and outputs


def camera_frame(msg: Any, recv_ns: int, decoder: ImageDecoder) -> Any:
    """A camera message as the live tick's input; decoded only if the tick uses it."""
    from pai_ros.live.inputs import CameraFrame

    encoding = getattr(msg, "encoding", None) or getattr(msg, "format", "")  # Image / CompressedImage
    return CameraFrame(stamp_to_ns(msg.header.stamp), recv_ns, lambda: decoder.to_rgb(msg), msg.header.frame_id,
                       encoding)


def joint_reading(msg: JointState, recv_ns: int) -> Any:
    from pai_ros.live.inputs import JointReading

    return JointReading(stamp_to_ns(msg.header.stamp), recv_ns, list(msg.name), msg.position)


def vector_reading(msg: Any, recv_ns: int) -> Any:
    """An environment state from a JointState (named, stamped) or a Float32MultiArray (no header)."""
    from pai_ros.live.inputs import VectorReading

    if isinstance(msg, JointState):
        return VectorReading(stamp_to_ns(msg.header.stamp), recv_ns, msg.position, list(msg.name))
    return VectorReading(0, recv_ns, msg.data)


def header(stamp_ns: int, frame_id: str = "") -> Header:
    return Header(stamp=to_stamp(stamp_ns), frame_id=frame_id)


def camera_header(stamp: Time, camera: str) -> Header:
    """The header of a camera image the replay and sim nodes publish: ``stamp``, frame ``<camera>_camera``."""
    return Header(stamp=stamp, frame_id=topics.CAMERA_FRAME.format(camera=camera))


def duration(seconds: float) -> Duration:
    sec, nanosec = ns_to_sec_nanosec(round(seconds * 1e9))
    return Duration(sec=sec, nanosec=nanosec)


def joint_trajectory(names: list[str], plan: np.ndarray, stamp: Time, period_s: float,
                     sent_after_s: float = 0.0) -> JointTrajectory:
    """``plan`` rows as points one control period apart, the first one period after sending.

    ``header.stamp`` is the observation time, as for every other output of the tick, so each
    point's ``time_from_start`` also counts the ``sent_after_s`` between the observation and
    sending. joint_trajectory_controller starts a trajectory at its stamp and drops one whose last
    point is already past by its own clock ("non-zero start time that ends in the past"), which
    the observation time plus one period is after any tick slower than a period (measured: every
    trajectory of a 15 Hz node on a CPU); from a past start it moves from where the arm is to
    the first point, due one period after sending.
    """
    msg = JointTrajectory()
    msg.header.stamp = stamp
    msg.joint_names = list(names)
    lead = max(0.0, sent_after_s)
    msg.points = [JointTrajectoryPoint(positions=[float(v) for v in row],
                                       time_from_start=duration(lead + (i + 1) * period_s))
                  for i, row in enumerate(np.atleast_2d(plan))]
    return msg


def float64_multi_array(values: np.ndarray, label: str = "joints") -> Float64MultiArray:
    """The action as ``forward_position_controller`` expects it: one flat array in its joint order."""
    msg = Float64MultiArray()
    msg.layout.dim = [MultiArrayDimension(label=label, size=len(values), stride=len(values))]
    msg.data = [float(v) for v in values]
    return msg


def status_name(node: Any, task: str) -> str:
    """A /diagnostics status name, ``robot1/policy_node: policy``: the namespace keeps two robots' apart."""
    return f"{node.get_fully_qualified_name().lstrip('/')}: {task}"


def diagnostic_array(name: str, level: int, message: str, values: dict[str, str], hardware_id: str,
                     stamp: Time, more: Sequence[tuple[str, int, str]] = ()) -> DiagnosticArray:
    """One status (``more``: further ``(name, level, message)`` statuses of the same hardware, after it)."""
    # DiagnosticStatus.level is a ROS byte: rclpy wants a one-byte bytes value (as its OK/WARN/ERROR constants).
    status = DiagnosticStatus(level=bytes([int(level)]), name=name, message=message, hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=v) for k, v in values.items()])
    arr = DiagnosticArray()
    arr.header.stamp = stamp
    arr.status = [status, *(DiagnosticStatus(level=bytes([int(lv)]), name=n, message=m, hardware_id=hardware_id)
                            for n, lv, m in more)]
    return arr


def mark_steering(msg: Any, steering: Any) -> Any:
    """Fill a FeatureActivations' steering fields from the tick's :class:`~pai_ros.live.steering.ActiveSteering`."""
    msg.steered = steering is not None
    if steering is not None:
        msg.steering_mode = steering.steering.mode
        msg.steered_features = [int(f) for f in steering.steering.features]
        msg.steering_values = [float(v) for v in steering.steering.values]
        msg.steering_remaining_s = float(steering.remaining_s)
    return msg
