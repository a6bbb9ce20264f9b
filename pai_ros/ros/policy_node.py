"""``policy_node``: run an ACT policy every control tick; publish actions, heatmaps and health.

Subscribes (relative names, remappable): one image topic per camera (``sensor_msgs/Image``, or
``CompressedImage`` with the ``:compressed`` suffix in ``cameras``), ``joint_states``.
Publishes: ``action`` (``sensor_msgs/JointState``: ``name`` = action names, ``position`` =
action vector, stamped with the observation time it was computed from), one
``attention/<camera>/heatmap`` (``sensor_msgs/Image``, rgb8 overlay at camera resolution,
header copied from the camera frame), ``attention/shares`` (``sensor_msgs/JointState`` used
as named values: token type -> share of attention), with an SAE (``sae_path``) ``features``
(``pai_ros/msg/FeatureActivations``: the tick's active features strongest first, the
reconstruction error and the out-of-distribution flag) and optionally
``features/feature_<F>/<camera>/heatmap`` for chosen features, and ``/diagnostics``.

Callbacks only store the latest message of each input. A timer at the control rate hands a
tick to one worker thread; a tick still busy when the next one is due is skipped and counted,
never queued. No action is ever published from an input older than ``max_observation_age_s``,
from a missing input, or from an observation the core refuses (wrong shape, NaN...): the tick
is rejected, ``/diagnostics`` says why, and the next good tick recovers by itself.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState

from pai_ros.attention.attribution import LIVE_METHODS, QuerySelection
from pai_ros.attention.maps import maps_for_tick
from pai_ros.attention.render import (
    COLORMAPS,
    NORMALIZATION_MODES,
    Normalization,
    normalize,
    overlay,
)
from pai_ros.errors import UserError
from pai_ros.imaging.convert import ImageConversionError, resize_rgb
from pai_ros.msg import FeatureActivations
from pai_ros.policy.capture import CaptureConfig
from pai_ros.policy.freshness import FreshnessLimits, InputGate
from pai_ros.policy.loading import load_act_policy
from pai_ros.policy.observation import Observation, ObservationError
from pai_ros.policy.runner import MODES, PolicyRunner
from pai_ros.ros.lifecycle import run_node
from pai_ros.ros.messages import (
    ImageDecoder,
    feature_activations,
    joint_state,
    rgb_image,
    stamp_ns,
    to_stamp,
)
from pai_ros.ros.params import Param, declare
from pai_ros.sae.calibrate import check_dimensions
from pai_ros.sae.frame import encode_frame
from pai_ros.sae.model import CFG_FILE, WEIGHTS_FILE, LoadedSae, load_sae
from pai_ros.sae.ood import Calibration, load_calibration

PARAMS = [
    Param("policy_path", "", "LeRobot ACT checkpoint directory (pretrained_model) or lerobot-train output dir",
          read_only=True),
    Param("device", "auto", "torch device: auto, cpu, cuda, cuda:N", read_only=True),
    Param("cameras", [], "camera inputs as 'name:topic' or 'name:topic:compressed' (empty: every policy camera "
          "NAME on camera/NAME/image_raw)", array_type="string", read_only=True),
    Param("joint_states_topic", "joint_states", "sensor_msgs/JointState input with the robot state", read_only=True),
    Param("state_joint_names", [], "joint names, in the policy's state order (empty: the JointState's order, "
          "which must then have exactly the policy's state size)", array_type="string"),
    Param("action_names", [], "names published in action.name (empty: state_joint_names if sizes match, "
          "else action_0, action_1, ...)", array_type="string"),
    Param("control_rate_hz", 30.0, "control ticks per second", min=0.1, max=1000.0),
    Param("mode", "auto", f"runner mode: auto, {', '.join(MODES)} (auto: as the checkpoint's config says)",
          read_only=True),
    Param("max_observation_age_s", 0.25, "inputs older than this are stale: no action is published",
          min=0.001, max=60.0),
    Param("max_clock_skew_s", 0.1, "inputs stamped further than this ahead of this node's clock are refused "
          "(the robot's clock and this one disagree): no action is published", min=0.0, max=60.0),
    Param("resize_images", False, "resize camera images whose size differs from the policy's input "
          "(false: such images are refused and no action is published)"),
    Param("publish_actions", True, "false = observe-only: interpret the policy while something else drives"),
    Param("action_min", [], "per-dimension lower clamp of published actions (empty: no clamp)", array_type="double"),
    Param("action_max", [], "per-dimension upper clamp of published actions (empty: no clamp)", array_type="double"),
    Param("publish_heatmaps", True, "publish attention/<camera>/heatmap images"),
    Param("heatmap_cameras", [], "cameras that get a heatmap topic (empty: all)", array_type="string"),
    Param("heatmap_method", "cross_attention", f"attribution method: {', '.join(LIVE_METHODS)}"),
    Param("heatmap_queries", "mean", "decoder queries shown: mean, executed, K or A:B"),
    Param("heatmap_normalization", "frame", f"colour scale: {', '.join(m for m in NORMALIZATION_MODES if m != 'episode')}"),
    Param("heatmap_vmax", 0.0, "fixed scale maximum for heatmap_normalization=raw (0: per frame)", min=0.0),
    Param("heatmap_alpha", 0.6, "overlay opacity at full attention", min=0.0, max=1.0),
    Param("heatmap_colormap", "viridis", f"colormap: {', '.join(COLORMAPS)}"),
    Param("sae_path", "", "sparse autoencoder directory (from `pai sae train`) for live features; empty: none. "
          "Setting it while running reloads the SAE (the node must have started with one)"),
    Param("features_top_n", 64, "at most this many features per features message (strongest first)",
          min=1, max=1_000_000),
    Param("feature_heatmaps", [], "SAE feature indices that get a features/feature_<F>/<camera>/heatmap topic",
          array_type="integer", read_only=True),
    Param("diagnostics_period_s", 1.0, "period of /diagnostics messages", min=0.05, max=60.0),
]

RELIABLE = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass
class CameraInput:
    name: str
    topic: str
    compressed: bool
    resize_warned: bool = False


class Health:
    """What /diagnostics reports: counters and the current reason not to act (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ticks = self.actions = self.skipped = self.rejected = 0
        self.level = DiagnosticStatus.WARN
        self.message = "waiting for the first observation"
        self.ages: dict[str, float] = {}
        self.tick_s: deque[float] = deque(maxlen=1000)  # whole ticks that produced an action
        # Every reason since the last /diagnostics message: a one-tick fault (a stamp that jumped back)
        # must not vanish behind the next tick's message.
        # Keyed by the reason without its numbers, so that "0.41 s old", "0.44 s old", ... count as one.
        self.recent: dict[str, tuple[int, str]] = {}  # kind -> (count, latest wording)

    def reject(self, reason: str) -> None:
        with self.lock:
            self.rejected += 1
            self.level, self.message = DiagnosticStatus.ERROR, f"no action: {reason}"
            kind = _NUMBER.sub("#", reason)
            self.recent[kind] = (self.recent.get(kind, (0, ""))[0] + 1, reason)

    def take_recent(self) -> str:
        """'N x reason; ...' since the previous call (caller holds the lock)."""
        text = "; ".join(f"{n} x {reason}" for n, reason in self.recent.values())
        self.recent = {}
        return text

    def ok(self, message: str) -> None:
        with self.lock:
            self.level, self.message = DiagnosticStatus.OK, message

    def warn(self, message: str) -> None:
        with self.lock:
            self.level, self.message = DiagnosticStatus.WARN, message


@dataclass
class LiveSae:
    """The SAE a node encodes every tick with, its OOD calibration and what it last saw."""

    loaded: LoadedSae
    calibration: Calibration | None
    files: dict[Path, tuple[int, int]] = field(default_factory=dict)  # file -> (mtime ns, size) when loaded
    last_error: float = float("nan")
    last_ood: bool = False
    ood_ticks: int = 0
    encode_s: deque = field(default_factory=lambda: deque(maxlen=1000))

    @property
    def threshold(self) -> float | None:
        return self.calibration.threshold if self.calibration else None

    @classmethod
    def load(cls, path: str, device: str, runner: PolicyRunner, feature_heatmaps: list[int]) -> tuple[LiveSae, str | None]:
        """Load and check an SAE for ``runner``; also returns why there is no OOD flag, if there is none."""
        loaded = load_sae(path, device)
        check_dimensions(runner, loaded)
        bad = [f for f in feature_heatmaps if not 0 <= f < loaded.cfg.d_sae]
        if bad:
            raise UserError(f"feature_heatmaps {bad} out of range: the SAE has {loaded.cfg.d_sae} features")
        calibration, why = load_calibration(loaded.directory, loaded.sae_id)
        files = {}
        for name in (CFG_FILE, WEIGHTS_FILE):
            st = (loaded.directory / name).stat()
            files[loaded.directory / name] = (st.st_mtime_ns, st.st_size)
        return cls(loaded, calibration, files), why

    def file_problem(self) -> str | None:
        """Why the SAE on disk no longer matches the copy in use (the copy keeps working either way)."""
        for path, (mtime, size) in self.files.items():
            try:
                st = path.stat()
            except OSError:
                return f"SAE file {path} has vanished; features continue from the copy loaded at start"
            if (st.st_mtime_ns, st.st_size) != (mtime, size):
                return (f"SAE file {path} changed on disk; features continue from the copy loaded at start "
                        f"({self.loaded.sae_id}); set sae_path again to reload")
        return None

    def describe(self) -> str:
        ood = f"OOD threshold {self.threshold:.4g}" if self.calibration else "no OOD calibration"
        return f"SAE {self.loaded.sae_id} ({self.loaded.cfg.d_sae} features, {ood})"

    def diagnostics(self) -> dict[str, str]:
        ms = np.asarray(self.encode_s) * 1000.0
        return {"sae_id": self.loaded.sae_id, "reconstruction_error": f"{self.last_error:.5g}",
                "ood_threshold": "none" if self.threshold is None else f"{self.threshold:.5g}",
                "ood_ticks": str(self.ood_ticks), "sae_encode_mean_ms": f"{ms.mean():.2f}" if ms.size else "nan"}


class PolicyNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("policy_node", **node_kwargs)
        self.p = declare(self, PARAMS)
        if not self.p["policy_path"]:
            raise UserError("parameter policy_path is required (a LeRobot ACT checkpoint directory)")
        for name, allowed in (("heatmap_method", LIVE_METHODS), ("heatmap_colormap", COLORMAPS),
                              ("heatmap_normalization", ("raw", "frame", "percentile"))):
            if self.p[name] not in allowed:
                raise UserError(f"{name} '{self.p[name]}' is not one of {', '.join(allowed)}")
        try:
            self.selection = QuerySelection.parse(self.p["heatmap_queries"])
        except ValueError as exc:
            raise UserError(str(exc)) from None

        loaded = load_act_policy(self.p["policy_path"], self.p["device"])
        capture = CaptureConfig(encoder_self_attention=self.p["heatmap_method"] == "rollout",
                                encoder_output=bool(self.p["sae_path"]))
        self.runner = PolicyRunner(loaded, self.p["mode"], capture)
        self.sae = self._load_sae()
        self.spec = self.runner.spec
        self.cameras = self._camera_inputs()
        self.heatmap_cameras = self.p["heatmap_cameras"] or list(self.cameras)
        unknown = [c for c in self.heatmap_cameras if c not in self.cameras]
        if unknown:
            raise UserError(f"heatmap_cameras names unknown camera(s) {', '.join(unknown)} "
                            f"(policy cameras: {', '.join(self.cameras)})")
        self.state_dim = self.spec.state_dim or 0
        action_dim = int(loaded.config.action_feature.shape[0])
        self.action_names = self._action_names(action_dim)
        self.clamp = self._clamp(action_dim)
        self.decoder = ImageDecoder()
        self.gate = InputGate(FreshnessLimits(self.p["max_observation_age_s"], self.p["max_clock_skew_s"]))

        self._lock = threading.Lock()
        self._latest: dict[str, tuple[Any, int]] = {}  # input -> (message, receive time ns)
        for cam in self.cameras.values():
            msg_type = CompressedImage if cam.compressed else Image
            self.create_subscription(msg_type, cam.topic, lambda m, n=cam.name: self._store(n, m),
                                     qos_profile_sensor_data)
        self.create_subscription(JointState, self.p["joint_states_topic"], lambda m: self._store("joint_states", m),
                                 qos_profile_sensor_data)
        self.action_pub = self.create_publisher(JointState, "action", RELIABLE)
        self.shares_pub = self.create_publisher(JointState, "attention/shares", RELIABLE)
        self.heatmap_pubs = {c: self.create_publisher(Image, f"attention/{c}/heatmap", RELIABLE)
                             for c in self.heatmap_cameras} if self.p["publish_heatmaps"] else {}
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE)
        self.features_pub = self.create_publisher(FeatureActivations, "features", RELIABLE) if self.sae else None
        self.feature_heatmap_pubs = {
            (f, c): self.create_publisher(Image, f"features/feature_{f}/{c}/heatmap", RELIABLE)
            for f in (self.p["feature_heatmaps"] if self.sae else []) for c in self.heatmap_cameras}

        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.health = Health()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pai_policy")
        self._busy: Future | None = None
        self._closing = False
        self._tick_timer = self.create_timer(1.0 / self.p["control_rate_hz"], self._on_tick)
        self.create_timer(self.p["diagnostics_period_s"], self._publish_diagnostics)
        topics = ", ".join(f"{c.name}<-{self.resolve_topic_name(c.topic)}" for c in self.cameras.values())
        self.get_logger().info(
            f"ready: {loaded.path} on {loaded.device}, mode {self.runner.mode}, {self.p['control_rate_hz']} Hz, "
            f"cameras {topics}, state <- {self.resolve_topic_name(self.p['joint_states_topic'])}, "
            f"images via {self.decoder.backend}, {self.sae.describe() if self.sae else 'no SAE'}, actions {'published' if self.p['publish_actions'] else 'NOT published (observe-only)'}")

    # ------------------------------------------------------------------ configuration

    def _load_sae(self) -> LiveSae | None:
        if not self.p["sae_path"]:
            if self.p["feature_heatmaps"]:
                raise UserError("feature_heatmaps needs sae_path (an SAE directory)")
            return None
        sae, why = LiveSae.load(self.p["sae_path"], self.runner.device, self.runner, self.p["feature_heatmaps"])
        if why:
            self.get_logger().warning(f"no OOD flag: {why}")
        return sae

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        """Reload the SAE when ``sae_path`` is set at run time; on any problem keep the one in use."""
        for param in params:
            if param.name != "sae_path" or param.value == self.p["sae_path"]:
                continue
            if self.sae is None:
                return SetParametersResult(successful=False, reason="the node started without an SAE: "
                                           "restart it with sae_path to publish features")
            try:
                sae, why = LiveSae.load(param.value, self.runner.device, self.runner, self.p["feature_heatmaps"])
            except UserError as exc:
                self.get_logger().error(f"SAE not reloaded, keeping {self.sae.loaded.sae_id}: {exc}")
                return SetParametersResult(successful=False, reason=str(exc))
            self.sae, self.p["sae_path"] = sae, param.value  # the next tick picks it up (one reference swap)
            self.get_logger().info(f"reloaded {sae.describe()} from {param.value}" + (f"; no OOD flag: {why}" if why else ""))
        return SetParametersResult(successful=True)

    def _camera_inputs(self) -> dict[str, CameraInput]:
        entries = self.p["cameras"] or [f"{name}:camera/{name}/image_raw" for name in self.spec.cameras]
        cams: dict[str, CameraInput] = {}
        for entry in entries:
            parts = entry.split(":")
            if len(parts) not in (2, 3) or not parts[0] or not parts[1] or (len(parts) == 3 and parts[2] != "compressed"):
                raise UserError(f"cameras entry '{entry}' is not 'name:topic' or 'name:topic:compressed'")
            cams[parts[0]] = CameraInput(parts[0], parts[1], len(parts) == 3)
        missing = [n for n in self.spec.cameras if n not in cams]
        if missing:
            raise UserError(f"the policy needs camera(s) {', '.join(missing)}; add 'name:topic' entries to cameras")
        extra = [n for n in cams if n not in self.spec.cameras]
        if extra:
            raise UserError(f"cameras names {', '.join(extra)}, which the policy does not use "
                            f"(policy cameras: {', '.join(self.spec.cameras)})")
        return cams

    def _action_names(self, action_dim: int) -> list[str]:
        names = self.p["action_names"]
        if names:
            if len(names) != action_dim:
                raise UserError(f"action_names has {len(names)} names, the policy's action has {action_dim} dimensions")
            return names
        state_names = self.p["state_joint_names"]
        if len(state_names) == action_dim:
            return state_names
        return [f"action_{i}" for i in range(action_dim)]

    def _clamp(self, action_dim: int) -> tuple[np.ndarray, np.ndarray] | None:
        lo, hi = self.p["action_min"], self.p["action_max"]
        if not lo and not hi:
            return None
        lo = np.asarray(lo or [-np.inf] * action_dim, dtype=np.float32)
        hi = np.asarray(hi or [np.inf] * action_dim, dtype=np.float32)
        if lo.shape != (action_dim,) or hi.shape != (action_dim,) or np.any(lo > hi):
            raise UserError(f"action_min/action_max must have {action_dim} values each with min <= max")
        return lo, hi

    # ------------------------------------------------------------------ inputs

    def _store(self, name: str, msg: Any) -> None:
        now = self.get_clock().now().nanoseconds
        with self._lock:
            self._latest[name] = (msg, now)
        self.gate.received(name)  # input rates for /diagnostics: a 10x burst shows up there

    def _on_tick(self) -> None:
        if self._closing:
            return
        if self._busy is not None and not self._busy.done():
            with self.health.lock:
                self.health.skipped += 1  # never queue ticks up: the next one reads fresher inputs
            return
        self._busy = self._worker.submit(self._tick)

    @staticmethod
    def _input_stamp(msg: Any, recv_ns: int) -> int:
        stamp = stamp_ns(msg.header.stamp)
        return stamp if stamp != 0 else recv_ns  # unstamped publishers: fall back to when we received it

    def _tick(self) -> None:
        try:
            self._tick_inner()
        except Exception as exc:  # keep the node alive; the reason goes to /diagnostics and the log
            self.health.reject(f"internal error: {exc!r}")
            self.get_logger().error(f"tick failed: {exc!r}")

    def _tick_inner(self) -> None:
        t0 = time.perf_counter()
        now_ns = self.get_clock().now().nanoseconds
        with self._lock:
            latest = dict(self._latest)
        with self.health.lock:
            self.health.ticks += 1
        inputs = [*self.cameras, "joint_states"] if self.state_dim else list(self.cameras)
        stamps: dict[str, int] = {}
        for name in inputs:
            if name not in latest:
                topic = self.cameras[name].topic if name in self.cameras else self.p["joint_states_topic"]
                self.health.reject(f"no message yet on {self.resolve_topic_name(topic)}")
                return
            stamps[name] = self._input_stamp(*latest[name])
        verdict = self.gate.check(stamps, now_ns)
        with self.health.lock:
            self.health.ages = verdict.ages_s
        if verdict.reason is not None:
            self.health.reject(verdict.reason)
            return

        images, camera_msgs = {}, {}
        for name, cam in self.cameras.items():
            msg = latest[name][0]
            try:
                rgb = self.decoder.to_rgb(msg)
            except ImageConversionError as exc:
                self.health.reject(f"camera {name}: {exc}")
                return
            _, h, w = self.spec.cameras[name]
            if rgb.shape[:2] != (h, w):
                # A size the policy never saw usually means a misconfigured or swapped camera: refuse it
                # unless the user chose to resize.
                if not self.p["resize_images"]:
                    self.health.reject(f"camera {name} sends {rgb.shape[1]}x{rgb.shape[0]} images, the policy "
                                       f"expects {w}x{h} (configure the camera, or set resize_images:=true)")
                    return
                if not cam.resize_warned:
                    cam.resize_warned = True
                    self.get_logger().warning(f"camera {name} sends {rgb.shape[1]}x{rgb.shape[0]} images, the "
                                              f"policy was trained on {w}x{h}: resizing (warned once)")
            camera_msgs[name] = (msg, rgb)
            images[name] = resize_rgb(rgb, h, w)
        state = None
        if self.state_dim:
            state = self._state_vector(latest["joint_states"][0])
            if state is None:
                return
        try:
            result = self.runner.step(Observation(images, state))
        except ObservationError as exc:
            self.health.reject(str(exc))
            return

        obs_stamp = to_stamp(min(stamps.values()))  # an observation is as old as its oldest part
        action = result.action
        if self.clamp is not None:
            action = np.clip(action, *self.clamp)
        if self.p["publish_actions"]:
            self.action_pub.publish(joint_state(self.action_names, action, obs_stamp))
        sae = self.sae  # one reference for the whole tick: a reload swaps it between ticks
        if sae is not None and result.capture is not None:
            self._publish_features(sae, result, obs_stamp, camera_msgs)
        maps = maps_for_tick(result, self.p["heatmap_method"], self.selection)
        if maps is not None:
            self.shares_pub.publish(joint_state(list(maps.shares), np.array(list(maps.shares.values())), obs_stamp))
            if self.heatmap_pubs:
                self._publish_heatmaps(maps.grids, camera_msgs)
        with self.health.lock:
            self.health.actions += int(self.p["publish_actions"])
            self.health.tick_s.append(time.perf_counter() - t0)
        message = "publishing actions" if self.p["publish_actions"] else "observe-only: interpreting, not acting"
        if sae is not None and sae.last_ood:
            # The action still goes out (the policy is unchanged); the operator is told the scene looks unfamiliar.
            self.health.warn(f"{message}; out of distribution: SAE reconstruction error "
                             f"{sae.last_error:.4g} > threshold {sae.threshold:.4g}")
        else:
            self.health.ok(message)

    def _publish_features(self, sae: LiveSae, result: Any, stamp: Any,
                          camera_msgs: dict[str, tuple[Any, np.ndarray]]) -> None:
        t0 = time.perf_counter()
        features = encode_frame(sae.loaded.sae, result.capture.encoder_output[0], self.p["features_top_n"])
        sae.encode_s.append(time.perf_counter() - t0)
        msg = feature_activations(features, sae.loaded.sae_id, sae.loaded.cfg.d_sae, stamp, sae.threshold)
        sae.last_error, sae.last_ood = features.reconstruction_error, bool(msg.is_ood)
        sae.ood_ticks += int(msg.is_ood)
        self.features_pub.publish(msg)
        if self.feature_heatmap_pubs:
            for feature in self.p["feature_heatmaps"]:
                grids = features.spatial_map(result.capture.layout, feature)
                # One scale for all cameras of this feature and tick: 0 .. its strongest cell.
                peak = max(float(g.max()) for g in grids.values())
                for cam in self.heatmap_cameras:
                    grid = grids[cam] / peak if peak > 0 else np.zeros_like(grids[cam])
                    header, rgb = camera_msgs[cam][0].header, camera_msgs[cam][1]
                    img = overlay(rgb, grid, alpha=self.p["heatmap_alpha"], colormap=self.p["heatmap_colormap"])
                    self.feature_heatmap_pubs[(feature, cam)].publish(rgb_image(img, header))

    def _state_vector(self, msg: JointState) -> np.ndarray | None:
        names = self.p["state_joint_names"]
        if names:
            index = {n: i for i, n in enumerate(msg.name)}
            missing = [n for n in names if n not in index]
            if missing:
                self.health.reject(f"joint_states lacks joint(s) {', '.join(missing)} (has: {', '.join(msg.name)})")
                return None
            if len(msg.position) < len(msg.name):
                self.health.reject(f"joint_states has {len(msg.name)} names but {len(msg.position)} positions")
                return None
            state = np.array([msg.position[index[n]] for n in names], dtype=np.float32)
        else:
            state = np.asarray(msg.position, dtype=np.float32)
        if state.shape != (self.state_dim,):
            self.health.reject(f"joint_states gives {state.size} positions, the policy needs {self.state_dim} "
                               "(set state_joint_names)")
            return None
        if not np.all(np.isfinite(state)):
            self.health.reject(f"joint_states contains NaN or inf: {state.tolist()}")
            return None
        return state

    def _publish_heatmaps(self, grids: dict[str, np.ndarray], camera_msgs: dict[str, tuple[Any, np.ndarray]]) -> None:
        mode = self.p["heatmap_normalization"]
        vmax = self.p["heatmap_vmax"]
        norm = Normalization("raw", vmax=vmax) if mode == "raw" and vmax > 0 else Normalization(
            "frame" if mode == "raw" else mode)
        scaled = normalize({c: grids[c] for c in self.heatmap_pubs}, norm)
        for cam, pub in self.heatmap_pubs.items():
            msg, rgb = camera_msgs[cam]
            img = overlay(rgb, scaled[cam], alpha=self.p["heatmap_alpha"], colormap=self.p["heatmap_colormap"])
            pub.publish(rgb_image(img, msg.header))  # same header: RViz lines the overlay up with the camera

    # ------------------------------------------------------------------ health

    def _publish_diagnostics(self) -> None:
        stats = self.runner.stats
        lat = stats.latency_summary()
        rates = self.gate.rates_hz(self.get_clock().now().nanoseconds)
        sae = self.sae
        sae_problem = sae.file_problem() if sae is not None else None
        with self.health.lock:
            h = self.health
            ticks_ms = np.asarray(h.tick_s) * 1000.0
            node_mean = f"{ticks_ms.mean():.1f}" if ticks_ms.size else "nan"
            node_p99 = f"{np.percentile(ticks_ms, 99):.1f}" if ticks_ms.size else "nan"
            values = {
                "ticks": h.ticks, "actions_published": h.actions, "skipped_ticks": h.skipped,
                "rejected_ticks": h.rejected, "forwards": stats.forwards, "wasted_forwards": stats.wasted_forwards,
                # latency_*: the whole tick in the node (conversion, policy, heatmaps, publishing);
                # policy_*: the core runner alone, for the ROS overhead ratio.
                "latency_mean_ms": node_mean, "latency_p99_ms": node_p99,
                "policy_mean_ms": f"{lat['mean_ms']:.1f}", "policy_p99_ms": f"{lat['p99_ms']:.1f}",
                "mode": self.runner.mode, "device": self.runner.device,
                "publish_actions": self.p["publish_actions"],
                **{f"age_{k}_s": f"{v:.3f}" for k, v in h.ages.items()},
                **{f"rate_{k}_hz": f"{v:.1f}" for k, v in rates.items()},
                "rejections_since_last": h.take_recent(),
                **(sae.diagnostics() if sae else {}),
            }
            level, message = h.level, h.message
            if sae_problem:  # not a reason to stop acting, but the operator must know
                values["sae_file"] = sae_problem
                if level == DiagnosticStatus.OK:
                    level, message = DiagnosticStatus.WARN, f"{message}; {sae_problem}"
            status = DiagnosticStatus(level=level, name=f"{self.get_name()}: policy", message=message,
                                      hardware_id=str(self.runner.loaded.path),
                                      values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [status]
        self.diag_pub.publish(arr)

    def shutdown(self) -> None:
        """Stop ticking and wait for the tick in progress (the node may keep spinning afterwards)."""
        self._closing = True
        self._tick_timer.cancel()
        self._worker.shutdown(wait=True, cancel_futures=True)


def main(args: list[str] | None = None) -> int:
    return run_node("policy_node", PolicyNode, args)


if __name__ == "__main__":
    sys.exit(main())
