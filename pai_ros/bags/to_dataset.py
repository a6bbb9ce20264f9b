"""Recorded bags as a LeRobotDataset v3.0: the robot's ROS topics as policy frames at a fixed rate.

Why: ROS users record bags, not LeRobot datasets, and every offline tool here (``pai attention``,
``pai sae collect``, ``pai features record``, the replay node) and LeRobot's own training read
datasets. Converting once lets all of them run on what the robot saw.

How a frame is made, the way the policy node makes a tick: ticks every ``1/fps`` s of bag time
(the recorder's receive time, one clock for every topic, so cameras stamped by another
computer's clock do not matter); at each tick every input's latest message received by then,
and the tick is a frame only if each of those arrived within ``max_age_s`` before it. A tick
that fails that (a camera that stopped, a gap in the recording) or whose values are not finite
ends the episode, and the next good tick starts a new one: LeRobot assumes an episode's frames
follow each other at ``fps``, so a gap inside an episode would teach the wrong timing. Each bag
starts a new episode too; episodes shorter than ``min_frames`` are left out and counted.

Images are decoded only for the ticks that use them (raw ``sensor_msgs/Image`` in any encoding
the live node reads, or ``CompressedImage``). A dataset feature has one shape, so a camera keeps
the size of its first frame: ticks where it sends another size are left out (ending the episode)
and said once per bag, rather than the whole conversion refused after hours of work (a camera
driver restarted at another resolution). ``observation.state`` is the named joints' positions in the given order;
``action`` is read from an action topic when one is given (``JointState`` by name, or
``Float64MultiArray``), and left out otherwise (nothing is invented: a dataset without actions
is for analysis, not training). The dataset is written under a temporary name by LeRobot's own
writer and renamed when complete; ``meta/pai_ros_bag_source.json`` records the bags and mapping.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pai_ros.bags.reading import COMPRESSED_IMAGE, IMAGE, JOINT_STATE, find_sources, open_reader, read_messages
from pai_ros.errors import UserError
from pai_ros.imaging.convert import message_to_rgb
from pai_ros.imaging.errors import ImageConversionError
from pai_ros.jsonfile import write_json_atomic
from pai_ros.require import require
from pai_ros.staging import (
    check_apart,
    check_replaceable,
    json_file_with,
    staged_directory,
    write_manifest,
)
from pai_ros.timestamps import NS_PER_S

FLOAT64_ARRAY = "std_msgs/msg/Float64MultiArray"
FLOAT32_ARRAY = "std_msgs/msg/Float32MultiArray"
ACTION_TYPES = (JOINT_STATE, FLOAT64_ARRAY, FLOAT32_ARRAY)
SOURCE_FILE = "pai_ros_bag_source.json"


@dataclass(frozen=True)
class TopicMapping:
    """Which bag topics become which dataset features."""

    cameras: tuple[tuple[str, str], ...]  # (dataset camera name, topic)
    joint_states: str | None = "/joint_states"
    state_joint_names: tuple[str, ...] = ()  # empty: every joint of the first message, in its order
    action_topic: str | None = None
    action_names: tuple[str, ...] = ()  # empty: the JointState's names, or action_0.. for an array

    @staticmethod
    def parse_camera(entry: str) -> tuple[str, str]:
        name, sep, topic = entry.partition(":")
        name = name.removeprefix("observation.images.")  # LeRobot's key, as the policy node accepts it
        if not sep or not name or not topic or not name.replace("_", "").isalnum():
            raise UserError(f"--camera '{entry}' is not NAME:TOPIC (e.g. front:/camera/front/image_raw; NAME is "
                            "the policy's camera name: letters, digits, _)")
        return name, _absolute(topic)

    def __post_init__(self) -> None:
        if not self.cameras:
            raise UserError("at least one --camera NAME:TOPIC is needed")
        names = [n for n, _ in self.cameras]
        if len(set(names)) != len(names):
            raise UserError(f"--camera names must differ, got {', '.join(names)}")
        for what, given in (("--state-joint-names", self.state_joint_names), ("--action-names", self.action_names)):
            if len(set(given)) != len(given):
                raise UserError(f"{what} repeats a name: {' '.join(given)}")

    def inputs(self) -> dict[str, str]:
        """Input key -> topic, for every topic a frame needs."""
        keys = {f"camera:{n}": t for n, t in self.cameras}
        if self.joint_states:
            keys["state"] = self.joint_states
        if self.action_topic:
            keys["action"] = self.action_topic
        return keys


@dataclass(frozen=True)
class Sampling:
    fps: int = 15
    max_age_s: float = 0.25
    min_frames: int = 10

    def __post_init__(self) -> None:
        require("--fps", self.fps, at_least=1, at_most=1000)
        require("--max-age", self.max_age_s, above=0, note=" of seconds")
        require("--min-frames", self.min_frames, at_least=1)


@dataclass
class DatasetSummary:
    """What the conversion wrote and what it left out, per reason."""

    output: Path
    episodes: list[dict[str, Any]] = field(default_factory=list)  # bag, start_s (bag time), frames
    frames: int = 0
    ticks_left_out: dict[str, int] = field(default_factory=dict)  # reason -> ticks
    short_episodes_left_out: int = 0
    notes: list[str] = field(default_factory=list)

    def left_out(self, reason: str, ticks: int = 1) -> None:
        self.ticks_left_out[reason] = self.ticks_left_out.get(reason, 0) + ticks

    def lines(self) -> list[str]:
        out = [f"{len(self.episodes)} episode(s), {self.frames} frames"]
        for reason, n in sorted(self.ticks_left_out.items()):
            out.append(f"  {n} tick(s) left out: {reason}")
        if self.short_episodes_left_out:
            out.append(f"  {self.short_episodes_left_out} episode(s) shorter than --min-frames left out")
        out += [f"  {note}" for note in self.notes]
        return out


def _absolute(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


# ------------------------------------------------------------------ one bag -> ticks


@dataclass
class _Latest:
    recv_ns: int
    msg: Any
    msgtype: str


def _connections(reader: Any, bag: Path, mapping: TopicMapping) -> dict[str, Any]:
    """Input key -> the bag's connection for it; one line naming what the bag has instead."""
    by_topic: dict[str, Any] = {}
    for conn in reader.connections:
        by_topic.setdefault(conn.topic, conn)
    wanted: dict[str, Any] = {}
    for key, topic in mapping.inputs().items():
        kind = key.split(":")[0]
        types = {"camera": (IMAGE, COMPRESSED_IMAGE), "state": (JOINT_STATE,), "action": ACTION_TYPES}[kind]
        conn = by_topic.get(topic)
        if conn is None or conn.msgtype not in types:
            offered = sorted(t for t, c in by_topic.items() if c.msgtype in types)
            found = f" is {conn.msgtype}, not {' or '.join(types)}" if conn is not None else " is not in it"
            raise UserError(f"bag {bag}: {topic}{found} (its {' / '.join(x.rsplit('/', 1)[-1] for x in types)} "
                            f"topics: {', '.join(offered) or 'none'})")
        if conn.msgcount == 0:
            raise UserError(f"bag {bag}: {topic} has no messages, so no frame can be made of this bag")
        wanted[key] = conn
    return wanted


def ticks_before(t_ns: int, start_ns: int, fps: int, k: int) -> int:
    """How many ticks ``j >= k`` of the grid ``start_ns + j * 1e9 // fps`` come before ``t_ns`` (at least 1:
    called when tick ``k`` does). ``tick(j) < t``  <=>  ``j * 1e9 < (t - start) * fps``."""
    return max(1, -(-((t_ns - start_ns) * fps) // NS_PER_S) - k)


def _ticks(reader: Any, bag: Path, wanted: dict[str, Any], fps: int, max_age_ns: int, summary: DatasetSummary,
           progress_bar: Any) -> Iterator[tuple[int, dict[str, _Latest], int]]:
    """``(tick time, latest message per input, how many ticks)`` at ``fps`` of bag time, from the
    first moment every input has had a message to the bag's last message.

    The grid is exact (tick k at ``start + k * 1e9 // fps``: no drift against periodic messages).
    Once every input is older than ``max_age_ns``, the ticks up to the next message are all the
    same stale tick: they come as one, with their count (a bag whose receive time jumps by years,
    e.g. sim time before and after the first ``/clock``, must not take years of ticks). Ticks
    before every input has had a message are counted in ``summary`` as left out.
    """
    from pai_ros.bags.typestore import typestore

    keys_of: dict[int, list[str]] = {}  # one topic may feed several inputs (state and action from /joint_states)
    for key, conn in wanted.items():
        keys_of.setdefault(conn.id, []).append(key)
    connections = {conn.id: conn for conn in wanted.values()}
    latest: dict[str, _Latest] = {}
    start: int | None = None
    first_ns: int | None = None
    k = 0
    last_ns = 0
    store = typestore()

    def tick(i: int) -> int:
        return start + (i * NS_PER_S) // fps

    for conn, recv_ns, msg in read_messages(reader, list(connections.values()), store, bag):
        while start is not None and tick(k) < recv_ns:
            if tick(k) - max(item.recv_ns for item in latest.values()) > max_age_ns:
                n = ticks_before(recv_ns, start, fps, k)
                yield tick(k), latest, n
                k += n
            else:
                yield tick(k), latest, 1
                k += 1
        for key in keys_of[conn.id]:
            latest[key] = _Latest(recv_ns, msg, conn.msgtype)
        first_ns = recv_ns if first_ns is None else first_ns
        last_ns = recv_ns
        if start is None and len(latest) == len(wanted):
            start = recv_ns
            waited = ((recv_ns - first_ns) * fps) // NS_PER_S
            if waited:
                summary.left_out(f"before the first message on {conn.topic}", waited)
        progress_bar.update()
    while start is not None and tick(k) <= last_ns:
        yield tick(k), latest, 1
        k += 1
    if start is None:
        missing = sorted(c.topic for key, c in wanted.items() if key not in latest)
        summary.notes.append(f"{bag}: no frame, nothing arrived on {', '.join(missing)}")


# ------------------------------------------------------------------ a tick -> a frame


class _Frames:
    """Turns ticks into dataset frames; knows the names and sizes fixed by the first frame."""

    def __init__(self, mapping: TopicMapping, sampling: Sampling, notes: list[str] | None = None) -> None:
        self.mapping, self.sampling = mapping, sampling
        self.notes = notes if notes is not None else []  # where a camera changed size, once per bag and size
        self._said: set[tuple[str, str, tuple[int, int]]] = set()
        # None until known: given, or taken from the first message that has any (never from an empty one).
        self.state_names: tuple[str, ...] | None = mapping.state_joint_names or None
        self.action_names: tuple[str, ...] | None = mapping.action_names or None
        self.sizes: dict[str, tuple[int, int]] = {}

    def frame(self, tick_ns: int, latest: dict[str, _Latest], bag: Path) -> dict[str, Any] | str:
        """The frame's features, or why this tick is not one (a reason shared by similar ticks)."""
        max_age_ns = int(self.sampling.max_age_s * NS_PER_S)
        for key, item in latest.items():
            if tick_ns - item.recv_ns > max_age_ns:
                topic = self.mapping.inputs()[key]
                return f"{topic} older than --max-age {self.sampling.max_age_s:g} s"
        frame: dict[str, Any] = {}
        for name, _topic in self.mapping.cameras:
            rgb = self._image(latest[f"camera:{name}"], bag, name, tick_ns)
            if isinstance(rgb, str):
                return rgb
            frame[f"observation.images.{name}"] = rgb
        if "state" in latest:
            msg = latest["state"].msg
            if not msg.name:
                return f"{self.mapping.joint_states}: a JointState without joint names"
            if self.state_names is None:
                self.state_names = tuple(str(n) for n in msg.name)
            state = _named(msg, self.state_names, self.mapping.joint_states or "", "--state-joint-names")
            if isinstance(state, str):
                return state
            frame["observation.state"] = state
        if "action" in latest:
            action = self._action(latest["action"])
            if isinstance(action, str):
                return action
            frame["action"] = action
        return frame

    def _image(self, item: _Latest, bag: Path, name: str, tick_ns: int) -> np.ndarray | str:
        m = item.msg
        try:
            rgb = message_to_rgb(m)
        except ImageConversionError as exc:
            return f"camera {name}: an image that cannot be decoded ({exc})"
        size = (int(rgb.shape[0]), int(rgb.shape[1]))
        if name not in self.sizes and (size[0] % 2 or size[1] % 2):
            raise UserError(f"bag {bag}: camera {name} sends {size[1]}x{size[0]} images; LeRobot stores cameras as "
                            "H.264 video, which needs an even width and height")
        known = self.sizes.setdefault(name, size)
        if size != known:
            if (str(bag), name, size) not in self._said:
                self._said.add((str(bag), name, size))
                self.notes.append(f"bag {bag}: camera {name} sends {size[1]}x{size[0]} images (WxH) from bag time "
                                  f"{tick_ns / NS_PER_S:.3f} s, not the {known[1]}x{known[0]} of the dataset's first "
                                  "frame; those ticks are left out (a dataset holds one size per camera)")
            return f"camera {name}: {size[1]}x{size[0]} images, not the {known[1]}x{known[0]} of the first frame"
        return rgb

    def _action(self, item: _Latest) -> np.ndarray | str:
        m = item.msg
        topic = self.mapping.action_topic or ""
        if item.msgtype == JOINT_STATE:
            if not m.name:
                return f"{topic}: a JointState without joint names"
            if self.action_names is None:
                self.action_names = tuple(str(n) for n in m.name)
            return _named(m, self.action_names, topic, "--action-names")
        values = np.asarray(m.data, dtype=np.float32)
        if values.size == 0:
            return f"{topic}: an empty action"
        if self.action_names is None:
            self.action_names = tuple(f"action_{i}" for i in range(values.size))
        if values.size != len(self.action_names):
            source = "--action-names" if self.mapping.action_names else "the first action"
            return f"{topic}: {values.size} values, not the {len(self.action_names)} of {source}"
        if not np.isfinite(values).all():
            return f"{topic}: a value that is not finite"
        return values

    def features(self, frame: dict[str, Any]) -> dict[str, dict]:
        """LeRobot's feature spec, from the first frame."""
        out: dict[str, dict] = {}
        for name, _topic in self.mapping.cameras:
            h, w = self.sizes[name]
            out[f"observation.images.{name}"] = {"dtype": "video", "shape": (h, w, 3),
                                                 "names": ["height", "width", "channels"]}
        if "observation.state" in frame:
            out["observation.state"] = {"dtype": "float32", "shape": (len(self.state_names),),
                                        "names": list(self.state_names)}
        if "action" in frame:
            out["action"] = {"dtype": "float32", "shape": (len(self.action_names),), "names": list(self.action_names)}
        return out


def _named(msg: Any, names: tuple[str, ...], topic: str, option: str) -> np.ndarray | str:
    """The positions of ``names`` in a JointState, in that order, or why not."""
    index = {str(n): i for i, n in enumerate(msg.name)}
    missing = [n for n in names if n not in index]
    if missing:
        return f"{topic}: no joint {', '.join(missing)} ({option}; the message names {', '.join(index) or 'none'})"
    if len(index) != len(msg.name):
        return f"{topic}: a message that names a joint twice"
    position = np.asarray(msg.position, dtype=np.float64)
    if position.size != len(msg.name):
        return f"{topic}: {position.size} positions for {len(msg.name)} names"
    values = position[[index[n] for n in names]].astype(np.float32)
    if not np.isfinite(values).all():
        return f"{topic}: a position that is not finite"
    return values


# ------------------------------------------------------------------ bags -> dataset


def bags_to_dataset(bags: list[Path], output: Path, mapping: TopicMapping, sampling: Sampling = Sampling(), *,
                    task: str = "recorded from ROS 2 bags", repo_id: str | None = None, overwrite: bool = False,
                    progress: bool = True) -> DatasetSummary:
    """Write ``bags`` into a new LeRobotDataset v3.0 at ``output`` (see the module docstring)."""
    from tqdm import tqdm

    from pai_ros.data.writing import quiet_hf_datasets
    from pai_ros.media.video import quiet_ffmpeg

    output = Path(output)
    if not bags:
        raise UserError("no bag given")
    resolved = [Path(b).resolve() for b in bags]
    for i, where in enumerate(resolved):  # the same recording twice would be two identical episodes
        if where in resolved[:i]:
            first = bags[resolved.index(where)]
            raise UserError(f"bag {bags[i]} is given twice" + (f" (also as {first})" if str(first) != str(bags[i])
                                                                 else ""))
    for bag in bags:
        check_apart(output, {"bag": bag})
    # What may be replaced: a file added during the conversion is kept.
    checked = check_replaceable(output, overwrite, made_by="bag2dataset", what_marks_it=f"meta/{SOURCE_FILE}",
                                is_mine=lambda d: json_file_with(d / "meta" / SOURCE_FILE, ("bags", "cameras")))
    sources = [(bag, find_sources(Path(bag))) for bag in bags]
    _check_inputs(sources, mapping)  # every bag before any work: not a failure after an hour of the first
    summary = DatasetSummary(output)
    frames = _Frames(mapping, sampling, summary.notes)
    max_age_ns = int(sampling.max_age_s * NS_PER_S)
    quiet_ffmpeg()
    with staged_directory(output, create=False, checked=checked) as staged, quiet_hf_datasets():
        writer = _EpisodeWriter(staged, repo_id or f"local/{output.name}", sampling, task, summary)
        try:
            for bag, bag_sources in sources:
                for source in bag_sources:
                    reader = open_reader(source, bag)
                    try:
                        wanted = _connections(reader, bag, mapping)
                        total = sum(c.msgcount for c in {c.id: c for c in wanted.values()}.values())
                        with tqdm(total=total, unit="msg", desc=f"bag2dataset {bag.name}", disable=not progress,
                                  leave=False) as bar:
                            for tick_ns, latest, count in _ticks(reader, bag, wanted, sampling.fps, max_age_ns,
                                                                 summary, bar):
                                frame = frames.frame(tick_ns, latest, bag)
                                if isinstance(frame, str):
                                    summary.left_out(frame, count)
                                    writer.end_episode()
                                    continue
                                writer.add(frame, frames, str(bag), tick_ns)
                    finally:
                        reader.close()
                    writer.end_episode()  # a bag (or a storage file of one without metadata) ends its episode
            if not summary.episodes:
                most = sorted(summary.ticks_left_out.items(), key=lambda x: -x[1])[:3]
                why = "; ".join(f"{n} x {r}" for r, n in most) or "; ".join(summary.notes)
                raise UserError(f"no episode of at least --min-frames {sampling.min_frames} frames in "
                                f"{', '.join(map(str, bags))}" + (f" (left out: {why})" if why else ""))
        except BaseException:
            # LeRobot flushes its buffers when finalized (or later, at garbage collection: into the staging
            # directory after it is removed, re-creating it). Flush now, then let the staging go.
            with contextlib.suppress(Exception):
                writer.finalize()
            raise
        writer.finalize()
        write_json_atomic(staged / "meta" / SOURCE_FILE, {
            "bags": [str(Path(b).resolve()) for b in bags], "cameras": dict(mapping.cameras),
            "joint_states": mapping.joint_states, "state_joint_names": list(frames.state_names or ()),
            "action_topic": mapping.action_topic, "action_names": list(frames.action_names or ()),
            "fps": sampling.fps, "max_age_s": sampling.max_age_s, "min_frames": sampling.min_frames,
            "episodes": summary.episodes, "ticks_left_out": summary.ticks_left_out,
            "short_episodes_left_out": summary.short_episodes_left_out, "notes": summary.notes})
        write_manifest(staged)
    return summary


def _check_inputs(sources: list[tuple[Path, list[Path]]], mapping: TopicMapping) -> None:
    """Every bag opens and has every mapped topic, with messages (one line naming the first that does not)."""
    for bag, bag_sources in sources:
        for source in bag_sources:
            reader = open_reader(source, bag)
            try:
                _connections(reader, bag, mapping)
            finally:
                reader.close()


class _EpisodeWriter:
    """LeRobot's writer, created at the first frame (the feature shapes come from it).

    An episode's first ``min_frames`` frames are held back until it is that long: a shorter one
    is left out without ever reaching LeRobot's buffer.
    """

    def __init__(self, root: Path, repo_id: str, sampling: Sampling, task: str, summary: DatasetSummary) -> None:
        self.root, self.repo_id, self.sampling, self.task, self.summary = root, repo_id, sampling, task, summary
        self.ds: Any = None
        self.held: list[dict[str, Any]] = []
        self.long_enough = False
        self.started: tuple[str, int] | None = None  # (bag, bag time) of the open episode's first frame

    def add(self, frame: dict[str, Any], frames: _Frames, bag: str, tick_ns: int) -> None:
        if self.ds is None:
            from lerobot.datasets.lerobot_dataset import LeRobotDataset

            self.ds = LeRobotDataset.create(repo_id=self.repo_id, fps=self.sampling.fps,
                                            features=frames.features(frame), root=self.root, use_videos=True,
                                            vcodec="h264")
        if self.started is None:
            self.started = (bag, tick_ns)
        if self.long_enough:
            self.ds.add_frame({**frame, "task": self.task})
            return
        self.held.append(frame)
        if len(self.held) >= self.sampling.min_frames:
            for held in self.held:
                self.ds.add_frame({**held, "task": self.task})
            self.held, self.long_enough = [], True

    def end_episode(self) -> None:
        if self.started is None:
            return
        bag, start_ns = self.started
        if self.long_enough:
            frames = int(self.ds.episode_buffer["size"])
            self.ds.save_episode()
            self.summary.episodes.append({"bag": bag, "start_s": start_ns / NS_PER_S, "frames": frames})
            self.summary.frames += frames
        else:
            self.summary.short_episodes_left_out += 1
        self.held, self.long_enough, self.started = [], False, None

    def finalize(self) -> None:
        if self.ds is not None:
            self.ds.finalize()
