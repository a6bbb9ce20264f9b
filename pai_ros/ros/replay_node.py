"""``replay_node``: play LeRobotDataset episodes as ROS topics at the dataset's frame rate.

Publishes, per frame: one ``sensor_msgs/Image`` (rgb8, sensor QoS) per camera on
``camera/<name>/image_raw`` (or ``camera/<name>/image_raw/compressed`` as JPEG
``CompressedImage`` with ``compressed: true``), ``joint_states`` (``sensor_msgs/JointState``
with the dataset's state names), for datasets with ``observation.environment_state`` an
``environment_state`` topic (``std_msgs/Float32MultiArray``, or a ``JointState`` of named values
with ``environment_state_type: joint_state``), and ``recorded_action`` (the action recorded in
the dataset, so predicted and recorded actions can be compared live). All messages of a frame share one
stamp (now), and each camera's frame_id is ``<name>_camera``. Frames are decoded ahead in a
background thread so that the timer never waits for video decoding. At the end it stops
cleanly (exit 0), or loops; a dataset that cannot be decoded ends it with one line and exit 1.
``/diagnostics`` (1 Hz) says where the replay is, whether decoding keeps up, and why it failed.
"""

from __future__ import annotations

import queue
import sys
import threading
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float32MultiArray

from pai_ros.data.episodes import DatasetFrame, camera_names, check_episodes, iter_episode, read_info, value_names
from pai_ros.data.replay_schedule import ReplaySchedule
from pai_ros.data.source import resolve_dataset_root
from pai_ros.diagnostic_level import Level
from pai_ros.errors import UserError
from pai_ros.imaging.convert import rgb_to_jpeg
from pai_ros.ros import topics
from pai_ros.ros.lifecycle import run_node
from pai_ros.ros.messages import camera_header, diagnostic_array, joint_state, rgb_image, status_name
from pai_ros.ros.params import Param, declare
from pai_ros.ros.sim_time import SimClockWatch

PARAMS = [
    Param("dataset_root", "", "LeRobotDataset v3.0 directory to replay (or set dataset_repo_id)", read_only=True),
    Param("dataset_repo_id", "", "hub dataset id (ORG/NAME) to replay instead of dataset_root, read from this "
          "machine only: LeRobot's HF_LEROBOT_HOME/ORG/NAME, else the Hugging Face cache", read_only=True),
    Param("episodes", [], "episode indices to play in order (empty: all)", array_type="integer", read_only=True),
    Param("loop", False, "start again after the last episode instead of exiting", read_only=True),
    Param("rate_factor", 1.0, "real-time factor: 2.0 plays twice as fast as recorded", min=0.01, max=100.0,
          read_only=True),
    Param("compressed", False, "publish JPEG CompressedImage on camera/<name>/image_raw/compressed instead of raw",
          read_only=True),
    Param("jpeg_quality", 90, "JPEG quality with compressed: true", min=1, max=100, read_only=True),
    Param("start_delay_s", 0.0, "wait this long before the first frame (lets subscribers connect)", min=0.0,
          max=60.0, read_only=True),
    Param("wait_for_subscribers", 0, "after start_delay_s, also wait until every published topic has at least "
          "this many subscribers (e.g. a recorder that must not miss the first frames; 0: do not wait)",
          min=0, max=1000, read_only=True),
    Param("environment_state_type", "float32_multi_array", "message type of environment_state (datasets with "
          "observation.environment_state): float32_multi_array or joint_state (stamped, named values)",
          read_only=True),
]
ENV_STATE_TYPES = ("float32_multi_array", "joint_state")
_END = object()
# Counting subscribers is cheap but not free, and discovery under load takes seconds: 10 looks a second.
_SUBSCRIBER_POLL_NS = 100_000_000


class ReplayNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("replay_node", **node_kwargs)
        self.p = declare(self, PARAMS)
        if not self.p["dataset_root"] and not self.p["dataset_repo_id"]:
            raise UserError("parameter dataset_root (a LeRobotDataset v3.0 directory) or dataset_repo_id "
                            "(a hub dataset id in the local cache) is required")
        if self.p["dataset_root"] and self.p["dataset_repo_id"]:
            raise UserError("set dataset_root or dataset_repo_id, not both")
        self.root = resolve_dataset_root(self.p["dataset_root"], self.p["dataset_repo_id"])
        self.info = read_info(self.root)
        total = int(self.info["total_episodes"])
        self.episodes = self.p["episodes"] or list(range(total))
        check_episodes(self.info, self.episodes, self.root)
        feats = self.info["features"]
        self.cameras = camera_names(self.info)
        self.state_names = value_names(feats.get("observation.state"), "joint")
        self.action_names = value_names(feats.get("action"), "action")
        self.env_state_names = value_names(feats.get("observation.environment_state"), "env")
        if self.p["environment_state_type"] not in ENV_STATE_TYPES:
            raise UserError(f"environment_state_type '{self.p['environment_state_type']}' is not one of "
                            f"{', '.join(ENV_STATE_TYPES)}")
        self.fps = float(self.info["fps"])

        img_type = CompressedImage if self.p["compressed"] else Image
        camera_topic = topics.CAMERA_COMPRESSED if self.p["compressed"] else topics.CAMERA_IMAGE
        self.cam_pubs = {c: self.create_publisher(img_type, camera_topic.format(camera=c), qos_profile_sensor_data)
                         for c in self.cameras}
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.state_pub = self.create_publisher(JointState, topics.JOINT_STATES, reliable)
        self.action_pub = self.create_publisher(JointState, topics.RECORDED_ACTION, reliable)
        env_type = JointState if self.p["environment_state_type"] == "joint_state" else Float32MultiArray
        self.env_pub = (self.create_publisher(env_type, topics.ENVIRONMENT_STATE, reliable)
                        if self.env_state_names else None)

        self.frames: queue.Queue = queue.Queue(maxsize=int(2 * self.fps) + 2)
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read_frames, name="pai_replay_reader", daemon=True)
        self._reader.start()
        self.published = 0
        self.finished = False
        self.failure: str | None = None  # why the replay stopped early (the process then exits 1)
        self.behind = 0  # timer ticks at which a due frame was not decoded yet
        self.schedule = ReplaySchedule(round(1e9 / (self.fps * self.p["rate_factor"])))
        self._behind_reported = 0
        self.episode: int | None = None
        self.diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, reliable)
        self.clock_watch = SimClockWatch(self, self.diag_pub)
        self.create_timer(1.0, self._publish_diagnostics)
        self._timer = None
        self._waiting_said = False
        self._start = self.create_timer(max(self.p["start_delay_s"], 1e-3), self._begin)
        self.get_logger().info(
            f"replaying {self.root} episodes {self.episodes} at {self.fps * self.p['rate_factor']:.1f} Hz "
            f"(dataset {self.fps:g} fps x {self.p['rate_factor']}), cameras {', '.join(self.cameras)}"
            f"{' (JPEG)' if self.p['compressed'] else ''}")

    def _begin(self) -> None:
        self.clock_watch.time_runs()  # this timer runs on the node's clock: simulated time has started
        wanted = self.p["wait_for_subscribers"]
        lacking = self._lacking_subscribers()
        if lacking:
            if not self._waiting_said:  # said once: a topic nobody subscribes to would wait silently for ever
                self._waiting_said = True
                self.get_logger().info(f"waiting for {wanted} subscriber(s) on {', '.join(lacking)} "
                                       "(wait_for_subscribers) before replaying")
            if self._start.timer_period_ns != _SUBSCRIBER_POLL_NS:  # the start delay (by default 1 ms) is over
                self._start.cancel()
                self._start = self.create_timer(_SUBSCRIBER_POLL_NS / 1e9, self._begin)
            return  # the start timer fires again; discovery under load can take seconds
        self._start.cancel()
        self._timer = self.create_timer(self.schedule.period_ns / 1e9, self._publish_due)

    def _lacking_subscribers(self) -> list[str]:
        """The published topics with fewer than ``wait_for_subscribers`` subscribers (none when it is 0)."""
        wanted = self.p["wait_for_subscribers"]
        pubs = [*self.cam_pubs.values(), self.state_pub, self.action_pub, *([self.env_pub] if self.env_pub else [])]
        return [pub.topic_name for pub in pubs if pub.get_subscription_count() < wanted] if wanted else []

    def _read_frames(self) -> None:
        try:
            while not self._stop.is_set():
                for ep in self.episodes:
                    for frame in iter_episode(self.root, ep, self.info):
                        while not self._stop.is_set():
                            try:
                                self.frames.put(frame, timeout=0.2)
                                break
                            except queue.Full:
                                continue
                        if self._stop.is_set():
                            return
                if not self.p["loop"]:
                    break
        except Exception as exc:  # decoding failed: end the replay, and the process with an error
            self.failure = f"cannot read {self.root}: {exc}"
        self.frames.put(_END)

    def _publish_due(self) -> None:
        """The frames whose time has come (see ReplaySchedule: late ones catch up)."""
        now_ns = self.get_clock().now().nanoseconds
        for _ in range(self.schedule.due(now_ns)):
            try:
                frame = self.frames.get_nowait()
            except queue.Empty:
                if self.schedule.start_ns is not None:  # not the decoder starting up
                    self.behind += 1
                return  # decoding is behind: the frame goes out on a later tick rather than block the executor
            if frame is _END:
                if self.failure is None:
                    self.get_logger().info(f"replay finished: {self.published} frames published")
                self.finished = True
                self._publish_diagnostics()  # the last word: finished, or why not
                self._timer.cancel()
                return
            self._publish(frame)
            self.schedule.sent_one(now_ns)

    def _publish(self, frame: DatasetFrame) -> None:
        stamp = self.get_clock().now().to_msg()
        for cam, pub in self.cam_pubs.items():
            rgb = frame.images[cam]
            if self.p["compressed"]:
                pub.publish(CompressedImage(header=camera_header(stamp, cam), format="jpeg",
                                            data=rgb_to_jpeg(rgb, self.p["jpeg_quality"])))
            else:
                pub.publish(rgb_image(rgb, camera_header(stamp, cam)))
        if frame.state is not None:
            self.state_pub.publish(joint_state(self.state_names, frame.state, stamp))
        if frame.action is not None:
            self.action_pub.publish(joint_state(self.action_names, frame.action, stamp))
        if self.env_pub is not None and frame.env_state is not None:
            if self.p["environment_state_type"] == "joint_state":
                self.env_pub.publish(joint_state(self.env_state_names, frame.env_state, stamp))
            else:
                self.env_pub.publish(Float32MultiArray(data=[float(v) for v in frame.env_state]))
        self.published += 1
        self.episode = frame.episode_index

    def _publish_diagnostics(self) -> None:
        """Where the replay is, whether decoding keeps up, and why it stopped (ERROR) if it failed."""
        behind, self._behind_reported = self.behind - self._behind_reported, self.behind
        if self.failure is not None:
            level, message = Level.ERROR, f"replay failed after {self.published} frames: {self.failure}"
        elif self.finished:
            level, message = Level.OK, f"replay finished: {self.published} frames published"
        elif self._timer is None:
            level, message = Level.OK, "waiting to start (start_delay_s, wait_for_subscribers)"
            lacking = self._lacking_subscribers()
            if lacking:
                message += f": fewer than {self.p['wait_for_subscribers']} subscriber(s) on {', '.join(lacking)}"
        elif behind:
            level, message = Level.WARN, (f"decoding falls behind: a frame was late {behind} time(s) since the last "
                                          "report (lower rate_factor)")
        else:
            level, message = Level.OK, f"replaying episode {self.episode}" if self.episode is not None else "replaying"
        values = {"frames_published": str(self.published), "frames_late": str(self.behind),
                  "episodes": " ".join(map(str, self.episodes)), "rate_factor": str(self.p["rate_factor"])}
        self.diag_pub.publish(diagnostic_array(status_name(self, "replay"), level, message, values, str(self.root),
                                               self.get_clock().now().to_msg()))

    def shutdown(self) -> None:
        """Stop the reader and wait for it: an interpreter exiting under a thread that is inside
        a native video decoder aborts ("terminate called without an active exception")."""
        self._stop.set()
        self._reader.join(timeout=10.0)


def _spin_until_finished(node: ReplayNode) -> None:
    while rclpy.ok() and not node.finished:
        rclpy.spin_once(node, timeout_sec=0.1)
    # The last /diagnostics word (finished, or why not) must reach its subscribers before the process goes.
    node.diag_pub.wait_for_all_acked(Duration(seconds=2.0))
    if node.failure is not None:
        raise UserError(f"replay failed after {node.published} frames: {node.failure}")


def main(args: list[str] | None = None) -> int:
    return run_node("replay_node", ReplayNode, args, spin=_spin_until_finished, params=PARAMS, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
