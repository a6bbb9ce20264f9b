"""The latest inputs handed to one live tick, already out of their ROS messages.

Images stay encoded until the tick decides to use them: a camera frame carries a ``decode``
callable (the node wraps its message in one), so a stale or refused tick never pays for
decoding. Stamps are integer nanoseconds of the sender's clock; 0 means the sender left the
header empty, and the tick then judges the input by when it was received.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

# The names of the non-camera inputs (cameras go by their own names), in rejections and diagnostics.
JOINT_STATES, ENVIRONMENT_STATE = "joint_states", "environment_state"


@dataclass(frozen=True)
class Stamped:
    stamp_ns: int  # header stamp (0: unstamped)
    recv_ns: int  # when this node received it, on the node's clock

    @property
    def effective_ns(self) -> int:
        """The stamp, or for unstamped publishers the receive time."""
        return self.stamp_ns if self.stamp_ns != 0 else self.recv_ns


@dataclass(frozen=True)
class CameraFrame(Stamped):
    decode: Callable[[], np.ndarray]  # -> H x W x 3 uint8 RGB; raises ImageConversionError
    frame_id: str = ""
    encoding: str = ""  # the message's encoding (raw) or format (compressed); "" when unknown


@dataclass(frozen=True)
class JointReading(Stamped):
    names: Sequence[str]
    positions: Sequence[float]
    # Merged from several messages (joint_merge): the joints whose message is the oldest.
    oldest_joints: tuple[str, ...] = ()


@dataclass(frozen=True)
class VectorReading(Stamped):
    """An environment state: values in the policy's order, or named values (JointState)."""

    values: Sequence[float]
    names: Sequence[str] = ()


@dataclass
class TickInputs:
    """The newest message of every input, as the node last received them (absent: never received)."""

    cameras: dict[str, CameraFrame] = field(default_factory=dict)
    joint_states: JointReading | None = None
    environment_state: VectorReading | None = None
