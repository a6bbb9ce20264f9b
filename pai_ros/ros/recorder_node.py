"""``recorder_node``: record the policy's inputs and outputs into a rosbag2 (MCAP) bag.

Why not ``ros2 bag record``: it is not available without a ROS distro (the wheels have no
rosbag2), and this node knows which topics matter (its parameters name them relative to its
namespace, so remapping and namespacing work as for the other pai_ros nodes).

A thin adapter: it subscribes with ``raw=True`` (serialised CDR bytes, never deserialised) and
hands every message with its receive time (node clock, ns) to
:class:`pai_ros.bags.writer.BagWriter`, which owns the bag format; its counters, status and
closing summary are a :class:`pai_ros.bags.ledger.RecordingLedger`'s.

Discovery: a timer polls the ROS graph every ``discovery_period_s``; each configured topic is
subscribed as soon as it has a publisher, so topics that appear late are recorded from then
on (and added to the bag then).

QoS, like ``ros2 bag record``: the subscription is RELIABLE when every publisher offers
reliable (zero loss from reliable publishers, e.g. joint states, actions, features), BEST_EFFORT
otherwise (cameras publish with the sensor-data profile, which is best effort; a reliable
subscription would not match them at all); TRANSIENT_LOCAL only when every publisher offers it.
The publishers' QoS profiles are stored in the bag so that ``ros2 bag play`` offers them again.

Best-effort camera frames can be lost before any subscriber sees them: with Fast DDS defaults
(shared-memory segments of 512 KB), 480x640 rgb8 frames (921 KB) at 30 Hz lost about half on a
loaded 2-core machine, for this node and a bare rclpy subscriber alike, while a Fast DDS profile
with 32 MB shared-memory segments lost none (``bench/bench_recorder.py --transport shm32mb``).
The per-topic summary shows what arrived; that everything which arrived is written is this
node's job.

Crash safety: the bag is flushed to the OS every ``flush_period_s`` (default 1 s; see
:mod:`pai_ros.bags.writer`), so SIGKILL, an OOM kill or a crash loses at most the last
``flush_period_s`` of messages. Such a bag has no ``metadata.yaml`` and its last file has no
footer (it is still in ``OUT/OUT_k/``); ``pai bag recover OUT`` reads it up to its first damaged
byte and writes a complete bag ``OUT_recovered`` (``pai bag2parquet`` refuses the unfinished bag
with that hint).

Status: ``/diagnostics`` (name ``[<namespace>/]recorder_node: bag``, 1 Hz) says what is being recorded: OK
with the messages written so far and per topic received/written; WARN when a configured topic
has had no publisher for ``ABSENT_AFTER_S`` seconds (a typo would otherwise record nothing of it
all session), a topic cannot be recorded, or messages could not be written; ERROR after a write
error. Its last word, after the bag is closed (so not in the bag), is ``bag closed: ...`` or the
error. When ``/diagnostics`` itself is recorded (the default), these reports are in the bag
too, from the moment another node publishes there; the node's own publisher is not counted as
a publisher of that topic.

Write errors (disk full, I/O error): the first one stops recording for good. The file is cut
back to its last flushed byte (an exact, recoverable prefix), one ERROR line names the bag and
the cause (e.g. "no space left on device") and how many messages are on disk, the ERROR status
above is published at once, the per-topic summary gives received vs on-disk counts, and the node
exits with status 1 (a recorder that keeps running without recording would hide the fault; a
launch file's ``on_exit``/respawn sees the exit).

Shutdown: SIGINT and SIGTERM both stop recording cleanly: the discovery timer stops, messages
already received by DDS are drained (until quiet, at most 2 s), the bag is closed (readable by rosbags, the ``mcap``
library and ``ros2 bag``), a per-topic summary of received vs written messages is logged (any
difference as a WARN) and the exit status is 0. An existing ``output`` is never overwritten:
one ERROR line and exit status 1.
"""

from __future__ import annotations

import importlib
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from pai_ros.bags.errors import BagWriteError
from pai_ros.bags.ledger import ABSENT_AFTER_S, RecordingLedger, TopicTally
from pai_ros.bags.writer import COMPRESSIONS, BagWriter
from pai_ros.cli_help import print_help
from pai_ros.diagnostic_level import Level
from pai_ros.errors import UserError
from pai_ros.ros import topics
from pai_ros.ros.lifecycle import init_ros
from pai_ros.ros.messages import diagnostic_array, status_name
from pai_ros.ros.names import resolved_topic
from pai_ros.ros.node_help import help_requested, node_help
from pai_ros.ros.params import Param, declare
from pai_ros.ros.sim_time import SimClockWatch

DEFAULT_TOPICS = [topics.JOINT_STATES, topics.ACTION, topics.FEATURES, topics.DIAGNOSTICS, topics.ATTENTION_SHARES]
HEATMAP_PATTERN = topics.HEATMAP.format(camera="*")

PARAMS = [
    Param("output", "", "bag directory to create (required; an existing path is never overwritten)", read_only=True),
    Param("topics", list(DEFAULT_TOPICS), "topics to record; relative names resolve against the node namespace",
          array_type="string", read_only=True),
    Param("camera_topics", [], "camera image topics to record as well (sensor_msgs/Image or CompressedImage)",
          array_type="string", read_only=True),
    Param("record_heatmaps", False, f"also record every topic matching {HEATMAP_PATTERN} (the policy's overlays)",
          read_only=True),
    Param("compression", "none", "none, or zstd (MCAP chunk compression; playback needs no plugin)",
          read_only=True),
    Param("max_bag_size_mb", 0, "split into files of about this many MB of message data (0: one file)",
          min=0, max=10**7, read_only=True),
    Param("discovery_period_s", 0.5, "how often the ROS graph is checked for configured topics that appeared",
          min=0.01, max=60.0, read_only=True),
    Param("queue_depth", 100, "subscription queue depth (messages kept while the writer is busy)",
          min=1, max=100000, read_only=True),
    Param("flush_period_s", 1.0, "flush the bag to disk at least this often: a killed recorder loses at most "
          "this much (recover the rest with `pai bag recover`); 0: only when a 1 MiB chunk is full",
          min=0.0, max=3600.0, read_only=True),
]
DIAGNOSTICS_TOPIC = topics.DIAGNOSTICS
STATUS_PERIOD_S = 1.0


@dataclass
class _Subscribed:
    """One recorded topic: its counters (the ledger's) and its subscription."""

    tally: TopicTally
    subscription: Any = None
    matched: int = 0  # publishers matched at the last discovery round (a change is logged)


def _message_class(msgtype: str) -> Any:
    """'sensor_msgs/msg/Image' -> the sensor_msgs.msg.Image class (for the type support only)."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def _to_bag_qos(profile: Any) -> Any:
    """An rclpy QoSProfile as the rosbags Qos that metadata.yaml stores (same enum values)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    from pai_ros.timestamps import ns_to_sec_nanosec

    def t(duration: Any) -> QosTime:
        return QosTime(*ns_to_sec_nanosec(duration.nanoseconds))

    return Qos(QosHistory(int(profile.history)), int(profile.depth), QosReliability(int(profile.reliability)),
               QosDurability(int(profile.durability)), t(profile.deadline), t(profile.lifespan),
               QosLiveliness(int(profile.liveliness)), t(profile.liveliness_lease_duration),
               bool(profile.avoid_ros_namespace_conventions))


class RecorderNode(Node):
    """Subscribes to the configured topics as they appear and writes them into one bag."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("recorder_node", **node_kwargs)
        p = declare(self, PARAMS)
        if not p["output"]:
            raise UserError("parameter 'output' is required: the bag directory to create "
                            "(--ros-args -p output:=/path/to/bag)")
        if p["compression"] not in COMPRESSIONS:
            raise UserError(f"parameter 'compression' must be one of {', '.join(COMPRESSIONS)}, got {p['compression']!r}")
        self.queue_depth = int(p["queue_depth"])
        wanted = {self._resolve(t) for t in [*p["topics"], *p["camera_topics"]] if t}
        if not wanted and not p["record_heatmaps"]:
            raise UserError("nothing to record: topics and camera_topics are empty and record_heatmaps is false "
                            f"(the default topics: {', '.join(DEFAULT_TOPICS)})")
        self.heatmaps = (re.compile("^" + re.escape(self._resolve("attention")) + r"/[^/]+/heatmap$")
                         if p["record_heatmaps"] else None)
        try:
            self.writer = BagWriter(p["output"], compression=p["compression"], max_bag_size_mb=p["max_bag_size_mb"],
                                    flush_period_s=float(p["flush_period_s"]))
        except OSError as exc:
            raise UserError(f"cannot create the bag {p['output']}: {exc.strerror or exc}") from None
        self.output = str(self.writer.path)  # as written: ~ expanded
        self.ledger = RecordingLedger(self.output, wanted)
        self.diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC,
                                              QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        self.clock_watch = SimClockWatch(self, self.diag_pub)
        self.diag_listeners = 0
        period = float(p["flush_period_s"])
        self.flush_timer = self.create_timer(period, self._flush) if period > 0 else None
        self.recorded: dict[str, _Subscribed] = {}
        self.timer = self.create_timer(float(p["discovery_period_s"]), self.discover)
        self.status_timer = self.create_timer(STATUS_PERIOD_S, self.publish_status)
        what = sorted(wanted) + ([f"{self._resolve('attention')}/*/heatmap"] if self.heatmaps else [])
        self.get_logger().info(f"recording to {self.output}: {', '.join(what)}")
        self.discover()

    # ------------------------------------------------------------------ discovery

    def _resolve(self, name: str) -> str:
        # An invalid name could never be recorded: refuse it before a bag exists, like every bad parameter.
        return resolved_topic(self, name, "topics/camera_topics")

    @property
    def fatal(self) -> BagWriteError | None:
        """The first write error (recording stopped for good), or None."""
        return self.ledger.fatal

    def _wants(self, topic: str) -> bool:
        return topic in self.ledger.wanted or bool(self.heatmaps and self.heatmaps.match(topic))

    def _foreign_publishers(self, topic: str) -> list[Any]:
        """Publishers on ``topic`` other than this node (its own /diagnostics publisher)."""
        me = (self.get_name(), self.get_namespace())
        return [i for i in self.get_publishers_info_by_topic(topic) if (i.node_name, i.node_namespace) != me]

    def discover(self) -> None:
        """Subscribe to configured topics that now have publishers; report new matches."""
        for topic, types in self.get_topic_names_and_types():
            if self.ledger.known(topic) or not self._wants(topic):
                continue
            publishers = self._foreign_publishers(topic)
            if not publishers:
                continue  # only subscribers so far: the publishers' QoS is not known yet
            self._subscribe(topic, types, publishers)
        absent = self.ledger.newly_absent()
        if absent:
            self.get_logger().warning(
                f"no publisher on {', '.join(absent)} after {ABSENT_AFTER_S:g} s: nothing of it is recorded "
                "until one appears (a typo in topics? compare with `ros2 topic list`)")
        # Who would hear about a write error (a monitor must be subscribed before the fault).
        listeners = self.diag_pub.get_subscription_count() - (DIAGNOSTICS_TOPIC in self.recorded)
        if listeners != self.diag_listeners:
            self.diag_listeners = listeners
            self.get_logger().info(f"{listeners} subscriber(s) for status reports on {DIAGNOSTICS_TOPIC}")
        for topic, rec in self.recorded.items():
            count = rec.subscription.get_publisher_count() - (topic == DIAGNOSTICS_TOPIC)
            if count != rec.matched:
                rec.matched = count
                self.get_logger().info(f"matched {count} publisher(s) on {topic}")
                if rec.tally.reliable:
                    for info in self._foreign_publishers(topic):
                        if info.qos_profile.reliability != ReliabilityPolicy.RELIABLE:
                            self.get_logger().warning(
                                f"a best-effort publisher joined reliable-recorded {topic}; its messages "
                                "cannot be received (restart the recorder to record both)")
                            break

    def _subscribe(self, topic: str, types: list[str], publishers: list[Any]) -> None:
        msgtype = types[0]
        if len(types) > 1:
            self.get_logger().warning(f"{topic} has several types {types}; recording {msgtype} only")
        try:
            cls = _message_class(msgtype)
            self.writer.add_topic(topic, msgtype, [_to_bag_qos(i.qos_profile) for i in publishers])
        except BagWriteError as exc:  # the disk, not the topic (declaring it writes to the bag): stop as for a write
            self._on_write_error(exc)
            return
        except (ImportError, AttributeError, ValueError, UserError) as exc:
            self.ledger.refuse(topic)
            self.get_logger().error(f"cannot record {topic} [{msgtype}]: {exc}")
            return
        reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in publishers)
        latched = all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in publishers)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.queue_depth,
                         reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
        tally = TopicTally(topic, msgtype, reliable)
        subscription = self.create_subscription(cls, topic, lambda raw: self._on_message(tally, raw), qos, raw=True)
        self.ledger.record(tally)
        self.recorded[topic] = _Subscribed(tally, subscription)
        self.get_logger().info(f"subscribed to {topic} [{msgtype}] "
                               f"{'reliable' if reliable else 'best effort'}{', transient local' if latched else ''}")

    # ------------------------------------------------------------------ recording

    def _on_message(self, tally: TopicTally, raw: bytes) -> None:
        stamp = self.get_clock().now().nanoseconds
        tally.received += 1
        if self.fatal is not None:
            tally.failed += 1
            return
        try:
            self.writer.write(tally.topic, tally.msgtype, raw, stamp)
        except BagWriteError as exc:  # disk full, I/O error: the bag is closed as far as possible
            tally.failed += 1
            self._on_write_error(exc)
        except Exception as exc:  # anything else: keep the node alive, count and report
            tally.failed += 1
            if tally.failed == 1:
                self.get_logger().error(f"cannot write a message of {tally.topic}: {exc}")

    def _flush(self) -> None:
        try:
            self.writer.flush()
        except BagWriteError as exc:
            self._on_write_error(exc)

    def _on_write_error(self, exc: BagWriteError) -> None:
        """First write error: say so once (log and /diagnostics); main() then stops with status 1."""
        if not self.ledger.stop_for(exc):
            return
        if self.flush_timer is not None:
            self.flush_timer.cancel()
        self.get_logger().error(str(exc))
        self.publish_status()

    def _written(self) -> dict[str, int]:
        # After a write error only what was flushed is in the bag (and `pai bag recover` reads it).
        return self.writer.durable_counts if self.fatal is not None else self.writer.counts

    def status(self) -> tuple[Level, str, dict[str, str]]:
        """``(level, message, values)`` of the ``/diagnostics`` report (see the module docstring)."""
        return self.ledger.status(self._written())

    def publish_status(self) -> None:
        level, message, values = self.status()
        self.diag_pub.publish(diagnostic_array(status_name(self, "bag"), level, message, values, str(self.output),
                                               self.get_clock().now().to_msg()))

    def drain(self, executor: SingleThreadedExecutor, quiet_rounds: int = 3, limit_s: float = 2.0) -> None:
        """Take what DDS already delivered: spin until nothing new arrives for a few rounds.

        Bounded by ``limit_s``: with publishers still running there is never a quiet round, and
        stopping must not wait for them.
        """
        self.timer.cancel()
        self.status_timer.cancel()
        idle, deadline = 0, time.monotonic() + limit_s
        while idle < quiet_rounds and time.monotonic() < deadline:
            before = self.ledger.total_received()
            executor.spin_once(timeout_sec=0.05)
            idle = idle + 1 if self.ledger.total_received() == before else 0

    def finish(self) -> bool:
        """Close the bag and log the per-topic summary; False if any message was lost here."""
        if self.fatal is None:
            try:
                self.writer.close()
            except BagWriteError as exc:  # e.g. the disk filled up while writing the summary
                self._on_write_error(exc)
        summary = self.ledger.summarise(self._written(), [f.name for f in self.writer.files])
        log = self.get_logger()
        for level, line in summary.lines:
            # One call per severity: rclpy refuses a call site whose severity changes between calls.
            if level == Level.OK:
                log.info(line)
            else:
                log.warning(line)
        return summary.ok


def main(argv: list[str] | None = None) -> int:
    """Run until SIGINT or SIGTERM; 0 after a clean close, 1 for a configuration or write error."""
    if help_requested(sys.argv if argv is None else argv):
        print_help(node_help("recorder_node", __doc__, PARAMS))
        return 0
    # rclpy's own handlers would shut the context down at once (no draining, and SIGTERM would
    # kill the process before the bag is closed): install ours for both signals instead.
    if not init_ros("recorder_node", argv if argv is not None else sys.argv,
                    signal_handler_options=SignalHandlerOptions.NO):
        return 1
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        try:
            node = RecorderNode()
        except UserError as exc:  # the same one line as every node's (pai_ros.ros.lifecycle.run_node)
            print(f"recorder_node: error: {exc}", file=sys.stderr)
            return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            while not stop.is_set() and node.fatal is None:
                executor.spin_once(timeout_sec=0.1)
            if node.fatal is None:
                node.get_logger().info("stopping: draining received messages and closing the bag")
                node.drain(executor)
        finally:
            node.finish()
            # The last word (closed, or the write error) must reach the subscribers before we exit.
            node.publish_status()
            node.diag_pub.wait_for_all_acked(Duration(seconds=2))
            executor.remove_node(node)
            node.destroy_node()
        return 1 if node.fatal is not None else 0
    finally:
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    sys.exit(main())
