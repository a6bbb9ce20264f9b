"""The live tick's configuration: typed, validated once, built from the node's declared parameters.

What can be checked without the policy is checked here (names from fixed sets, camera entries,
clamp bounds, query selections); what needs the policy (its cameras, action size) is checked
when :class:`pai_ros.live.tick.LiveTick` is created. Every problem is one
:class:`~pai_ros.errors.UserError` line, so a misconfigured node exits with a reason instead of
running on defaults.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from pai_ros.attention.attribution import LIVE_METHODS, QuerySelection
from pai_ros.attention.relevance import RelevanceTarget
from pai_ros.attention.render import COLORMAPS, Normalization
from pai_ros.errors import UserError
from pai_ros.live.parameters import (
    ACTION_OUTPUTS,
    ENVIRONMENT_STATE_TYPES,
    LIVE_NORMALIZATIONS,
    PARAMS,
    TRAJECTORY_POINTS,
)
from pai_ros.paramspec import defaults
from pai_ros.policy.runner import MODES
from pai_ros.require import require

_FLOAT32_MAX = 3.4028234663852886e38  # numpy.finfo(numpy.float32).max, without importing numpy here
_FLOAT32_TINY = 1.1754943508222875e-38  # the smallest normal float32: below it, 1/scale overflows

LEROBOT_IMAGE_PREFIX = "observation.images."


@dataclass(frozen=True)
class CameraInput:
    """One camera the policy reads: its policy name, the topic it arrives on, raw or compressed."""

    name: str
    topic: str
    compressed: bool = False

    @classmethod
    def parse(cls, entry: str) -> CameraInput:
        """``name:topic`` or ``name:topic:compressed``. LeRobot's full key (``observation.images.front``)
        is accepted for the name, and a topic ending in ``/compressed`` (image_transport's name for
        ``sensor_msgs/CompressedImage``) is read as compressed without the suffix."""
        parts = entry.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1] or (len(parts) == 3 and parts[2] != "compressed"):
            raise UserError(f"cameras entry '{entry}' is not 'name:topic' or 'name:topic:compressed'")
        name = parts[0].removeprefix(LEROBOT_IMAGE_PREFIX)
        return cls(name, parts[1], len(parts) == 3 or parts[1].rstrip("/").endswith("/compressed"))


@dataclass(frozen=True)
class LiveConfig:
    """Everything the live tick needs to know, as the node's parameters say (see ``parameters.py``)."""

    policy_path: str
    device: str = "auto"
    cameras: tuple[CameraInput, ...] = ()  # empty: every policy camera on camera/<name>/image_raw
    joint_states_topic: str = "joint_states"
    state_joint_names: tuple[str, ...] = ()
    state_scale: tuple[float, ...] = ()
    state_offset: tuple[float, ...] = ()
    environment_state_topic: str = "environment_state"
    environment_state_type: str = "float32_multi_array"
    environment_state_names: tuple[str, ...] = ()
    action_names: tuple[str, ...] = ()
    action_scale: tuple[float, ...] = ()
    action_offset: tuple[float, ...] = ()
    action_output: tuple[str, ...] = ("joint_state",)
    trajectory_points: str = "next"
    controller: str = ""
    control_rate_hz: float = 30.0
    mode: str = "auto"
    max_observation_age_s: float = 0.25
    max_clock_skew_s: float = 0.1
    max_input_spread_s: float = 0.0
    resize_images: bool = False
    publish_actions: bool = True
    action_min: tuple[float, ...] = ()
    action_max: tuple[float, ...] = ()
    publish_heatmaps: bool = True
    heatmap_cameras: tuple[str, ...] = ()
    heatmap_method: str = "input_gradient"
    heatmap_queries: QuerySelection = field(default_factory=QuerySelection)
    # The chunk: on the demo policy input_gradient's peak is on the target in 75% of held-out frames
    # explaining the chunk and 43% explaining the first action (bench/RESULTS.md).
    relevance_target: str = "chunk"
    heatmap_normalization: str = "frame"
    heatmap_vmax: float = 0.0
    heatmap_alpha: float = 0.6
    heatmap_colormap: str = "viridis"
    sae_path: str = ""
    features_top_n: int = 64
    feature_heatmaps: tuple[int, ...] = ()
    allow_steering: bool = False
    steering_max_value: float = 100.0
    steering_max_duration_s: float = 60.0
    diagnostics_period_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.policy_path:
            raise UserError("parameter policy_path is required (a LeRobot ACT checkpoint directory or hub id)")
        for name, allowed in (("heatmap_method", LIVE_METHODS), ("heatmap_colormap", COLORMAPS),
                              ("heatmap_normalization", LIVE_NORMALIZATIONS), ("trajectory_points", TRAJECTORY_POINTS),
                              ("environment_state_type", ENVIRONMENT_STATE_TYPES), ("mode", ("auto", *MODES))):
            if getattr(self, name) not in allowed:
                raise UserError(f"{name} '{getattr(self, name)}' is not one of {', '.join(allowed)}")
        if not self.action_output:
            raise UserError(f"action_output is empty; choose one or more of {', '.join(ACTION_OUTPUTS)}")
        unknown = [o for o in self.action_output if o not in ACTION_OUTPUTS]
        if unknown:
            raise UserError(f"action_output {', '.join(repr(o) for o in unknown)} does not exist "
                            f"(choose from {', '.join(ACTION_OUTPUTS)})")
        if len(set(self.action_output)) != len(self.action_output):
            raise UserError(f"action_output names an output twice: {list(self.action_output)}")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise UserError(f"cameras names a camera twice: {', '.join(names)}")
        for label, values in (("action_min", self.action_min), ("action_max", self.action_max)):
            if any(math.isnan(v) for v in values):
                raise UserError(f"{label} contains NaN")
        for label in ("state_scale", "state_offset", "action_scale", "action_offset"):
            values = getattr(self, label)
            # Applied in float32 (the policy's dtype): 1e39 is inf there, and 1e-39 turns 0.5 into inf.
            if not all(math.isfinite(v) and abs(v) <= _FLOAT32_MAX for v in values):
                raise UserError(f"{label} must hold finite float32 numbers, got {list(values)}")
            if label.endswith("scale") and any(abs(v) < _FLOAT32_TINY for v in values):
                raise UserError(f"{label} must not contain 0 or a number too small for float32 (1e-38; a joint "
                                f"would be lost), got {list(values)}")
        try:
            RelevanceTarget.parse(self.relevance_target)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        require("control_rate_hz", self.control_rate_hz, above=0)
        # Inputs that pass the age and skew checks are at most age + skew apart: a spread limit at or
        # above that reads as a check but never refuses anything.
        reach_s = self.max_observation_age_s + self.max_clock_skew_s
        if self.max_input_spread_s and self.max_input_spread_s >= reach_s:
            raise UserError(f"max_input_spread_s {self.max_input_spread_s} never refuses anything: inputs that pass "
                            f"max_observation_age_s {self.max_observation_age_s} and max_clock_skew_s "
                            f"{self.max_clock_skew_s} are at most {round(reach_s, 6)} s apart (set it below that, "
                            "or 0 not to check)")
        if any(f < 0 for f in self.feature_heatmaps):
            raise UserError(f"feature_heatmaps holds negative indices: {list(self.feature_heatmaps)}")
        if self.feature_heatmaps and not self.sae_path:
            raise UserError("feature_heatmaps needs sae_path (an SAE directory)")
        if self.allow_steering and not self.sae_path:
            raise UserError("allow_steering needs sae_path: features are steered through the SAE")

    @classmethod
    def from_parameters(cls, values: Mapping[str, Any]) -> LiveConfig:
        """From the node's parameter values (names as in ``parameters.PARAMS``; missing ones: defaults)."""
        known = {p.name for p in PARAMS}
        extra = sorted(set(values) - known)
        if extra:
            raise UserError(f"unknown policy_node parameter(s): {', '.join(extra)}")
        v = {**defaults(PARAMS), **values}
        try:
            queries = QuerySelection.parse(str(v["heatmap_queries"]))
        except ValueError as exc:
            raise UserError(str(exc)) from None
        tuples = {"state_joint_names", "environment_state_names", "action_names", "action_output",
                  "heatmap_cameras"}
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            value = v[f.name]
            if f.name == "cameras":
                value = tuple(CameraInput.parse(str(e)) for e in value)
            elif f.name == "heatmap_queries":
                value = queries
            elif f.name in tuples:
                value = tuple(str(x) for x in value)
            elif f.name in ("action_min", "action_max", "state_scale", "state_offset", "action_scale", "action_offset"):
                value = tuple(float(x) for x in value)
            elif f.name == "feature_heatmaps":
                value = tuple(int(x) for x in value)
            kwargs[f.name] = value
        return cls(**kwargs)

    @classmethod
    def defaults(cls, policy_path: str, **overrides: Any) -> LiveConfig:
        """The node's defaults with ``overrides`` (parameter names and values, as from a YAML file)."""
        return cls.from_parameters({"policy_path": policy_path, **overrides})

    def with_changes(self, **changes: Any) -> LiveConfig:
        return replace(self, **changes)

    @property
    def normalization(self) -> Normalization:
        """The heatmaps' colour scale: raw with a fixed maximum, or per frame / percentile."""
        if self.heatmap_normalization == "raw" and self.heatmap_vmax > 0:
            return Normalization("raw", vmax=self.heatmap_vmax)
        return Normalization("frame" if self.heatmap_normalization == "raw" else self.heatmap_normalization)

    @property
    def period_s(self) -> float:
        return 1.0 / self.control_rate_hz
