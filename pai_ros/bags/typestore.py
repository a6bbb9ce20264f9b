"""The rosbags type store for everything pai_ros records or converts, without rclpy.

Why a type store of our own: rosbags ships the standard ROS 2 message definitions (we use the
Kilted store), but not ``pai_ros/msg/FeatureActivations``. Bags written by the recorder embed
each type's definition, and the converter prefers definitions found in a bag, so this store is
only the fallback for bags without them and the source of definitions when writing.

The message text is found, in order, in the checkout (``<repo>/msg``), in a colcon overlay
(``share/pai_ros/msg`` via ``ament_index_python``) and, for a plain ``pip install`` that ships
no ``msg/`` folder, in the copy embedded below. ``test_bag_writer.py`` checks that the copy
equals the file, so the two cannot drift apart.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

if TYPE_CHECKING:
    from rosbags.typesys.store import Typestore

FEATURE_ACTIVATIONS_TYPE = "pai_ros/msg/FeatureActivations"

# Kept byte-for-byte equal to msg/FeatureActivations.msg (enforced by a test).
EMBEDDED_FEATURE_ACTIVATIONS_MSG = r"""# One policy tick's sparse-autoencoder (SAE) features.
#
# The SAE encodes every encoder token the ACT decoder reads (latent, state and camera-cell
# tokens). This message reduces them to frame level: each feature that fired on at least one
# token appears once, with its strongest activation over tokens. Entries are sorted strongest
# first, and the three per-feature arrays below share that order and length.

# stamp: the observation time the tick was computed from (the same stamp as the `action` it
# explains, so the two can be joined); frame_id: the policy node's frame (usually empty).
std_msgs/Header header

# Identifies the dictionary: a content hash of the SAE's weights and cfg.json. Feature index i
# of one sae_id has nothing to do with feature index i of another.
string sae_id

# Dictionary size F of that SAE; every index in feature_indices is < num_features.
uint32 num_features

# Active features, strongest first (after any top-N cut the node is configured with).
uint32[] feature_indices

# For each feature in feature_indices: its maximum activation over this tick's tokens.
float32[] activations

# For each feature in feature_indices: on how many of this tick's tokens it was active.
uint32[] token_counts

# How many tokens were encoded this tick (the denominator of token_counts).
uint32 num_tokens

# Mean number of active features per token this tick (the SAE's L0 on this frame).
float32 mean_l0

# Fraction of variance unexplained by the SAE's reconstruction of this tick's tokens
# (sum of squared error / sum of squared deviation from the training mean). High values mean
# the activations look unlike what the SAE was trained on.
float32 reconstruction_error

# Out-of-distribution threshold on reconstruction_error, as calibrated by `pai sae calibrate`;
# NaN when the SAE has no calibration.
float32 ood_threshold

# True when reconstruction_error > ood_threshold (always false without a calibration).
bool is_ood

# ---- appended fields (older subscribers ignore what they do not know) ----

# Per-position normalised out-of-distribution score of this tick: each token's reconstruction
# error divided by what the calibration episodes showed at that token position, reduced over
# the frame (see `pai sae calibrate`). NaN when the SAE's calibration has no such statistics.
float32 ood_score

# The threshold ood_score is compared with (from the calibration); NaN without one.
float32 ood_score_threshold

# True when this tick's forward pass ran with features steered through the `~/steer` service
# (the actions published for this tick come from the steered policy).
bool steered

# The steering in force this tick: "clamp", "scale" or "ablate" (empty when not steered).
string steering_mode

# The features changed (empty when not steered).
uint32[] steered_features

# For each steered feature, its value: clamp: the activation it was set to; scale: the factor;
# ablate: 0.
float32[] steering_values

# How many seconds of steering remained when the tick ran (0 when not steered).
float32 steering_remaining_s

# ---- appended later: whether the cameras agree with the joints ----

# How far the robot state the policy's camera tokens imply lies from the state the joints
# report, per state dimension in units of its error on in-distribution episodes, averaged over
# dimensions (`pai sae calibrate` fits the regressions; see pai_ros.sae.camera_state). With one
# regression per camera, the mean of camera_state_camera_scores below. High when a camera is
# blocked, covered or swapped in a way that changes what the policy reads. Reported beside
# is_ood, never folded into it. NaN when the calibration has none, or the policy takes no robot
# state.
float32 camera_state_score

# The threshold camera_state_score is compared with (from the calibration); NaN without one.
float32 camera_state_threshold

# ---- appended later: which camera disagrees ----

# The cameras with a camera-state score of their own (empty when camera_state_score is NaN, and
# for a calibration made before per-camera regressions).
string[] camera_state_cameras

# For each camera in camera_state_cameras, its own camera-state score in units of its own
# threshold: over 1, that camera alone disagrees with the joints more than 1% of
# in-distribution frames did in calibration.
float32[] camera_state_camera_scores
"""

_CHECKOUT_MSG = Path(__file__).resolve().parents[2] / "msg" / "FeatureActivations.msg"


def _share_dir(package: str) -> Path | None:
    """The installed share/<package> directory, if ament_index_python knows the package."""
    try:
        ament_index_python = importlib.import_module("ament_index_python.packages")
        return Path(ament_index_python.get_package_share_directory(package))
    except Exception:  # not importable, package not installed, no AMENT_PREFIX_PATH
        return None


def _find_feature_activations_msg() -> tuple[str, str]:
    """(definition text, where it came from): checkout, then overlay, then the embedded copy."""
    if _CHECKOUT_MSG.is_file():
        return _CHECKOUT_MSG.read_text(encoding="utf-8"), str(_CHECKOUT_MSG)
    share = _share_dir("pai_ros")
    if share is not None and (share / "msg" / "FeatureActivations.msg").is_file():
        path = share / "msg" / "FeatureActivations.msg"
        return path.read_text(encoding="utf-8"), str(path)
    return EMBEDDED_FEATURE_ACTIVATIONS_MSG, "embedded copy in pai_ros.bags.typestore"


FEATURE_ACTIVATIONS_MSG, FEATURE_ACTIVATIONS_MSG_SOURCE = _find_feature_activations_msg()


def typestore() -> Typestore:
    """A fresh Kilted type store with ``pai_ros/msg/FeatureActivations`` registered.

    Fresh on every call because callers register more types into it (installed packages'
    messages) and must not affect each other. Cheap after the first call: rosbags' Kilted
    store is static; only our one message is compiled into a class here.
    """
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(_feature_activations_fielddefs())
    return store


@lru_cache(maxsize=1)
def _feature_activations_fielddefs() -> dict:
    return get_types_from_msg(FEATURE_ACTIVATIONS_MSG, FEATURE_ACTIVATIONS_TYPE)


def deserialize(store: Typestore, rawdata: bytes | memoryview, msgtype: str) -> object:
    """CDR bytes -> message, accepting padding after the message's last field.

    Why not ``store.deserialize_cdr``: it refuses more than 3 bytes after the message, and
    ``rclpy.serialization.serialize_message`` (what rosbag2_py users write into bags) leaves
    buffer slack behind the message in Kilted: 8 to 12 bytes of uninitialised memory after a
    ``sensor_msgs/JointState`` (measured), neither zeros nor of a fixed length, so no bound or
    pattern tells it from other trailing bytes; trailing bytes are therefore accepted. DDS readers
    and ``ros2 bag play`` ignore those bytes, so the converter does too. Malformed data still
    raises (rosbags' SerdeError, struct.error, ValueError, UnicodeDecodeError).
    """
    from rosbags.serde import SerdeError

    if len(rawdata) < 4 or bytes(rawdata[:2]) not in (b"\x00\x00", b"\x00\x01"):
        raise SerdeError("invalid or unsupported CDR encapsulation")
    msgdef = store.get_msgdef(msgtype)
    func = msgdef.deserialize_cdr_le if rawdata[1] else msgdef.deserialize_cdr_be
    # A view, not ``rawdata[4:]``: slicing bytes copies the whole message (a 921 KB image: 33 us
    # against 4 us). Array fields view the raw buffer, read-only, as they viewed the copy before.
    message, _end = func(memoryview(rawdata)[4:], 0, msgdef.cls, store)
    return message


def referenced_types(fielddef: tuple) -> set[str]:
    """Names of the complex types a rosbags field definition refers to (recursively in arrays)."""
    kind, detail = fielddef
    if kind.name == "NAME":
        return {detail}
    if kind.name in ("ARRAY", "SEQUENCE"):
        return referenced_types(detail[0])
    return set()


def ensure_type(store: Typestore, msgtype: str) -> bool:
    """Make ``msgtype`` (and the types it uses) known to ``store``; False when impossible.

    Types outside the Kilted store (a robot's own messages) are loaded from the ``.msg`` files
    that every installed ROS 2 package puts in ``share/<package>/msg/``, so the recorder can
    embed their definitions in the bag without importing rclpy here.
    """
    pending = [msgtype]
    found: dict = {}
    while pending:
        name = pending.pop()
        if name in store.fielddefs or name in found:
            continue
        parts = name.split("/")
        if len(parts) != 3 or parts[1] != "msg":
            return False
        share = _share_dir(parts[0])
        path = share / "msg" / f"{parts[2]}.msg" if share is not None else None
        if path is None or not path.is_file():
            return False
        try:
            types = get_types_from_msg(path.read_text(encoding="utf-8"), name)
        except Exception:  # a definition rosbags cannot parse
            return False
        found.update(types)
        for _consts, fields in types.values():
            for _fname, fielddef in fields:
                pending.extend(referenced_types(fielddef))
    if found:
        try:
            store.register(found)
        except Exception:
            return False
    return msgtype in store.fielddefs
