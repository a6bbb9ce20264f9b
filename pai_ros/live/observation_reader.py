"""The robot's latest messages as the policy's observation, or the reason they cannot be one.

Cameras are decoded and checked against the size the policy was trained on (resized only when
the user allowed it); the joint state is picked out by joint name and converted to the policy's
units; the environment state by value name. Anything missing, repeated, of the wrong size or not
finite is a :class:`Rejection`: the tick then sends no action (:mod:`pai_ros.live.tick`).
Configuration errors (names that cannot match the policy) are refused at start instead.

Things worth saying once but not worth refusing (a camera resized, grey images) are appended to
the ``warnings`` list the tick hands the node's log.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from pai_ros.errors import UserError
from pai_ros.imaging.convert import GREY_ENCODINGS, resize_rgb
from pai_ros.imaging.errors import ImageConversionError
from pai_ros.live.config import LiveConfig
from pai_ros.live.inputs import JointReading, TickInputs, VectorReading
from pai_ros.live.received_text import undecodable_reason
from pai_ros.live.rejection import Rejection
from pai_ros.live.unit_conversion import unit_conversion
from pai_ros.policy.observation import ObservationSpec


def check_input_names(parameter: str, names: Sequence[str], size: int, what: str) -> None:
    """Names that pick the policy's inputs out of a message: one per dimension, each once."""
    if not names or not size:
        return  # positions taken in message order, or an input this policy does not read
    if len(names) != size:
        raise UserError(f"{parameter} has {len(names)} name(s), the policy's {what} has {size} dimension(s)")
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise UserError(f"{parameter} names {', '.join(repeated)} more than once")


class ObservationReader:
    """Reads one tick's inputs for one policy (checked against it at construction)."""

    def __init__(self, config: LiveConfig, spec: ObservationSpec, warnings: list[str]) -> None:
        self.config = config
        self.spec = spec
        self.warnings = warnings
        check_input_names("state_joint_names", config.state_joint_names, spec.state_dim or 0, "state")
        check_input_names("environment_state_names", config.environment_state_names, spec.env_state_dim or 0,
                          "environment state")
        # Unit conversion from the robot's ROS values to the policy's (e.g. radians to degrees).
        self.state_units = unit_conversion("state", config.state_scale, config.state_offset, spec.state_dim or 0)
        self._resize_warned: set[str] = set()
        self._grey_warned: set[str] = set()

    def images(self, inputs: TickInputs, cameras: Iterable[str]
               ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | Rejection:
        """Each camera's decoded RGB frame (for overlays) and the image the policy gets (its size)."""
        camera_rgb: dict[str, np.ndarray] = {}
        images: dict[str, np.ndarray] = {}
        for name in cameras:
            frame = inputs.cameras[name]
            try:
                rgb = frame.decode()
            except ImageConversionError as exc:
                return Rejection(f"camera {name}: {exc}")
            _, h, w = self.spec.cameras[name]
            if rgb.shape[:2] != (h, w):
                # A size the policy never saw usually means a misconfigured or swapped camera:
                # refuse it unless the user chose to resize.
                if not self.config.resize_images:
                    return Rejection(f"camera {name} sends {rgb.shape[1]}x{rgb.shape[0]} images, the policy "
                                     f"expects {w}x{h} (configure the camera, or set resize_images:=true)")
                if name not in self._resize_warned:
                    self._resize_warned.add(name)
                    self.warnings.append(f"camera {name} sends {rgb.shape[1]}x{rgb.shape[0]} images, the policy "
                                         f"was trained on {w}x{h}: resizing (warned once)")
            if frame.encoding in GREY_ENCODINGS and name not in self._grey_warned:
                self._grey_warned.add(name)
                self.warnings.append(f"camera {name} sends {frame.encoding} (grey) images: the policy "
                                     "gets them as grey RGB, which a policy trained on colour has never seen (warned "
                                     "once; point the camera entry at the colour topic unless it was trained so)")
            camera_rgb[name] = rgb
            images[name] = resize_rgb(rgb, h, w)
        return camera_rgb, images

    def lacking_joints(self, reading: JointReading) -> Rejection | None:
        """Why ``reading`` cannot give the state by name: undecodable names or joints it lacks."""
        names = self.config.state_joint_names
        if not names:
            return None
        broken = undecodable_reason("joint_states name", reading.names)
        if broken:  # else it would read as "lacks joint(s) ...", hiding the publisher's encoding bug
            return Rejection(broken)
        have = set(reading.names)
        missing = [n for n in names if n not in have]
        if missing:
            return Rejection(f"joint_states lacks joint(s) {', '.join(missing)} (has: {', '.join(reading.names)})")
        return None

    def state(self, reading: JointReading | None) -> np.ndarray | Rejection:
        """The policy's state vector in its units; :meth:`lacking_joints` was asked first."""
        assert reading is not None  # checked with the other inputs
        names = self.config.state_joint_names
        if names:  # every name is there and decodes: the tick refused otherwise (lacking_joints)
            index = {n: i for i, n in enumerate(reading.names)}
            repeated = _repeated(names, reading.names) if len(index) < len(reading.names) else []
            if repeated:
                return Rejection(f"joint_states names joint(s) {', '.join(repeated)} more than once: which position "
                                 "is meant is ambiguous")
            if len(reading.positions) < len(reading.names):
                return Rejection(f"joint_states has {len(reading.names)} names but {len(reading.positions)} positions")
            state = np.array([reading.positions[index[n]] for n in names], dtype=np.float64)
        else:
            state = np.asarray(reading.positions, dtype=np.float64)
        if state.shape != (self.spec.state_dim,):
            return Rejection(f"joint_states gives {state.size} positions, the policy needs {self.spec.state_dim} "
                             "(set state_joint_names)")
        if not np.all(np.isfinite(state)):
            return Rejection(f"joint_states contains NaN or inf: {state.tolist()}")
        if self.state_units is not None:
            state = state * self.state_units[0] + self.state_units[1]  # in float64: checked before the cast
        return _as_float32(state, "joint_states" + (" (after state_scale/state_offset)" if self.state_units else ""))

    def environment_state(self, reading: VectorReading | None) -> np.ndarray | Rejection:
        assert reading is not None
        names = self.config.environment_state_names
        if names:
            broken = undecodable_reason("environment_state name", reading.names)
            if broken:
                return Rejection(broken)
            index = {n: i for i, n in enumerate(reading.names)}
            missing = [n for n in names if n not in index]
            if missing or len(reading.values) < len(reading.names):
                return Rejection(f"environment_state lacks value(s) {', '.join(missing) or '(positions)'} "
                                 f"(has: {', '.join(reading.names)})")
            repeated = _repeated(names, reading.names) if len(index) < len(reading.names) else []
            if repeated:
                return Rejection(f"environment_state names {', '.join(repeated)} more than once: which value is "
                                 "meant is ambiguous")
            env = np.array([reading.values[index[n]] for n in names], dtype=np.float64)
        else:
            env = np.asarray(reading.values, dtype=np.float64)
        if env.shape != (self.spec.env_state_dim,):
            return Rejection(f"environment_state gives {env.size} values, the policy needs {self.spec.env_state_dim}")
        if not np.all(np.isfinite(env)):
            return Rejection(f"environment_state contains NaN or inf: {env.tolist()}")
        return _as_float32(env, "environment_state")


def _as_float32(values: np.ndarray, what: str) -> np.ndarray | Rejection:
    """``values`` (float64, finite) in float32, the policy's precision, or why they do not fit it.

    A JointState holds float64: 1e308 is finite there and would become inf in the policy.
    """
    if np.any(np.abs(values) > np.finfo(np.float32).max):
        return Rejection(f"{what} holds values beyond float32's range, the policy's precision: {values.tolist()}")
    return values.astype(np.float32)


def _repeated(wanted: Sequence[str], names: Sequence[str]) -> list[str]:
    """The names in ``wanted`` that a message lists more than once."""
    seen = list(names)
    return sorted({n for n in wanted if seen.count(n) > 1})
