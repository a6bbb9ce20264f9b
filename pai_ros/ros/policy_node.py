"""``policy_node``: run an ACT policy every control tick; publish actions, heatmaps, features and health.

A thin adapter around :class:`pai_ros.live.LiveTick` (the ROS-free tick: freshness, checks,
forward pass, clamping, maps, features). Subscribes (relative names, remappable): one image
topic per camera (``sensor_msgs/Image``, or ``CompressedImage`` with ``:compressed`` in
``cameras``), ``joint_states``, and for policies with an environment state
``environment_state``. Publishes, stamped with the observation time: the action on the outputs
``action_output`` names (``action`` JointState, ``action_trajectory`` JointTrajectory,
``action_commands`` Float64MultiArray), ``attention/<camera>/heatmap`` (rgb8 overlay on the
frame it explains, with its header), ``attention/shares``, with an SAE ``features`` (FeatureActivations) and
``features/feature_<F>/<camera>/heatmap``, ``/diagnostics``. Callbacks keep each input's latest message
(joint_states merged by joint name); a timer at the control rate hands a tick to one worker thread,
and a tick due while one is busy is skipped and counted, never queued."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float32MultiArray
from std_srvs.srv import Trigger

from pai_ros.errors import UserError
from pai_ros.live import PARAMS, RUN_TIME_PARAMETERS, LiveConfig, LiveTick, TickInputs, TickOutput, reconfigure
from pai_ros.live.controllers import ControllerGate
from pai_ros.live.inputs import ENVIRONMENT_STATE, JOINT_STATES
from pai_ros.msg import FeatureActivations
from pai_ros.policy.loading import describe_checkpoint
from pai_ros.ros import topics
from pai_ros.ros.action_outputs import RELIABLE, ActionOutputs
from pai_ros.ros.controller_check import ControllerCheck
from pai_ros.ros.lifecycle import run_node
from pai_ros.ros.messages import (
    ImageDecoder,
    camera_frame,
    diagnostic_array,
    header,
    joint_reading,
    joint_state,
    live_feature_activations,
    mark_steering,
    rgb_image,
    status_name,
    to_stamp,
    vector_reading,
)
from pai_ros.ros.names import resolved_service, resolved_topic
from pai_ros.ros.params import declare
from pai_ros.ros.sim_time import SimClockWatch
from pai_ros.ros.topic_types import InputTypeCheck
from pai_ros.srv import SteerFeatures

__all__ = ["PARAMS", "PolicyNode", "main"]


class PolicyNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("policy_node", **node_kwargs)
        self.config = LiveConfig.from_parameters(declare(self, PARAMS))
        self.live, notes = LiveTick.create(self.config, self._resolve_input_topic)
        for note in notes:
            self.get_logger().warning(note)
        self.decoder = ImageDecoder()
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[Any, int]] = {}  # input -> (message, receive time ns)
        self.input_types = InputTypeCheck(self)
        for cam in self.live.cameras.values():
            self._subscribe(CompressedImage if cam.compressed else Image, cam.topic, cam.name)
        if self.live.spec.state_dim:
            self._subscribe(JointState, self.config.joint_states_topic, JOINT_STATES)
        if self.live.spec.env_state_dim:
            env_type = JointState if self.config.environment_state_type == "joint_state" else Float32MultiArray
            self._subscribe(env_type, self.config.environment_state_topic, ENVIRONMENT_STATE)
        self.actions = ActionOutputs(self, self.config, self.live.actions.names)
        self.shares_pub = self.create_publisher(JointState, topics.ATTENTION_SHARES, RELIABLE)
        self.heatmap_pubs = {c: self.create_publisher(Image, topics.HEATMAP.format(camera=c), RELIABLE)
                             for c in self.live.heatmap_cameras}
        self.features_pub = (self.create_publisher(FeatureActivations, topics.FEATURES, RELIABLE)
                             if self.live.sae else None)
        self.feature_heatmap_pubs = {
            (f, c): self.create_publisher(Image, topics.FEATURE_HEATMAP.format(feature=f, camera=c), RELIABLE)
            for f in self.config.feature_heatmaps for c in self.live.heatmap_cameras}
        self.diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, RELIABLE)
        self.clock_watch = SimClockWatch(self, self.diag_pub)
        gate = ControllerGate(self.config.controller, tuple(self.actions.pubs))
        self.controller: ControllerCheck | None = None  # kept: its timer asks until the controller answers
        if self.config.controller and gate.checked_outputs:
            resolved_service(self, f"{self.config.controller.rstrip('/')}/get_parameters", "controller")
            self.live.controller_gate = gate
            self.controller = ControllerCheck(self, gate, list(self.live.actions.names))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_service(SteerFeatures, "~/steer", self._on_steer)
        self.create_service(Trigger, "~/steer_clear", self._on_steer_clear)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pai_policy")
        self._busy: Future | None = None
        self._closing = False
        self._tick_timer = self.create_timer(self.config.period_s, self._on_tick)
        self.create_timer(self.config.diagnostics_period_s, self._publish_diagnostics)
        live = self.live
        inputs = ", ".join(f"{n}<-{live.topics[n]}" + (" (JPEG)" if n in live.cameras and live.cameras[n].compressed
                                                        else "") for n in live.input_names)
        self.get_logger().info(
            f"ready: {describe_checkpoint(live.runner.loaded.path)} on {live.runner.device}, mode {live.runner.mode}, "
            f"{self.config.control_rate_hz:g} Hz, inputs {inputs}, images via {self.decoder.backend}, actions on "
            f"{self.actions.describe()}, heatmaps: {live.heatmap_method}, "
            f"{live.sae.describe() if live.sae else 'no SAE'}")

    def _resolve_input_topic(self, topic: str) -> str:
        parameter = {self.config.joint_states_topic: "joint_states_topic",
                     self.config.environment_state_topic: "environment_state_topic"}.get(topic, "cameras")
        return resolved_topic(self, topic, parameter)

    def _subscribe(self, msg_type: Any, topic: str, name: str) -> None:
        self.input_types.add(name, topic, msg_type)
        self.create_subscription(msg_type, topic, lambda m: self._store(name, m), qos_profile_sensor_data)

    def _store(self, name: str, msg: Any) -> None:
        now = self.get_clock().now().nanoseconds
        with self._lock:
            self._latest[name] = (msg, now)
            if name == JOINT_STATES:  # merged by joint name: arm and gripper drivers may publish apart
                self.live.joints.add(joint_reading(msg, now))
        self.live.received(name)

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        """``sae_path`` reloads the SAE, ``heatmap_method`` switches the maps: all or nothing."""
        try:
            done = reconfigure(self.live, [(p.name, p.value) for p in params if p.name in RUN_TIME_PARAMETERS])
        except UserError as exc:
            self.get_logger().error(str(exc))
            return SetParametersResult(successful=False, reason=str(exc))
        for line in done:
            self.get_logger().info(line)
        return SetParametersResult(successful=True)

    def _on_steer(self, request: Any, response: Any) -> Any:
        try:
            response.message = self.live.steer(list(request.feature_indices), request.mode, list(request.values),
                                               request.duration_s, self.get_clock().now().nanoseconds)
            response.accepted = True
            self.get_logger().warning(response.message)
        except UserError as exc:
            response.accepted, response.message = False, str(exc)
        return response

    def _on_steer_clear(self, _request: Any, response: Any) -> Any:
        was = self.live.steering.clear()
        response.success, response.message = True, "steering cleared" if was else "no steering was in force"
        self.get_logger().info(response.message)
        return response

    # ------------------------------------------------------------------ ticks

    def _on_tick(self) -> None:
        if self._closing:
            return
        if self._busy is not None and not self._busy.done():
            self.live.health.skipped()  # never queue ticks up: the next one reads fresher inputs
            return
        self._busy = self._worker.submit(self._tick)

    def _tick(self) -> None:
        with self._lock:
            latest, joints = dict(self._latest), self.live.joints.reading()
        env = vector_reading(*latest[ENVIRONMENT_STATE]) if ENVIRONMENT_STATE in latest else None
        inputs = TickInputs({n: camera_frame(*latest[n], self.decoder) for n in self.live.cameras if n in latest},
                            joints, env)
        now = lambda: self.get_clock().now().nanoseconds  # noqa: E731 - read again when the action is ready
        out = self.live.step(inputs, now(), clock=now)
        if not self.context.ok():  # Ctrl-C shut the context down mid-tick: nothing can be sent or logged now
            return
        while self.live.warnings:
            self.get_logger().warning(self.live.warnings.pop(0))
        while self.live.infos:
            self.get_logger().info(self.live.infos.pop(0))
        try:
            if isinstance(out, TickOutput):
                self._publish(out)
            elif out.stop_at is not None:
                self.actions.send_stop(out.stop_at, now())
        except Exception as exc:  # noqa: BLE001 - keep the node alive; say what failed
            if self.context.ok():  # not the shutdown racing this tick
                self.get_logger().error(f"publishing the tick's outputs failed: {exc!r}")

    def _publish(self, out: TickOutput) -> None:
        self.actions.publish(out)
        stamp = to_stamp(out.stamp_ns)
        if out.shares:
            self.shares_pub.publish(joint_state(list(out.shares), list(out.shares.values()), stamp))
        stamps, ids = out.heatmap_stamps_ns, out.heatmap_frame_ids  # the explained frame's: RViz lines them up
        for cam, rgb in out.heatmaps.items():
            self.heatmap_pubs[cam].publish(rgb_image(rgb, header(stamps[cam], ids[cam])))
        if out.features is not None and self.features_pub is not None:
            self.features_pub.publish(mark_steering(live_feature_activations(out.features, stamp), out.steering))
        for (feature, cam), rgb in out.feature_heatmaps.items():
            msg = rgb_image(rgb, header(out.camera_stamps_ns[cam], out.camera_frame_ids[cam]))
            self.feature_heatmap_pubs[(feature, cam)].publish(msg)

    def _publish_diagnostics(self) -> None:
        now = self.get_clock().now()
        with self._lock:
            heard = {name: received_ns for name, (_, received_ns) in self._latest.items()}
        for line in self.input_types.check(heard, now.nanoseconds, self.config.max_observation_age_s):
            self.get_logger().warning(line)
        d = self.live.diagnostics(now.nanoseconds)
        self.diag_pub.publish(diagnostic_array(status_name(self, "policy"), d.level, d.message, d.values,
                                               d.hardware_id, now.to_msg(), [(status_name(self, "pace"), *d.pace)]))

    def shutdown(self) -> None:
        """Stop ticking, wait for the tick in progress, and tell a trajectory controller executing a plan
        (``trajectory_points:=chunk``) where to stop. The node may keep spinning afterwards."""
        self._closing = True
        self._tick_timer.cancel()
        self._worker.shutdown(wait=True, cancel_futures=True)
        now_ns = self.get_clock().now().nanoseconds
        stop = self.live.stopping(now_ns)
        if stop is not None and self.context.ok() and self.actions.send_stop(stop, now_ns):
            # Delivered before the process goes, or the controller plays out the plan.
            acked = self.actions.stop_delivered(1.0)
            self.get_logger().info("stopping: told the trajectory controller to stop at the point it was heading "
                                   f"to{'' if acked else ' (not acknowledged within 1 s)'}")
        self.live.close()


def main(args: list[str] | None = None) -> int:
    return run_node("policy_node", PolicyNode, args, params=PARAMS, doc=__doc__, publishes_when_stopped=True)


if __name__ == "__main__":
    sys.exit(main())
