"""`pai bag2dataset`: bags of a robot's topics become a LeRobotDataset that every dataset tool reads.

The bags are written with the recorder's own BagWriter (raw CDR, receive times chosen here), so
what each frame must hold is known exactly: the latest message of each input at the tick.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import run_pai
from hypothesis import given, settings
from hypothesis import strategies as st

from pai_ros.bags.typestore import typestore
from pai_ros.bags.writer import BagWriter
from pai_ros.imaging.convert import rgb_to_jpeg

S = 1_000_000_000
T0 = 50 * S  # bag time of the first message
JOINTS = ["elbow_extra", "gripper", "y", "x"]  # the robot's order, with a joint the policy does not use


def _header(store, t_ns: int):
    T = store.types
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=t_ns // S, nanosec=t_ns % S),
                                    frame_id="cam")


def _front(t_ns: int, h: int = 64, w: int = 80) -> np.ndarray:
    """A frame whose grey level tells when it was taken (10 levels a second)."""
    return np.full((h, w, 3), int(20 + (t_ns - T0) / S * 10) % 250, np.uint8)


def _write_bag(path: Path, seconds: float = 3.0, front_gap: tuple[float, float] | None = None,
               front_hw: tuple[int, int] = (64, 80), resize_at: float | None = None, camera_hz: int = 30,
               joint_hz: int = 50, joint_start_s: float = 0.0, joint_names: list[str] = JOINTS,
               jump_s: float = 0.0) -> Path:
    """front: raw rgb8 at 30 Hz, wrist: JPEG at 30 Hz, joint_states at 50 Hz, action at 15 Hz.

    ``jump_s``: every message of the second half is received that much later (a clock that jumped).
    """
    store = typestore()
    T = store.types
    events: list[tuple[int, str, str, bytes]] = []

    def add(topic: str, msgtype: str, t_ns: int, msg) -> None:
        late = int(jump_s * S) if t_ns - T0 >= seconds * S / 2 else 0
        events.append((t_ns + late, topic, msgtype, bytes(store.serialize_cdr(msg, msgtype))))

    for i in range(int(seconds * camera_hz)):
        t = T0 + i * S // camera_hz
        s = (t - T0) / S
        if not (front_gap and front_gap[0] <= s < front_gap[1]):
            hw = (32, 40) if resize_at is not None and s >= resize_at else front_hw
            rgb = _front(t, *hw)
            add("/so101/front/image_raw", "sensor_msgs/msg/Image", t, T["sensor_msgs/msg/Image"](
                header=_header(store, t), height=hw[0], width=hw[1], encoding="rgb8", is_bigendian=0,
                step=hw[1] * 3, data=rgb.reshape(-1)))
        wrist = np.full((64, 80, 3), 90, np.uint8)
        add("/so101/wrist/image_raw/compressed", "sensor_msgs/msg/CompressedImage", t,
            T["sensor_msgs/msg/CompressedImage"](header=_header(store, t), format="jpeg",
                                                 data=np.frombuffer(rgb_to_jpeg(wrist), np.uint8)))
    for i in range(int(seconds * joint_hz)):
        t = T0 + i * S // joint_hz
        s = (t - T0) / S
        if s < joint_start_s:
            continue
        add("/joint_states", "sensor_msgs/msg/JointState", t, T["sensor_msgs/msg/JointState"](
            header=_header(store, t), name=joint_names, position=np.array([9.0, s, 2 * s, 3 * s][:len(joint_names)]),
            velocity=np.array([], float), effort=np.array([], float)))
    for i in range(int(seconds * 15)):
        t = T0 + i * S // 15
        add("/so101/action", "sensor_msgs/msg/JointState", t, T["sensor_msgs/msg/JointState"](
            header=_header(store, t), name=["x", "y", "gripper"], position=np.array([-1.0, -2.0, -3.0]),
            velocity=np.array([], float), effort=np.array([], float)))
    with BagWriter(path) as writer:
        for t, topic, msgtype, raw in sorted(events, key=lambda e: e[0]):
            writer.write(topic, msgtype, raw, t)
    return path


ARGS = ["--camera", "front:/so101/front/image_raw", "--camera", "wrist:/so101/wrist/image_raw/compressed",
        "--state-joint-names", "x", "y", "gripper", "--fps", "15", "--max-age", "0.1", "--min-frames", "5",
        "--quiet"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("bag2dataset")
    bag = _write_bag(tmp / "run1", front_gap=(1.5, 2.0))
    out = tmp / "ds"
    res = run_pai("bag2dataset", str(bag), "-o", str(out), *ARGS, "--action-topic", "so101/action")
    assert res.returncode == 0, res.stderr
    assert "pai bag2dataset: 2 episode(s)" in res.stdout, res.stdout
    assert "tick(s) left out: /so101/front/image_raw older than --max-age 0.1 s" in res.stdout, res.stdout
    return bag, out


def test_frames_hold_each_inputs_latest_message_and_a_gap_splits_episodes(converted) -> None:
    from pai_ros.data.episodes import iter_episode, read_info

    _bag, out = converted
    info = read_info(out)
    assert info["fps"] == 15 and info["total_episodes"] == 2
    assert info["features"]["observation.state"]["names"] == ["x", "y", "gripper"]
    assert info["features"]["action"]["names"] == ["x", "y", "gripper"]
    assert info["features"]["observation.images.front"]["shape"] == [64, 80, 3]
    first, second = list(iter_episode(out, 0)), list(iter_episode(out, 1))
    # 0 .. 1.5 s at 15 fps; the gap (front camera silent 1.5-2.0 s, older than 0.1 s from ~1.6 s) splits.
    assert 22 <= len(first) <= 25 and 14 <= len(second) <= 17, (len(first), len(second))
    for frames, start_s in ((first, 0.0), (second, None)):
        for k, frame in enumerate(frames):
            x, y, gripper = frame.state
            # The tick's latest joint state: x = 3 s, y = 2 s, gripper = s for the message's time s.
            assert y == pytest.approx(2 * gripper, abs=1e-5) and x == pytest.approx(3 * gripper, abs=1e-5)
            if start_s is not None:
                assert gripper == pytest.approx(start_s + k / 15, abs=0.021)  # 50 Hz joint states
            assert np.allclose(frame.action, [-1.0, -2.0, -3.0])
            # The front image of the tick (H.264 is lossy: the grey level within a few steps).
            expected = 20 + gripper * 10
            assert abs(float(frame.images["front"].mean()) - expected) < 4, (k, frame.images["front"].mean())
            assert abs(float(frame.images["wrist"].mean()) - 90) < 4
    assert second[0].state[2] > 2.0 - 1e-6  # the second episode starts once the camera is back
    source = json.loads((out / "meta" / "pai_ros_bag_source.json").read_text())
    assert source["cameras"] == {"front": "/so101/front/image_raw", "wrist": "/so101/wrist/image_raw/compressed"}
    assert [e["frames"] for e in source["episodes"]] == [len(first), len(second)]


def test_the_dataset_feeds_pai_attention(converted, tiny_act: Path, tmp_path: Path) -> None:
    _bag, out = converted
    res = run_pai("attention", "--dataset-root", str(out), "--episode", "1", "--policy-path", str(tiny_act),
                  "--output-dir", str(tmp_path / "att"), "--no-videos", "--quiet")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "att" / "episode_000001" / "attention.parquet").is_file()


def test_without_an_action_topic_there_is_no_action_and_several_bags_are_several_episodes(tiny_act: Path,
                                                                                         tmp_path: Path) -> None:
    from pai_ros.data.episodes import read_info

    bags = [_write_bag(tmp_path / "a", seconds=1.0), _write_bag(tmp_path / "b", seconds=1.0)]
    res = run_pai("bag2dataset", *map(str, bags), "-o", str(tmp_path / "ds"), *ARGS)
    assert res.returncode == 0, res.stderr
    info = read_info(tmp_path / "ds")
    assert info["total_episodes"] == 2 and "action" not in info["features"]
    # pai attention on it: said, not "Mean of empty slice" and "action MAE nan".
    res = run_pai("attention", "--dataset-root", str(tmp_path / "ds"), "--episode", "0", "--policy-path",
                  str(tiny_act), "--output-dir", str(tmp_path / "att"), "--no-videos", "--quiet")
    assert res.returncode == 0 and "Warning" not in res.stderr, res.stderr
    assert "no recorded actions to compare with" in res.stdout and "nan" not in res.stdout, res.stdout


@pytest.mark.parametrize("change, needle", [
    ({"--camera": ["front:/so101/front/image_raw", "top:/so101/top/image_raw"]},
     "bag BAG: /so101/top/image_raw is not in it (its Image / CompressedImage topics: /so101/front/image_raw, "
     "/so101/wrist/image_raw/compressed)"),
    ({"--action-topic": ["/so101/front/image_raw"]}, "/so101/front/image_raw is sensor_msgs/msg/Image, not"),
    ({"--camera": ["front"]}, "--camera 'front' is not NAME:TOPIC"),
    ({"--state-joint-names": ["shoulder_pan"]}, "no episode of at least --min-frames 5 frames in BAG (left out: "
                                                "15 x /joint_states: no joint shoulder_pan"),
    ({"--fps": ["0"]}, "--fps must lie in [1, 1000], got 0"),
    ({"--max-age": ["nan"]}, "--max-age must be a positive number of seconds"),
])
def test_bad_input_is_one_line_and_no_dataset(change: dict[str, list[str]], needle: str, tmp_path: Path) -> None:
    bag = _write_bag(tmp_path / "bag", seconds=1.0)
    options = {"--camera": ["front:/so101/front/image_raw", "wrist:/so101/wrist/image_raw/compressed"],
               "--state-joint-names": ["x", "y", "gripper"], "--fps": ["15"], "--max-age": ["0.1"],
               "--min-frames": ["5"], **change}
    args = []
    for option, values in options.items():
        args += ([a for v in values for a in (option, v)] if option == "--camera" else [option, *values])
    res = run_pai("bag2dataset", str(bag), "-o", str(tmp_path / "ds"), *args, "--quiet")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle.replace("BAG", str(bag)) in lines[0], lines
    assert not (tmp_path / "ds").exists() and not list(tmp_path.glob(".ds*"))


def test_a_camera_that_changes_size_keeps_what_came_before_and_says_where(tmp_path: Path) -> None:
    """A camera driver restarted at another resolution: its frames at the first size are kept, the rest said."""
    from pai_ros.data.episodes import iter_episode, read_info

    bag = _write_bag(tmp_path / "bag", seconds=2.0, resize_at=1.0)
    res = run_pai("bag2dataset", str(bag), "-o", str(tmp_path / "ds"), *ARGS)
    assert res.returncode == 0, res.stderr
    assert "pai bag2dataset: 1 episode(s)" in res.stdout, res.stdout
    left = re.search(r"(\d+) tick\(s\) left out: camera front: 40x32 images, not the 80x64 of the first frame",
                     res.stdout)
    assert left and 14 <= int(left.group(1)) <= 15, res.stdout  # 1.0 .. 2.0 s at 15 fps
    assert res.stdout.count("images (WxH) from bag time") == 1, res.stdout  # said once, not per tick
    assert f"bag {bag}: camera front sends 40x32 images (WxH) from bag time 51.000 s, not the 80x64 of the " \
           "dataset's first frame" in res.stdout, res.stdout
    assert read_info(tmp_path / "ds")["features"]["observation.images.front"]["shape"] == [64, 80, 3]
    frames = list(iter_episode(tmp_path / "ds", 0))
    assert 14 <= len(frames) <= 15 and max(f.state[2] for f in frames) < 1.0  # only the ticks before the change
    source = json.loads((tmp_path / "ds" / "meta" / "pai_ros_bag_source.json").read_text())
    assert any("images (WxH) from bag time" in note for note in source["notes"])
    # Every tick at another size than the first: nothing to write, one line naming why.
    other = _write_bag(tmp_path / "other", seconds=1.0, front_hw=(32, 40))
    none = run_pai("bag2dataset", str(tmp_path / "bag"), str(other), "-o", str(tmp_path / "ds2"), *ARGS,
                   "--min-frames", "20")
    assert none.returncode == 1 and "Traceback" not in none.stderr, none.stderr
    assert "no episode of at least --min-frames 20" in none.stderr and "40x32 images" in none.stderr, none.stderr
    assert not (tmp_path / "ds2").exists()


def test_the_same_bag_twice_is_one_line(converted, tmp_path: Path) -> None:
    bag, _ = converted
    again = bag.parent / ".." / bag.parent.name / bag.name
    res = run_pai("bag2dataset", str(bag), str(again), "-o", str(tmp_path / "ds"), *ARGS)
    assert res.returncode == 1 and f"bag {again} is given twice (also as {bag})" in res.stderr, res.stderr
    assert not (tmp_path / "ds").exists()


def test_an_existing_output_is_kept_unless_overwrite(converted, tmp_path: Path) -> None:
    bag, _ = converted
    out = tmp_path / "ds"
    out.mkdir()
    (out / "mine.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):  # --overwrite deleted a directory of the user's own files
        res = run_pai("bag2dataset", str(bag), "-o", str(out), *ARGS, *extra)
        assert res.returncode == 1 and "is not an earlier bag2dataset output" in res.stderr, res.stderr
        assert (out / "mine.txt").read_text() == "mine"
    done = tmp_path / "done"
    assert run_pai("bag2dataset", str(bag), "-o", str(done), *ARGS).returncode == 0
    res = run_pai("bag2dataset", str(bag), "-o", str(done), *ARGS)
    assert res.returncode == 1
    assert "holds an earlier bag2dataset output; choose a new path or pass --overwrite" in res.stderr
    res = run_pai("bag2dataset", str(bag), "-o", str(done), *ARGS, "--overwrite")
    assert res.returncode == 0, res.stderr
    assert (done / "meta" / "info.json").is_file()


def test_a_file_added_while_it_converts_is_kept(converted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The output was checked before the conversion; one the user adds during it (hours, on real bags) is
    # carried into the new dataset, not deleted with the old one.
    from pai_ros.bags import to_dataset
    from pai_ros.cli import main

    bag, _ = converted
    done = tmp_path / "done"
    assert main(["bag2dataset", str(bag), "-o", str(done), *ARGS, "--quiet"]) == 0
    check_inputs = to_dataset._check_inputs

    def _check_inputs_while_the_user_writes(*args, **kwargs) -> None:  # after the output's check, before staging
        (done / "README.md").write_text("recorded on the left arm")
        check_inputs(*args, **kwargs)

    monkeypatch.setattr(to_dataset, "_check_inputs", _check_inputs_while_the_user_writes)
    assert main(["bag2dataset", str(bag), "-o", str(done), *ARGS, "--overwrite", "--quiet"]) == 0
    assert (done / "README.md").read_text() == "recorded on the left arm" and (done / "meta" / "info.json").is_file()


def test_the_tick_grid_is_exact_and_ends_at_the_last_message(tmp_path: Path) -> None:
    """Messages at exactly the dataset's rate: each frame holds the next one, none twice, none after the bag."""
    from pai_ros.data.episodes import iter_episode

    bag = _write_bag(tmp_path / "bag", seconds=2.0, camera_hz=15, joint_hz=15)
    res = run_pai("bag2dataset", str(bag), "-o", str(tmp_path / "ds"), *ARGS)
    assert res.returncode == 0, res.stderr
    times = [float(f.state[2]) for f in iter_episode(tmp_path / "ds", 0)]  # gripper = the message's time
    assert times == pytest.approx([i / 15 for i in range(30)], abs=1e-6)


def test_one_topic_may_feed_two_inputs(tmp_path: Path) -> None:
    """A teleoperated arm's joint states as both state and action, one camera as two inputs: every input gets
    each message (the second used to overwrite the first, which then 'never arrived')."""
    from pai_ros.data.episodes import iter_episode

    bag = _write_bag(tmp_path / "bag", seconds=2.0)
    args = [a if a != "wrist:/so101/wrist/image_raw/compressed" else "wrist:/so101/front/image_raw" for a in ARGS]
    res = run_pai("bag2dataset", str(bag), "-o", str(tmp_path / "ds"), *args, "--action-topic", "/joint_states",
                  "--action-names", "x", "y", "gripper")
    assert res.returncode == 0, res.stderr
    frames = list(iter_episode(tmp_path / "ds", 0))
    assert len(frames) >= 25
    for frame in frames:
        assert np.allclose(frame.action, frame.state)
        assert np.array_equal(frame.images["front"], frame.images["wrist"])


def test_what_is_left_out_is_said(tmp_path: Path) -> None:
    """Ticks before every input has had a message, and a receive clock that jumps by decades."""
    bag = _write_bag(tmp_path / "late", seconds=2.0, joint_start_s=0.5)
    res = run_pai("bag2dataset", str(bag), "-o", str(tmp_path / "a"), *ARGS)
    assert res.returncode == 0, res.stderr
    assert "7 tick(s) left out: before the first message on /joint_states" in res.stdout, res.stdout
    # Sim time before the first /clock (0), then the simulator's time: years of stale ticks, counted at once.
    bag = _write_bag(tmp_path / "jump", seconds=2.0, jump_s=1.7e9)
    res = run_pai("bag2dataset", str(bag), "-o", str(tmp_path / "b"), *ARGS, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "pai bag2dataset: 2 episode(s)" in res.stdout
    stale = re.search(r"(\d+) tick\(s\) left out: /so101/front/image_raw older than", res.stdout)
    assert stale and int(stale.group(1)) > 1.7e9 * 15 - 100, res.stdout


@pytest.mark.parametrize("case, needle", [
    ("no_names", "(left out: 15 x /joint_states: a JointState without joint names)"),
    ("odd_size", "camera front sends 63x47 images; LeRobot stores cameras as H.264 video, which needs an even"),
])
def test_inputs_that_cannot_make_a_dataset_are_one_line(case: str, needle: str, tmp_path: Path) -> None:
    bag = (_write_bag(tmp_path / "bag", seconds=1.0, joint_names=[]) if case == "no_names"
           else _write_bag(tmp_path / "bag", seconds=1.0, front_hw=(47, 63)))
    res = run_pai("bag2dataset", str(bag), "-o", str(tmp_path / "ds"), *ARGS)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and needle in res.stderr, res.stderr
    assert not (tmp_path / "ds").exists()


def test_a_failure_after_episodes_were_written_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LeRobot flushes its buffers at garbage collection: after the staging was removed, it used to re-create it."""
    import gc

    from pai_ros.bags import to_dataset
    from pai_ros.errors import UserError

    good = _write_bag(tmp_path / "good", seconds=1.0)
    other = _write_bag(tmp_path / "other", seconds=1.0)
    make_frame = to_dataset._Frames.frame

    def fail_in_the_second_bag(self, tick_ns, latest, bag):
        if Path(bag) == other:  # the first bag's episode is written by now
            raise UserError("a failure late in the conversion")
        return make_frame(self, tick_ns, latest, bag)

    monkeypatch.setattr(to_dataset._Frames, "frame", fail_in_the_second_bag)
    mapping = to_dataset.TopicMapping(cameras=(("front", "/so101/front/image_raw"),
                                               ("wrist", "/so101/wrist/image_raw/compressed")),
                                      state_joint_names=("x", "y", "gripper"))
    with pytest.raises(UserError, match="late in the conversion"):
        to_dataset.bags_to_dataset([good, other], tmp_path / "ds", mapping,
                                   to_dataset.Sampling(fps=15, max_age_s=0.1, min_frames=5), progress=False)
    gc.collect()  # where LeRobot's writer used to flush into the removed staging directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good", "other"]
    # A bag without a mapped topic is found before any work, whichever position it has.
    missing = run_pai("bag2dataset", str(good), str(other), "-o", str(tmp_path / "ds"), *ARGS[:2],
                      "--camera", "wrist:/nowhere", *ARGS[4:])
    assert missing.returncode == 1 and "/nowhere is not in it" in missing.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good", "other"]


def test_camera_names_take_lerobots_key_as_the_policy_node_does() -> None:
    from pai_ros.bags.to_dataset import TopicMapping

    assert TopicMapping.parse_camera("observation.images.front:so101/front") == ("front", "/so101/front")


@settings(max_examples=500, deadline=None)
@given(fps=st.sampled_from([1, 7, 15, 30, 33, 1000]), start=st.integers(0, 10**15), k=st.integers(0, 10**4),
       after=st.integers(1, 10 * S))
def test_a_gaps_tick_count_is_exactly_the_ticks_before_the_next_message(fps: int, start: int, k: int,
                                                                       after: int) -> None:
    """Counted at once for a gap (years of ticks otherwise); one short, and the loop stepped by zero."""
    from pai_ros.bags.to_dataset import ticks_before

    def tick(j: int) -> int:
        return start + (j * S) // fps

    t = tick(k) + after
    n = ticks_before(t, start, fps, k)
    assert tick(k + n - 1) < t <= tick(k + n)
