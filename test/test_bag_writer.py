"""BagWriter: raw CDR in, a rosbag2 MCAP bag out that rosbags and the independent mcap reader agree on."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest

from pai_ros.bags.typestore import (
    EMBEDDED_FEATURE_ACTIVATIONS_MSG,
    FEATURE_ACTIVATIONS_MSG,
    FEATURE_ACTIVATIONS_TYPE,
    ensure_type,
    typestore,
)
from pai_ros.bags.writer import BagWriter
from pai_ros.errors import UserError
from helpers.feature_fields import appended_fields

REPO = Path(__file__).resolve().parents[1]
STORE = typestore()
T = STORE.types


def header(i: int):
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=100 + i, nanosec=7 * i), frame_id="f")


def image(i: int):
    data = np.full(6 * 4 * 3, i % 256, dtype=np.uint8)
    return T["sensor_msgs/msg/Image"](header=header(i), height=6, width=4, encoding="rgb8", is_bigendian=0,
                                      step=12, data=data)


def joint_state(i: int):
    return T["sensor_msgs/msg/JointState"](header=header(i), name=["a", "b"], position=np.array([i, -i], float),
                                           velocity=np.array([0.5, 1.5]), effort=np.array([], float))


def features(i: int):
    return T[FEATURE_ACTIVATIONS_TYPE](
        header=header(i), sae_id=f"sae-{i}", num_features=64, feature_indices=np.array([i, 3], np.uint32),
        activations=np.array([2.5, 0.5], np.float32), token_counts=np.array([4, 1], np.uint32), num_tokens=9,
        mean_l0=1.25, reconstruction_error=0.5, ood_threshold=math.nan, is_ood=bool(i % 2), **appended_fields())


def diagnostics(i: int):
    KV, DS = T["diagnostic_msgs/msg/KeyValue"], T["diagnostic_msgs/msg/DiagnosticStatus"]
    return T["diagnostic_msgs/msg/DiagnosticArray"](header=header(i), status=[
        DS(level=i % 3, name=f"s{i}", message="msg", hardware_id="hw", values=[KV(key="k", value=str(i))])])


MAKERS = {
    "/cam/image_raw": ("sensor_msgs/msg/Image", image),
    "/joint_states": ("sensor_msgs/msg/JointState", joint_state),
    "/features": (FEATURE_ACTIVATIONS_TYPE, features),
    "/diagnostics": ("diagnostic_msgs/msg/DiagnosticArray", diagnostics),
}


def cdr(topic: str, i: int) -> bytes:
    msgtype, make = MAKERS[topic]
    return bytes(STORE.serialize_cdr(make(i), msgtype))


def write_all(writer: BagWriter, n: int, topics=tuple(MAKERS)) -> None:
    for i in range(n):
        for k, topic in enumerate(topics):
            writer.write(topic, MAKERS[topic][0], cdr(topic, i), 1_000_000_000 + i * 1000 + k)


def read_rosbags(bag: Path) -> dict[str, list[tuple[int, object]]]:
    from rosbags.highlevel import AnyReader

    out: dict[str, list] = {}
    with AnyReader([bag]) as reader:  # uses the definitions embedded in the bag, not ours
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, reader.deserialize(raw, conn.msgtype)))
    return out


def read_mcap(bag: Path) -> dict[str, list[tuple[int, object]]]:
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    out: dict[str, list] = {}
    for f in sorted(bag.glob("*.mcap")):
        with f.open("rb") as stream:
            reader = make_reader(stream, decoder_factories=[DecoderFactory()])
            for _schema, channel, message, decoded in reader.iter_decoded_messages(log_time_order=True):
                out.setdefault(channel.topic, []).append((message.log_time, decoded))
    return out


def test_a_bag_path_with_a_tilde_is_written_under_home(tmp_path: Path, monkeypatch) -> None:
    # The recorder's output:=~/bags/run1: no shell expands that ~, and a folder named '~' appeared.
    monkeypatch.setenv("HOME", str(tmp_path))
    with BagWriter("~/bags/run1") as writer:
        assert writer.path == tmp_path / "bags" / "run1"
    assert (tmp_path / "bags" / "run1" / "metadata.yaml").is_file()

def test_all_types_round_trip_through_rosbags_and_mcap(tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    with BagWriter(bag) as writer:
        write_all(writer, 5)
    assert writer.counts == {t: 5 for t in MAKERS}
    assert sorted(p.name for p in bag.iterdir()) == ["bag_0.mcap", "metadata.yaml"]
    for got in (read_rosbags(bag), read_mcap(bag)):
        assert {t: len(v) for t, v in got.items()} == {t: 5 for t in MAKERS}
        t, img = got["/cam/image_raw"][3]
        assert t == 1_000_003_000
        assert (img.height, img.width, img.encoding, bytes(img.data)) == (6, 4, "rgb8", bytes([3]) * 72)
        assert (img.header.stamp.sec, img.header.stamp.nanosec) == (103, 21)
        js = got["/joint_states"][2][1]
        assert list(js.name) == ["a", "b"] and list(js.position) == [2.0, -2.0] and list(js.velocity) == [0.5, 1.5]
        fa = got["/features"][1][1]
        assert (fa.sae_id, fa.num_features, list(fa.feature_indices), list(fa.token_counts)) == ("sae-1", 64, [1, 3], [4, 1])
        assert [float(a) for a in fa.activations] == [2.5, 0.5] and math.isnan(fa.ood_threshold) and fa.is_ood
        diag = got["/diagnostics"][4][1].status[0]
        assert (diag.level, diag.name, diag.values[0].key, diag.values[0].value) in ((1, "s4", "k", "4"),
                                                                                     (b"\x01", "s4", "k", "4"))


def test_metadata_is_what_ros2_bag_play_reads(tmp_path: Path) -> None:
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
    from ruamel.yaml import YAML

    qos = Qos(QosHistory.KEEP_LAST, 5, QosReliability.BEST_EFFORT, QosDurability.VOLATILE, QosTime(0, 0),
              QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)
    bag = tmp_path / "bag"
    with BagWriter(bag) as writer:
        writer.add_topic("/cam/image_raw", "sensor_msgs/msg/Image", [qos])
        write_all(writer, 2)
    meta = YAML(typ="safe").load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 8 and meta["storage_identifier"] == "mcap"
    assert meta["relative_file_paths"] == ["bag_0.mcap"] and meta["message_count"] == 8
    assert isinstance(meta["custom_data"], dict)  # a map, never null (Jazzy+ decode it as a map)
    topics = {t["topic_metadata"]["name"]: t for t in meta["topics_with_message_count"]}
    cam = topics["/cam/image_raw"]["topic_metadata"]
    assert cam["serialization_format"] == "cdr" and cam["type_description_hash"].startswith("RIHS01_")
    # v8: a YAML string (Humble reads it with as<std::string>()), integer enums; 2 = best effort.
    assert isinstance(cam["offered_qos_profiles"], str)
    assert YAML(typ="safe").load(cam["offered_qos_profiles"])[0]["reliability"] == 2
    assert topics["/joint_states"]["topic_metadata"]["offered_qos_profiles"] == ""


def test_topic_first_seen_later_is_added_then(tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    with BagWriter(bag) as writer:
        write_all(writer, 3, topics=("/joint_states",))
        for i in range(4):
            writer.write("/features", FEATURE_ACTIVATIONS_TYPE, cdr("/features", i), 2_000_000_000 + i)
            writer.write("/joint_states", "sensor_msgs/msg/JointState", cdr("/joint_states", 10 + i), 2_000_000_000 + i)
    for got in (read_rosbags(bag), read_mcap(bag)):
        assert {t: len(v) for t, v in got.items()} == {"/joint_states": 7, "/features": 4}
        assert [m.sae_id for _, m in got["/features"]] == ["sae-0", "sae-1", "sae-2", "sae-3"]


def test_a_declared_topic_that_stays_silent_is_in_the_bag_and_in_every_split_file(tmp_path: Path) -> None:
    """A subscribed topic that received nothing is listed with 0 messages (rosbags connects a topic on its
    first write, so it vanished from metadata.yaml while the recorder counted it)."""
    from rosbags.rosbag2 import Reader

    bag = tmp_path / "bag"
    with BagWriter(bag, max_bag_size_mb=0.0005) as writer:
        writer.add_topic("/silent", "std_msgs/msg/String")
        write_all(writer, 6, topics=("/joint_states",))
        writer.add_topic("/late_silent", "std_msgs/msg/String")  # declared after messages were flushed
        write_all(writer, 1, topics=("/joint_states",))
    assert len(writer.files) > 1
    with Reader(bag) as reader:
        assert {c.topic: c.msgcount for c in reader.connections} == {"/silent": 0, "/late_silent": 0,
                                                                     "/joint_states": 7}
    for f in writer.files:  # each split file on its own lists what the bag had by then
        with Reader(f) as reader:
            assert "/silent" in {c.topic for c in reader.connections}
    assert {t: len(v) for t, v in read_mcap(bag).items()} == {"/joint_states": 7}


def test_zstd_compression_is_smaller_and_reads_back(tmp_path: Path) -> None:
    sizes = {}
    for mode in ("none", "zstd"):
        bag = tmp_path / mode
        with BagWriter(bag, compression=mode) as writer:
            write_all(writer, 50)
        sizes[mode] = sum(f.stat().st_size for f in bag.glob("*.mcap"))
        for got in (read_rosbags(bag), read_mcap(bag)):
            assert {t: len(v) for t, v in got.items()} == {t: 50 for t in MAKERS}
    assert sizes["zstd"] < sizes["none"]
    assert "compression_mode: ''" in (tmp_path / "zstd" / "metadata.yaml").read_text()  # chunk-level, transparent


def test_size_split_gives_several_readable_files_with_every_message(tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    big = np.zeros(40_000, np.uint8)
    with BagWriter(bag, max_bag_size_mb=0.1, compression="zstd") as writer:
        for i in range(20):
            msg = T["sensor_msgs/msg/Image"](header=header(i), height=100, width=400, encoding="mono8",
                                             is_bigendian=0, step=400, data=big)
            writer.write("/cam/image_raw", "sensor_msgs/msg/Image", bytes(STORE.serialize_cdr(msg, "sensor_msgs/msg/Image")), 10 + i)
            writer.write("/joint_states", "sensor_msgs/msg/JointState", cdr("/joint_states", i), 10 + i)
    files = sorted(p.name for p in bag.glob("*.mcap"))
    assert len(files) >= 5 and files[0] == "bag_0.mcap"
    assert [p.name for p in writer.files] == [f"bag_{k}.mcap" for k in range(len(files))]
    assert not [p for p in bag.iterdir() if p.is_dir()]  # no working directories left
    for got in (read_rosbags(bag), read_mcap(bag)):
        assert {t: len(v) for t, v in got.items()} == {"/cam/image_raw": 20, "/joint_states": 20}
        assert [m.header.stamp.sec for _, m in got["/joint_states"]] == list(range(100, 120))
    # Each file on its own is a complete MCAP as well.
    from rosbags.rosbag2 import Reader

    per_file = 0
    for f in bag.glob("*.mcap"):
        with Reader(f) as reader:
            per_file += sum(1 for _ in reader.messages())
    assert per_file == 40


def test_writes_from_several_threads(tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    writer = BagWriter(bag, max_bag_size_mb=0.01)
    payload = {t: cdr(t, 1) for t in MAKERS}

    def worker(topic: str) -> None:
        for i in range(200):
            writer.write(topic, MAKERS[topic][0], payload[topic], 1000 + i)

    threads = [threading.Thread(target=worker, args=(t,)) for t in MAKERS]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    writer.close()
    assert {t: len(v) for t, v in read_rosbags(bag).items()} == {t: 200 for t in MAKERS}


def test_close_twice_is_fine_and_write_after_close_is_an_error(tmp_path: Path) -> None:
    writer = BagWriter(tmp_path / "bag")
    writer.write("/joint_states", "sensor_msgs/msg/JointState", cdr("/joint_states", 0), 5)
    writer.close()
    writer.close()
    assert writer.closed and read_rosbags(tmp_path / "bag")["/joint_states"][0][0] == 5
    with pytest.raises(RuntimeError):
        writer.write("/joint_states", "sensor_msgs/msg/JointState", cdr("/joint_states", 0), 6)


def test_empty_bag_is_valid(tmp_path: Path) -> None:
    BagWriter(tmp_path / "bag").close()
    assert read_rosbags(tmp_path / "bag") == {} and read_mcap(tmp_path / "bag") == {}


def test_user_errors(tmp_path: Path) -> None:
    (tmp_path / "exists").mkdir()
    with pytest.raises(UserError, match="already exists"):
        BagWriter(tmp_path / "exists")
    with pytest.raises(UserError, match="compression"):
        BagWriter(tmp_path / "a", compression="lz4")
    with pytest.raises(UserError, match="max_bag_size_mb"):
        BagWriter(tmp_path / "b", max_bag_size_mb=-1)
    writer = BagWriter(tmp_path / "c")
    with pytest.raises(UserError, match="no definition for message type my_pkg/msg/Nothing"):
        writer.write("/x", "my_pkg/msg/Nothing", b"\x00\x01\x00\x00", 1)
    writer.close()


def test_version_9_is_available(tmp_path: Path) -> None:
    with BagWriter(tmp_path / "bag", version=9) as writer:
        write_all(writer, 2)
    assert "version: 9" in (tmp_path / "bag" / "metadata.yaml").read_text()
    assert {t: len(v) for t, v in read_mcap(tmp_path / "bag").items()} == {t: 2 for t in MAKERS}


def test_typestore_copy_of_the_message_equals_the_msg_file() -> None:
    text = (REPO / "msg" / "FeatureActivations.msg").read_text(encoding="utf-8")
    assert EMBEDDED_FEATURE_ACTIVATIONS_MSG == text
    assert FEATURE_ACTIVATIONS_MSG == text


def test_typestore_hash_matches_the_rosidl_generated_one() -> None:
    """The hash stored in bags is the one ROS computes for the built message (if built here)."""
    generated = REPO / "install" / "pai_ros" / "share" / "pai_ros" / "msg" / "FeatureActivations.json"
    if not generated.is_file():
        pytest.skip("no colcon overlay in this checkout")
    import json

    hashes = json.loads(generated.read_text())["type_hashes"]
    expected = next(h["hash_string"] for h in hashes if h["type_name"] == "pai_ros/msg/FeatureActivations")
    assert typestore().hash_rihs01(FEATURE_ACTIVATIONS_TYPE) == expected


def test_installed_message_types_are_loaded_on_demand() -> None:
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.EMPTY)
    if not ensure_type(store, "diagnostic_msgs/msg/DiagnosticArray"):
        pytest.skip("no ROS share/ directories on this machine (AMENT_PREFIX_PATH)")
    assert store.hash_rihs01("diagnostic_msgs/msg/DiagnosticArray") == STORE.hash_rihs01(
        "diagnostic_msgs/msg/DiagnosticArray")
    assert not ensure_type(store, "no_such_pkg/msg/Nothing")
