"""One control tick of a live policy, without ROS: the latest inputs and a clock in, an action or a reason out.

:meth:`LiveTick.step` does, in order: every input present; stamps fresh, not from the future and
not going back (:class:`pai_ros.policy.freshness.InputGate`); images decodable and of the size
the policy was trained on (or resized when allowed); the state and environment state complete
and finite; then the policy's forward pass (:class:`pai_ros.policy.runner.PolicyRunner`), the
clamped action and the actions planned after it, the attention maps as overlays, and with an
SAE the tick's features. Any failure before the action is a :class:`Rejection` with the reason
(also counted in :class:`pai_ros.live.health.Health`): **no action comes from stale or invalid
data**. The ROS node converts messages into :class:`~pai_ros.live.inputs.TickInputs`, calls
this and publishes :class:`TickOutput`; tests drive it directly with a fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pai_ros.attention.attribution import GRADIENT_LIVE_METHODS, LIVE_METHODS
from pai_ros.attention.explainers import estimated_memory_bytes, make_explainer
from pai_ros.attention.maps import maps_for_tick
from pai_ros.attention.relevance import RelevanceTarget, available_memory_bytes
from pai_ros.attention.render import normalize, overlay
from pai_ros.errors import UserError
from pai_ros.live.action_mapping import ActionMapping
from pai_ros.live.config import CameraInput, LiveConfig
from pai_ros.live.controllers import ControllerGate
from pai_ros.live.health import Health, Level
from pai_ros.live.inputs import ENVIRONMENT_STATE, JOINT_STATES, TickInputs, VectorReading
from pai_ros.live.joint_merge import JointStateMerge
from pai_ros.live.observation_reader import ObservationReader
from pai_ros.live.parameters import JOINT_TRAJECTORY
from pai_ros.live.refusal_log import RefusalLog
from pai_ros.live.rejection import Rejection
from pai_ros.live.sae import FeaturesOutput, LiveSae
from pai_ros.live.steering import ActiveSteering, SteeringControl, SteeringHook
from pai_ros.policy.capture import CaptureConfig
from pai_ros.policy.errors import ObservationError, PolicyOutputError
from pai_ros.policy.freshness import FreshnessLimits, InputGate
from pai_ros.policy.loading import load_act_policy
from pai_ros.policy.observation import Observation
from pai_ros.policy.runner import PolicyRunner


@dataclass
class TickOutput:
    """Everything one accepted tick produced; the node turns it into messages."""

    stamp_ns: int  # the observation's time: its oldest input's stamp (every output carries it)
    action: np.ndarray  # (action_dim,) float32, clamped: the action to execute now
    action_names: tuple[str, ...]
    plan: np.ndarray  # (n, action_dim) float32, clamped: this action, then the ones planned after it
    heatmap_method: str
    shares: dict[str, float]  # token type / camera -> share of the map's mass
    heatmaps: dict[str, np.ndarray]  # camera -> RGB overlay at camera resolution
    camera_frame_ids: dict[str, str]
    camera_stamps_ns: dict[str, int]  # each camera's header stamp (its arrival time when unstamped)
    features: FeaturesOutput | None = None
    # The frames the attention heatmaps explain and are drawn on: this tick's, or between chunk
    # refills (and for heatmap_queries executed) the frames of the forward pass they come from.
    heatmap_stamps_ns: dict[str, int] = field(default_factory=dict)
    heatmap_frame_ids: dict[str, str] = field(default_factory=dict)
    feature_heatmaps: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)  # (feature, camera) -> RGB
    steering: ActiveSteering | None = None  # the steering of the forward pass this action came from
    latency_s: float = 0.0
    status: tuple[Level, str] = (Level.OK, "")  # what /diagnostics says after this tick
    # The action outputs the node must not publish (their controller's joints not verified to match),
    # decided once by the tick: the node publishes on the same reading the status and count use.
    held_outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Frames:
    """The camera images of one tick, with their stamps and frame ids (for heatmap overlays)."""

    rgb: dict[str, np.ndarray]
    stamps_ns: dict[str, int]
    frame_ids: dict[str, str]


@dataclass(frozen=True)
class Diagnostics:
    level: Level
    message: str
    values: dict[str, str]
    hardware_id: str
    pace: tuple[Level, str] = (Level.OK, "")  # its own status: do the ticks keep up with the control rate


class LiveTick:
    """The live pipeline of one policy (create with :meth:`create`; one :meth:`step` at a time)."""

    def __init__(self, config: LiveConfig, runner: PolicyRunner, sae: LiveSae | None,
                 resolve_topic: Callable[[str], str] = lambda t: t) -> None:
        self.config = config
        self.runner = runner
        self.spec = runner.spec
        self.sae = sae
        self.sae_path = config.sae_path  # the SAE directory loaded now (see pai_ros.live.reconfigure)
        self.health = Health(observe_only=not config.publish_actions)
        self.gate = InputGate(FreshnessLimits(config.max_observation_age_s, config.max_clock_skew_s,
                                              config.max_input_spread_s))
        self.cameras = self._camera_inputs()
        self.heatmap_cameras = self._heatmap_cameras()
        self.action_dim = int(runner.loaded.config.action_feature.shape[0])
        self.actions = ActionMapping(config, self.action_dim)  # names, units and limits of what goes out
        self.warnings: list[str] = []  # notes for the node's log: "resizing camera X", why no action goes out
        self.reader = ObservationReader(config, self.spec, self.warnings)  # inputs -> observation
        self.heatmap_method = "cross_attention"
        # Checked here, not at the first tick: a map that cannot be drawn must never stop the actions.
        config.heatmap_queries.check(runner.chunk_size, "heatmap_queries")
        self.relevance_target = RelevanceTarget.parse(config.relevance_target)
        if self.relevance_target.kind == "dim" and self.relevance_target.dim >= self.action_dim:
            # A configuration error, refused at start (unlike a method the machine cannot afford).
            raise UserError(f"relevance target dim:{self.relevance_target.dim} is outside the policy's "
                            f"{self.action_dim} action dimensions")
        # Where the memory check before a switch to a gradient method reads free memory (bytes, or
        # None when unknown: the check is then skipped).
        self.memory_available: Callable[[], int | None] = lambda: available_memory_bytes(runner.device)
        #: Why the configured heatmap method was refused at start (None: it runs).
        self.heatmap_refused: str | None = None
        try:
            self.set_heatmap_method(config.heatmap_method)
        except UserError as exc:
            # A gradient method refused at start (memory, no gradients) must not stop the node: it
            # acts as always and shows cross-attention maps, and says so in the log and /diagnostics.
            self.heatmap_refused = f"heatmap_method {config.heatmap_method} refused, showing cross_attention: {exc}"
        self.input_names: list[str] = [*self.cameras]
        if self.spec.state_dim:
            self.input_names.append(JOINT_STATES)
        if self.spec.env_state_dim:
            self.input_names.append(ENVIRONMENT_STATE)
        topics = {JOINT_STATES: config.joint_states_topic, ENVIRONMENT_STATE: config.environment_state_topic,
                  **{c.name: c.topic for c in self.cameras.values()}}
        # Only the inputs this policy reads: a policy without an environment state never looks at
        # environment_state_topic, so nothing about it can stop the node.
        self.topics = {name: resolve_topic(topic) for name, topic in topics.items() if name in self.input_names}
        self._unstamped: set[str] = set()  # inputs seen with header.stamp 0 (warned once, on /diagnostics)
        self._picture_failures: set[tuple[str, type]] = set()  # (what, exception type) warned once in the log
        self._last_sent: tuple[np.ndarray, int] | None = None  # the last plan sent and when (see _stop_point)
        self._sae_file_problem_said: str | None = None  # the SAE file problem last logged
        self.infos: list[str] = []  # the same at INFO level: acting again after refusals
        self.refusals = RefusalLog(observe_only=not config.publish_actions)
        self.steering = SteeringControl(config.allow_steering, config.steering_max_value,
                                        config.steering_max_duration_s)
        # Registered after the runner's capture hooks: features describe the unsteered tokens.
        self._steer_hook = SteeringHook(runner.policy.model.encoder) if config.allow_steering else None
        self._chunk_steering: ActiveSteering | None = None  # queue/chunk modes: the executing chunk's
        self._chunk_frames: _Frames | None = None  # the frames the executing chunk was predicted from
        # The node adds every joint_states message; the tick reads them merged by joint name.
        self.joints = JointStateMerge(config.state_joint_names)
        # Set by the node when actions go to a ros2_control controller whose joints it checks.
        self.controller_gate: ControllerGate | None = None

    @classmethod
    def create(cls, config: LiveConfig, resolve_topic: Callable[[str], str] = lambda t: t) -> tuple[LiveTick, list[str]]:
        """Load the policy (and SAE) that ``config`` names; also returns notes for the log."""
        loaded = load_act_policy(config.policy_path, config.device)
        # Encoder self-attention is captured whatever the method: the forward pass computes it
        # anyway, and keeping it lets heatmap_method switch to rollout at run time for free.
        capture = CaptureConfig(encoder_self_attention=True, encoder_output=bool(config.sae_path))
        runner = PolicyRunner(loaded, config.mode, capture)
        notes: list[str] = []
        sae = None
        try:
            if config.sae_path:
                sae, why = LiveSae.load(config.sae_path, runner, config.feature_heatmaps)
                if why:
                    notes.append(f"no OOD flag: {why}")
            tick = cls(config, runner, sae, resolve_topic)
            if tick.heatmap_refused:
                notes.append(tick.heatmap_refused)
            return tick, notes
        except BaseException:
            runner.close()
            raise

    # ------------------------------------------------------------------ set-up checks

    def _camera_inputs(self) -> dict[str, CameraInput]:
        entries = self.config.cameras or tuple(CameraInput(n, f"camera/{n}/image_raw") for n in self.spec.cameras)
        cams = {c.name: c for c in entries}
        missing = [n for n in self.spec.cameras if n not in cams]
        extra = [n for n in cams if n not in self.spec.cameras]
        if missing or extra:
            problems = ([f"lacks {', '.join(missing)}"] if missing else []) + (
                [f"names {', '.join(extra)}, which the policy does not use"] if extra else [])
            raise UserError(f"cameras {' and '.join(problems)}: it needs one 'name:topic' entry per policy camera "
                            f"(policy cameras: {', '.join(self.spec.cameras)})")
        return cams

    def _heatmap_cameras(self) -> list[str]:
        chosen = list(self.config.heatmap_cameras) or list(self.cameras)
        unknown = [c for c in chosen if c not in self.cameras]
        if unknown:
            raise UserError(f"heatmap_cameras names unknown camera(s) {', '.join(unknown)} "
                            f"(policy cameras: {', '.join(self.cameras)})")
        return chosen if self.config.publish_heatmaps else []

    # ------------------------------------------------------------------ run-time changes

    def received(self, name: str) -> None:
        """Count one arrival of input ``name`` (input rates for /diagnostics; any thread)."""
        self.gate.received(name)

    def reload_sae(self, path: str) -> str:
        """Load and check another SAE and swap it in between ticks; the old one stays on any problem."""
        if self.sae is None:
            raise UserError("the node started without an SAE: restart it with sae_path to publish features")
        if not path.strip():  # else it looked for cfg.json in the working directory
            raise UserError("an empty sae_path cannot switch features off while the node runs: restart it "
                            "without sae_path")
        sae, why = LiveSae.load(path, self.runner, self.config.feature_heatmaps)
        self.sae = sae  # one reference swap: the tick in progress keeps the SAE it started with
        return sae.describe() + (f"; no OOD flag: {why}" if why else "")

    def steer(self, features: list[int], mode: str, values: list[float], duration_s: float, now_ns: int) -> str:
        """Apply a steering request (see :class:`SteeringControl`); raises :class:`UserError` why not."""
        sae = self.sae
        return self.steering.request(features, mode, values, duration_s, now_ns,
                                     sae.loaded.sae_id if sae else None, sae.num_features if sae else 0)

    def set_heatmap_method(self, method: str) -> Callable[[], None]:
        """Switch the live attribution method from the next tick; on any problem nothing changes.

        Gradient methods (relevance, relevance_cross, input_gradient) are checked first: the policy
        must give them gradients, and the free memory must hold the forward pass's graph
        (:func:`~pai_ros.attention.explainers.estimated_memory_bytes`; input_gradient keeps the
        vision backbone's activations too, so it asks for much more), else :class:`UserError`
        says why and the current method stays, so the node keeps acting and showing maps.
        Returns a function that undoes the switch (see :mod:`pai_ros.live.reconfigure`).
        """
        if method not in LIVE_METHODS:
            raise UserError(f"heatmap_method '{method}' is not one of {', '.join(LIVE_METHODS)}")
        explainer = None
        if method in GRADIENT_LIVE_METHODS:
            explainer = make_explainer(self.runner.policy, method, self.relevance_target)
            explainer.check_gradients()
            sizes = [(h, w) for _, h, w in self.spec.cameras.values()]
            need = estimated_memory_bytes(self.runner.policy, method, sizes, self._token_count())
            free = self.memory_available()
            if free is not None and free < need:
                raise UserError(f"not enough memory for {method} on {self.runner.device}: it needs about "
                                f"{need / 2**20:.0f} MiB more, {free / 2**20:.0f} MiB are free")
            explainer.attach()
        previous, previous_method = self.runner.explainer, self.heatmap_method
        self.runner.explainer = explainer  # one reference swap: the tick in progress keeps its own
        if previous is not None:
            previous.detach()
        self.heatmap_method = method
        self.heatmap_refused = None

        def undo() -> None:
            """Back to the method before with the explainer it had: no checks, so nothing can refuse it
            (switching back by name would check the memory again, and could fail)."""
            if previous is not None:
                previous.attach()
            current, self.runner.explainer = self.runner.explainer, previous
            if current is not None:
                current.detach()
            self.heatmap_method = previous_method

        return undo

    def _token_count(self) -> int:
        """Encoder tokens: latent, state, environment state, and each camera's backbone cells (stride 32)."""
        cells = sum(-(-h // 32) * -(-w // 32) for _, h, w in self.spec.cameras.values())
        return 1 + (1 if self.spec.state_dim else 0) + (1 if self.spec.env_state_dim else 0) + cells

    # ------------------------------------------------------------------ the tick

    def step(self, inputs: TickInputs, now_ns: int, clock: Callable[[], int] | None = None) -> TickOutput | Rejection:
        """One tick at ``now_ns`` (the node's clock); never raises for bad data.

        ``clock`` reads that clock again once the action is ready (the node passes its own): an
        action is published only if its observation is still younger than
        ``max_observation_age_s`` then, not only when the tick started. Without it (tests with a
        fake clock) the age is judged at ``now_ns`` alone.
        """
        start = time.perf_counter()
        self.health.tick_started()
        computed: TickOutput | None = None
        ready_ns = now_ns  # when the action was ready to go out
        try:
            outcome = self._step(inputs, now_ns, start)
            if isinstance(outcome, TickOutput) and self.config.publish_actions:
                computed = outcome
                ready_ns = clock() if clock is not None else now_ns
                outcome = self._still_fresh(outcome, ready_ns)
        except Exception as exc:  # noqa: BLE001 - a robot node keeps running; the reason is reported
            outcome = Rejection(f"internal error: {exc!r}")
        if isinstance(outcome, Rejection):
            self.health.reject(outcome.reason, computed.latency_s if computed is not None else None)
            self._forget_plan()
            stop = self._stop_point(now_ns)
            self._last_sent = None  # the first refusal after acting says where to stop; later ones nothing
            if stop is not None:
                outcome = replace(outcome, stop_at=stop)
            line = self.refusals.refused(outcome.reason, now_ns)
            if line is not None:
                self.warnings.append(line)
            return outcome
        line = self.refusals.acted()
        if line is not None:
            self.infos.append(line)
        if outcome.steering is not None:
            self.steering.steered_ticks += 1
        sent = self.config.publish_actions and not self._holds_all(outcome.held_outputs)
        # The plan a trajectory controller now executes, and when it went out (None: none went to it).
        to_controller = sent and JOINT_TRAJECTORY not in outcome.held_outputs
        self._last_sent = (outcome.plan, ready_ns) if to_controller else None
        self.health.acted(outcome.latency_s, sent, *outcome.status)
        return outcome

    def _still_fresh(self, out: TickOutput, ready_ns: int) -> TickOutput | Rejection:
        """``out``, or a Rejection when its observation went stale while the tick computed."""
        age_s = (ready_ns - out.stamp_ns) / 1e9
        if age_s <= self.config.max_observation_age_s:
            return out
        return Rejection(f"the action was ready {age_s:.3f} s after its observation (max_observation_age_s "
                         f"{round(self.config.max_observation_age_s, 3)}; this tick took {out.latency_s:.3f} s): use a "
                         f"cheaper heatmap_method, a GPU, or a larger max_observation_age_s")

    def stopping(self, now_ns: int) -> np.ndarray | None:
        """The node stops acting (Ctrl-C, SIGTERM): the point a controller executing the last plan sent
        should stop at, as after a refusal (see ``_stop_point``); None when there is nothing to stop.
        Only once: the plan counts as stopped afterwards."""
        stop = self._stop_point(now_ns)
        self._last_sent = None
        return stop

    def _stop_point(self, now_ns: int) -> np.ndarray | None:
        """After a refusal, where a controller executing the last plan sent should stop: the point it is
        heading to now (point i is due i + 1 periods after sending). Not the plan's first point: the
        arm may be many points further by the time a slow tick is refused, and going back to it within
        one period would be a fast reversal. None when no plan went to the controller, or it is held."""
        if self._last_sent is None:
            return None
        if self.controller_gate is not None and JOINT_TRAJECTORY in self.controller_gate.held():
            return None
        plan, sent_ns = self._last_sent
        heading = int((now_ns - sent_ns) // round(self.config.period_s * 1e9))
        return plan[min(max(heading, 0), len(plan) - 1)]

    def _holds_all(self, held: tuple[str, ...]) -> bool:
        """No action leaves the node when ``held`` (a tick's reading of the gate) is held."""
        return self.controller_gate is not None and self.controller_gate.holds_all(held)

    def _forget_plan(self) -> None:
        """After any refused tick, act again only on a chunk predicted from new inputs.

        Queue and chunk modes would otherwise go on executing the chunk predicted before the fault
        (and ensemble mode would average the new chunk with old ones): actions from an old
        observation, stamped with the new one's time.
        """
        self.runner.reset()
        self._chunk_steering = None
        self._chunk_frames = None

    def _step(self, inputs: TickInputs, now_ns: int, start: float) -> TickOutput | Rejection:
        stamps = self._fresh_stamps(inputs, now_ns)
        if isinstance(stamps, Rejection):
            return stamps
        observed = self._observation(inputs)
        if isinstance(observed, Rejection):
            return observed
        camera_rgb, observation = observed
        sae = self.sae  # one reference for the whole tick: a reload swaps it between ticks
        active = self.steering.current(now_ns, sae.loaded.sae_id if sae else None)
        if self._steer_hook is not None:
            self._steer_hook.arm(sae.loaded.sae if sae else None, active.steering if active else None)
        try:
            result = self.runner.step(observation)
        except (ObservationError, PolicyOutputError) as exc:
            return Rejection(str(exc))
        finally:
            if self._steer_hook is not None:
                self._steer_hook.disarm()
        steering = self._executed_steering(result, active)
        # Checked before the clamp, which would turn an overflow into the joint limit.
        action, plan = self.actions.in_robot_units(result.action), self.actions.in_robot_units(self._plan(result))
        if not (np.all(np.isfinite(action)) and np.all(np.isfinite(plan))):  # action_scale/offset overflowed
            return Rejection(f"the action in the robot's units is not finite ({action.tolist()}): check "
                             "action_scale and action_offset")
        action, plan = self.actions.clamped(action), self.actions.clamped(plan)
        method = self.heatmap_method
        (features, feature_maps), features_error = self._picture(
            "features", lambda: self._features(sae, result, observation.state, camera_rgb), lambda: (None, {}))
        (shown, shares, heatmaps), maps_error = self._picture("heatmap", lambda: self._heatmaps(
            inputs, camera_rgb, result, maps_for_tick(result, method, self.config.heatmap_queries,
                                                      label=self.relevance_target.label())),
            lambda: (self._heatmap_frames(inputs, camera_rgb), {}, {}))
        # Read once: the controller check may answer while this tick runs.
        held = self.controller_gate.held() if self.controller_gate is not None else ()
        capture = result.capture or result.executed_capture
        explanation_error = capture.explanation_error if capture is not None else None
        status = self._status(held, features, method, explanation_error, steering,
                              tuple(e for e in (features_error, maps_error) if e))
        latency = time.perf_counter() - start
        return TickOutput(
            stamp_ns=min(stamps.values()),  # an observation is as old as its oldest part
            action=action, action_names=self.actions.names,
            plan=plan, heatmap_method=method, shares=shares,
            heatmaps=heatmaps, camera_frame_ids={c: inputs.cameras[c].frame_id for c in self.cameras},
            camera_stamps_ns={c: inputs.cameras[c].effective_ns for c in self.cameras},  # unstamped: arrival
            features=features, feature_heatmaps=feature_maps, steering=steering, latency_s=latency,
            status=status, heatmap_stamps_ns=shown.stamps_ns, heatmap_frame_ids=shown.frame_ids,
            held_outputs=held)

    def _fresh_stamps(self, inputs: TickInputs, now_ns: int) -> dict[str, int] | Rejection:
        """Every input's stamp, or why an input is missing, stale, from the future or going back."""
        present = {**inputs.cameras, JOINT_STATES: inputs.joint_states, ENVIRONMENT_STATE: inputs.environment_state}
        stamps: dict[str, int] = {}
        for name in self.input_names:
            reading = present.get(name)
            if reading is None:
                return Rejection(f"no message yet on {self.topics[name]}")
            stamps[name] = reading.effective_ns
            headerless = isinstance(reading, VectorReading) and not reading.names  # Float32MultiArray
            if reading.stamp_ns == 0 and not headerless and name not in self._unstamped:
                self._unstamped.add(name)
                self.warnings.append(f"{self.topics[name]} arrives unstamped (header.stamp 0): its age is judged by "
                                     "when it arrived, which hides the driver's delay, and outputs carry that time; "
                                     "stamp it in the driver (warned once)")
        lacking = self.reader.lacking_joints(inputs.joint_states) if JOINT_STATES in stamps else None
        if lacking is not None:
            # A merge still waiting for a publisher's joints: its stamp must not be the one that the
            # completed (older) merge is compared with, or that looks like a clock jump back.
            del stamps[JOINT_STATES]
        verdict = self.gate.check(stamps, now_ns)
        self.health.set_ages(verdict.ages_s)
        if verdict.reason is None:
            return lacking if lacking is not None else stamps
        joints = inputs.joint_states
        if joints is not None and joints.oldest_joints and verdict.reason.startswith(f"{JOINT_STATES} is") \
                and " old (max_observation_age_s" in verdict.reason:
            # Merged from several publishers: the one that stopped is named, not only the topic.
            return Rejection(f"{verdict.reason}; not updated: joint(s) {', '.join(joints.oldest_joints)}")
        return Rejection(verdict.reason)

    def _observation(self, inputs: TickInputs) -> tuple[dict[str, np.ndarray], Observation] | Rejection:
        """The cameras' RGB frames and the policy's observation, or why the inputs cannot make one."""
        decoded = self.reader.images(inputs, self.cameras)
        if isinstance(decoded, Rejection):
            return decoded
        camera_rgb, images = decoded
        state = env_state = None
        if self.spec.state_dim:
            state = self.reader.state(inputs.joint_states)
            if isinstance(state, Rejection):
                return state
        if self.spec.env_state_dim:
            env_state = self.reader.environment_state(inputs.environment_state)
            if isinstance(env_state, Rejection):
                return env_state
        return camera_rgb, Observation(images, state, env_state)

    def _features(self, sae: LiveSae | None, result, state: np.ndarray | None, camera_rgb: dict[str, np.ndarray]
                  ) -> tuple[FeaturesOutput | None, dict[tuple[int, str], np.ndarray]]:
        """The SAE's features of this forward pass, and the overlays of the features asked for."""
        cap = result.capture
        if sae is None or cap is None or cap.encoder_output is None:
            return None, {}
        features = sae.encode(cap.encoder_output[0], self.config.features_top_n, cap.layout, state,
                              cap.encoder_input_at(0))
        feature_maps = {}
        for feature in self.config.feature_heatmaps:
            grids = sae.feature_grids(features.frame, cap.layout, feature)
            for cam in self.heatmap_cameras:
                feature_maps[(feature, cam)] = overlay(camera_rgb[cam], grids[cam], alpha=self.config.heatmap_alpha,
                                                       colormap=self.config.heatmap_colormap)
        return features, feature_maps

    def _picture(self, what: str, make: Callable[[], Any], fallback: Callable[[], Any]) -> tuple[Any, str | None]:
        """``make()``, or ``fallback()`` and why not: a picture that cannot be made never stops the
        action it explains (the action is already computed; /diagnostics says what is missing)."""
        try:
            return make(), None
        except Exception as exc:  # noqa: BLE001 - any failure of the interpretation, not of the policy
            why = f"no {what} this tick: {exc!r}"
            if (what, type(exc)) not in self._picture_failures:  # the log once per kind; /diagnostics each tick
                self._picture_failures.add((what, type(exc)))
                self.warnings.append(f"{why} (the action goes out as computed; said once)")
            return fallback(), why

    def _heatmap_frames(self, inputs: TickInputs, camera_rgb: dict[str, np.ndarray]) -> _Frames:
        """This tick's frames of the cameras shown with heatmaps, with their stamps and frame ids."""
        return _Frames({c: camera_rgb[c] for c in self.heatmap_cameras},
                       {c: inputs.cameras[c].effective_ns for c in self.heatmap_cameras},
                       {c: inputs.cameras[c].frame_id for c in self.heatmap_cameras})

    def _heatmaps(self, inputs: TickInputs, camera_rgb: dict[str, np.ndarray], result, maps
                  ) -> tuple[_Frames, dict[str, float], dict[str, np.ndarray]]:
        """The frames the maps explain (this tick's, or their chunk's), the maps' shares and overlays."""
        frames = self._heatmap_frames(inputs, camera_rgb)
        if result.capture is not None and result.executed_capture is result.capture:
            self._chunk_frames = frames  # this forward pass made the chunk that later ticks execute
        shown = frames if maps is None or maps.fresh or self._chunk_frames is None else self._chunk_frames
        if maps is None:
            return shown, {}, {}
        heatmaps = {}
        if self.heatmap_cameras:
            scaled = normalize({c: maps.grids[c] for c in self.heatmap_cameras}, self.config.normalization)
            heatmaps = {c: overlay(shown.rgb[c], scaled[c], alpha=self.config.heatmap_alpha,
                                   colormap=self.config.heatmap_colormap) for c in self.heatmap_cameras}
        return shown, maps.shares, heatmaps

    def _status(self, held: tuple[str, ...], features: FeaturesOutput | None, method: str,
                explanation_error: str | None, steering: ActiveSteering | None,
                picture_errors: tuple[str, ...] = ()) -> tuple[Level, str]:
        """What /diagnostics says after an accepted tick: acting or not, and every warning about it."""
        level, message = Level.OK, ("observe-only: interpreting, not acting" if not self.config.publish_actions
                                    else "holding actions" if self._holds_all(held) else "publishing actions")
        if features is not None and features.is_ood:
            # The action still goes out (the policy is unchanged); the operator is told the scene looks unfamiliar.
            level = Level.WARN
            message += f"; out of distribution: {features.ood_reason()}"
        if features is not None and features.cameras_disagree:
            # Beside is_ood, not in it: the cameras read a robot state the joints do not report.
            level = Level.WARN
            message += f"; {features.disagreement()}"
        if method in GRADIENT_LIVE_METHODS and explanation_error:
            # The action went out as always; only the picture is missing this tick.
            level = Level.WARN
            message += f"; no heatmap this tick: {explanation_error}"
        for error in picture_errors:  # as above: the action went out, a picture is missing
            level, message = Level.WARN, f"{message}; {error}"
        if steering is not None:
            # The robot is not running the policy it was trained as: nobody should miss that. No time
            # left here: in queue and chunk modes this is the executing chunk's steering, as it was
            # when predicted (the `steering` value of /diagnostics says what is in force now).
            level, message = Level.WARN, f"{message}; STEERED: {steering.steering.describe()}"
        return level, message

    def _executed_steering(self, result, active: ActiveSteering | None) -> ActiveSteering | None:
        """The steering behind the executed action: this forward's, or in queue/chunk modes its chunk's."""
        if self.runner.mode not in ("queue", "chunk"):
            return active if result.ran_model else None
        if result.ran_model and result.executed_query == 0:  # a new chunk starts executing
            self._chunk_steering = active
        return self._chunk_steering

    def _plan(self, result) -> np.ndarray:
        """This tick's action followed by what the policy plans to do next, one control period apart."""
        if self.runner.mode in ("queue", "chunk"):  # exactly what will be executed if nothing changes
            return np.concatenate([result.action[None], self.runner.queued_actions()])
        if result.chunk is not None:  # ensemble/replan: the rest of this tick's chunk
            return np.concatenate([result.action[None], result.chunk[result.executed_query + 1:]])
        return result.action[None]

    # ------------------------------------------------------------------ reporting

    def diagnostics(self, now_ns: int) -> Diagnostics:
        """What /diagnostics says now: status, counters, latencies, input ages and rates, SAE state."""
        stats = self.runner.stats
        lat = stats.latency_summary()
        report = self.health.report()
        sae = self.sae
        values = {
            "ticks": report.ticks, "actions_published": report.actions, "skipped_ticks": report.skipped,
            "skipped_since_last": report.skipped_since_last,
            "rejected_ticks": report.rejected, "forwards": stats.forwards, "wasted_forwards": stats.wasted_forwards,
            # latency_*: the whole tick (conversion, policy, heatmaps); policy_*: the core runner alone.
            "latency_mean_ms": f"{report.tick_mean_ms:.1f}", "latency_p99_ms": f"{report.tick_p99_ms:.1f}",
            "policy_mean_ms": f"{lat['mean_ms']:.1f}", "policy_p99_ms": f"{lat['p99_ms']:.1f}",
            "mode": self.runner.mode, "device": self.runner.device, "publish_actions": self.config.publish_actions,
            "heatmap_method": self.heatmap_method + (f" (explains {self.relevance_target.label()})"
                                                     if self.heatmap_method in GRADIENT_LIVE_METHODS else ""),
            "action_output": ",".join(self.config.action_output),
            "steering": (lambda a: a.describe() if a else "off")(
                self.steering.current(now_ns, sae.loaded.sae_id if sae else None)),
            "steered_ticks": self.steering.steered_ticks,
            **{f"age_{k}_s": f"{v:.3f}" for k, v in report.ages_s.items()},
            **{f"rate_{k}_hz": f"{v:.1f}" for k, v in self.gate.rates_hz(now_ns).items()},
            "rejections_since_last": report.rejections_since_last,
            **({"unstamped_inputs": ", ".join(sorted(self._unstamped))} if self._unstamped else {}),
            **(sae.diagnostics() if sae else {}),
        }
        level, message = report.level, report.message
        problem = sae.file_problem() if sae is not None else None
        if problem:  # not a reason to stop acting, but the operator must know, also beside an OOD warning
            values["sae_file"] = problem
            level, message = max(level, Level.WARN), f"{message}; {problem}"
            if problem != self._sae_file_problem_said:
                self.warnings.append(problem)  # and in the log, once per change
        self._sae_file_problem_said = problem
        score_problem = sae.score_problem if sae is not None else None
        if self.heatmap_refused:
            values["heatmap_method_refused"] = self.heatmap_refused
        if score_problem and level == Level.OK:  # is_ood fell back to the reconstruction error
            level, message = Level.WARN, f"{message}; {score_problem}"
        camera_problem = sae.camera_state_problem if sae is not None else None
        if camera_problem and level == Level.OK:  # calibrated for it, yet no camera-state score this tick
            level, message = Level.WARN, f"{message}; {camera_problem}"
        gate = self.controller_gate
        if gate is not None:
            verdict = gate.verdict  # one reading: the problem and whether it was answered belong together
            values["controller"] = verdict.problem or f"{gate.controller}: joints match"
            if verdict.problem:  # joints that do not match are an error; no answer yet is a warning
                level = max(level, Level.ERROR if verdict.verified else Level.WARN)
                message = f"{message}; not sending to the controller: {verdict.problem}"
        return Diagnostics(level, message, {k: str(v) for k, v in values.items()}, str(self.runner.loaded.path),
                           report.pace)

    def close(self) -> None:
        if self.runner.explainer is not None:
            self.runner.explainer.detach()
            self.runner.explainer = None
        if self._steer_hook is not None:
            self._steer_hook.remove()
        self.runner.close()

