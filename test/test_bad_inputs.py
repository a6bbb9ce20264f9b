"""Bad input to the converters and loaders: one clear line, no traceback, nothing that looks complete.

Complements test_bag_to_parquet.py (truncated MCAP, random bytes), test_policy_loading.py
(missing/corrupt checkpoint files), test_sae_core.py and test_sae_cli.py (SAE and activation
tensors). The commands a user types run as real `pai` processes; the loaders a node calls are
driven through their Python API.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import run_pai
from safetensors.torch import save_file

from pai_ros.errors import UserError
from pai_ros.features.tables import FEATURES_REQUIRED


def one_line_error(result, needle: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and ": error: " in lines[0], result.stderr
    assert needle in lines[0], lines[0]
    return lines[0]


def header_lies(path: Path) -> None:
    """Make a safetensors header claim more data than the file holds (sizes that lie)."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    name = next(k for k in header if k != "__metadata__")
    begin, end = header[name]["data_offsets"]
    header[name]["data_offsets"] = [begin, end + 10_000]
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])


# ------------------------------------------------------------------ bags (pai bag2parquet)


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pai_ros.bags.typestore import typestore
    from pai_ros.bags.writer import BagWriter

    store = typestore()
    T = store.types
    bag = tmp_path_factory.mktemp("bags") / "small"
    with BagWriter(bag) as w:
        for i in range(3):
            js = T["sensor_msgs/msg/JointState"](
                header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=i, nanosec=0), frame_id=""),
                name=["a"], position=np.array([float(i)]), velocity=np.array([], float), effort=np.array([], float))
            w.write("/joint_states", "sensor_msgs/msg/JointState",
                    bytes(store.serialize_cdr(js, "sensor_msgs/msg/JointState")), 10 + i)
    return bag


def _sqlite_bag(path: Path, source: Path) -> Path:
    from rosbags.rosbag2 import Reader, Writer
    from rosbags.rosbag2.enums import StoragePlugin

    from pai_ros.bags.typestore import typestore

    with Reader(source) as reader, Writer(path, version=8, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conns = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=typestore()) for c in reader.connections}
        for conn, t, raw in reader.messages():
            writer.write(conns[conn.id], t, raw)
    return path


@pytest.mark.parametrize("case, needle", [
    ("missing_mcap", "is incomplete: metadata.yaml lists small_0.mcap, which is not there"),
    ("metadata_names_another_type", "none are in the storage files"),
    ("metadata_not_yaml", "its metadata.yaml is not valid YAML; give its storage file instead"),
    ("metadata_empty", "its metadata.yaml is empty; give its storage file instead"),
    ("metadata_of_something_else", "its metadata.yaml is not a rosbag2 metadata file"),
    ("junk_mcap", "small_0.mcap is not MCAP (empty, or no MCAP header)"),
    ("sqlite_truncated", "truncated or corrupt"),
    ("sqlite_rows_point_nowhere", "none are in the storage files"),
])
def test_bag2parquet_bad_bags(case: str, needle: str, small_bag: Path, tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    if case.startswith("sqlite"):
        _sqlite_bag(bag, small_bag)
        db = next(bag.glob("*.db3"))
        if case == "sqlite_truncated":
            db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
        else:
            with sqlite3.connect(db) as con:
                con.execute("UPDATE messages SET topic_id = 99")
    else:
        shutil.copytree(small_bag, bag)
        meta = bag / "metadata.yaml"
        if case == "missing_mcap":
            (bag / "small_0.mcap").unlink()
        elif case == "metadata_names_another_type":
            meta.write_text(meta.read_text().replace("sensor_msgs/msg/JointState", "sensor_msgs/msg/Image"))
        elif case == "metadata_empty":
            meta.write_text("")
        elif case == "metadata_of_something_else":
            meta.write_text("version: 1\n")
        elif case == "junk_mcap":  # nothing there for `pai bag recover` either: no hint to it
            (bag / "small_0.mcap").write_bytes(b"not a bag at all" * 10)
        else:
            meta.write_text("rosbag2_bagfile_information: [unclosed\n")
    one_line_error(run_pai("bag2parquet", str(bag), str(tmp_path / "out"), "--quiet", timeout=120), needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]  # no output, no partial directory


def test_bag_index_counting_more_than_the_storage_holds_is_reported(small_bag: Path, tmp_path: Path) -> None:
    from pai_ros.bags.to_parquet import bag_to_parquet

    bag = tmp_path / "bag"
    shutil.copytree(small_bag, bag)
    meta = bag / "metadata.yaml"
    meta.write_text(meta.read_text().replace("message_count: 3", "message_count: 5"))
    summary = bag_to_parquet(bag, tmp_path / "out", progress=False)
    assert summary.tables == {"joint_states.parquet": 3}
    assert summary.count_mismatch == {"/joint_states": {"listed": 5, "read": 3}}
    assert "warning: the bag lists 5 messages on /joint_states but holds 3" in summary.lines()


# ------------------------------------------------------------------ features tables (pai features analyse)


def features_table(rows: int = 4, num_features: int = 8) -> pa.Table:
    return pa.Table.from_pylist([{
        "stamp_ns": i, "recv_ns": i, "topic": "/features", "sae_id": "s", "num_features": num_features,
        "feature_indices": [i % num_features, (i + 1) % num_features], "activations": [2.0, 1.0],
        "token_counts": [3, 1], "num_tokens": 10, "mean_l0": 1.0, "reconstruction_error": 0.1,
        "ood_threshold": float("nan"), "is_ood": False} for i in range(rows)], schema=FEATURES_REQUIRED)


def test_analyse_accepts_the_reference_table(tmp_path: Path) -> None:
    """The baseline for the cases below: the same table, undamaged, is analysed."""
    pq.write_table(features_table(), tmp_path / "features.parquet")
    res = run_pai("features", "analyse", str(tmp_path), "--quiet", timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "analysis" / "analysis.json").read_text())["frames"] == 4


def _damage(case: str, path: Path) -> None:
    if case == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(3000))
    elif case == "truncated":
        pq.write_table(features_table(rows=200), path)
        path.write_bytes(path.read_bytes()[:-300])
    elif case == "pages_overwritten":  # footer intact, data pages garbage: fails only when read
        pq.write_table(features_table(rows=200), path, compression="zstd")
        raw = bytearray(path.read_bytes())
        raw[4:len(raw) // 2] = np.random.default_rng(1).bytes(len(raw) // 2 - 4)
        path.write_bytes(bytes(raw))
    elif case == "another_schema":
        pq.write_table(pa.table({"stamp_ns": [1], "feature_indices": [["a"]]}), path)
    elif case == "nulls":
        table = features_table()
        col = pa.array(["s", None, "s", "s"])
        pq.write_table(table.set_column(table.schema.get_field_index("sae_id"), "sae_id", col), path)
    elif case == "lengths_differ":
        table = features_table()
        acts = pa.array([[2.0, 1.0], [2.0], [2.0, 1.0], [2.0, 1.0]], pa.list_(pa.float32()))
        pq.write_table(table.set_column(table.schema.get_field_index("activations"), "activations", acts), path)
    elif case == "num_features_absurd":
        pq.write_table(features_table(num_features=2**32 - 1), path)


@pytest.mark.parametrize("case, needle", [
    ("random_bytes", "is not a readable Parquet file"),
    ("truncated", "is not a readable Parquet file"),
    ("pages_overwritten", "features.parquet is"),
    ("another_schema", "is not a pai_ros features table (no column 'recv_ns'; no column 'topic'"),
    ("nulls", "has missing (null) values in column 'sae_id'"),
    ("lengths_differ", "row 1: feature_indices, activations and token_counts differ in length"),
    ("num_features_absurd", "4 frames x 4294967295 features are too many"),
])
def test_analyse_bad_features_tables(case: str, needle: str, tmp_path: Path) -> None:
    _damage(case, tmp_path / "features.parquet")
    one_line_error(run_pai("features", "analyse", str(tmp_path), "--quiet", timeout=120), needle)
    assert not (tmp_path / "analysis").exists() and not list(tmp_path.glob("analysis.partial-*"))


def test_analyse_damaged_record_metadata(tmp_path: Path) -> None:
    pq.write_table(features_table(), tmp_path / "features.parquet")
    (tmp_path / "record.json").write_text(json.dumps({"layout": {"cameras": [{"name": "front"}]}}))
    one_line_error(run_pai("features", "analyse", str(tmp_path), "--quiet", timeout=120),
                   "is not a `pai features record` metadata file")
    assert not (tmp_path / "analysis").exists()


# ------------------------------------------------------------------ SAE directories (load_sae, as the node does)


def _sae_dir(path: Path, cfg: dict | None = None, tensors: dict | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "cfg.json").write_text(json.dumps(cfg or {"d_in": 4, "d_sae": 8, "architecture": "topk", "k": 2}))
    good = {"W_enc": torch.zeros(4, 8), "W_dec": torch.zeros(8, 4), "b_enc": torch.zeros(8), "b_dec": torch.zeros(4)}
    save_file(tensors or good, str(path / "sae_weights.safetensors"))
    return path


@pytest.mark.parametrize("case, needle", [
    ("reference", None),
    ("truncated_weights", "is not a readable safetensors file"),
    ("header_lies", "is not a readable safetensors file"),
    ("cfg_missing", "SAE config cfg.json not found"),
    ("cfg_a_list", "is not a pai_ros SAE config"),
    ("cfg_missing_keys", "is not a pai_ros SAE config (KeyError: 'd_sae')"),
    ("d_in_mismatch", "tensor 'W_enc' has shape [4, 8], cfg.json says [16, 8]"),
    ("d_in_absurd", "tensor 'W_enc' has shape [4, 8], cfg.json says [1000000000000, 8]"),
    ("integer_weights", "must hold finite floating-point numbers"),
])
def test_load_sae_bad_directories(case: str, needle: str | None, tmp_path: Path) -> None:
    from pai_ros.sae.model import load_sae

    cfg = {"d_in": 4, "d_sae": 8, "architecture": "topk", "k": 2}
    d = _sae_dir(tmp_path / "sae", cfg={**cfg, "d_in": {"d_in_mismatch": 16, "d_in_absurd": 10**12}.get(case, 4)},
                 tensors={"W_enc": torch.zeros(4, 8, dtype=torch.int32), "W_dec": torch.zeros(8, 4),
                          "b_enc": torch.zeros(8), "b_dec": torch.zeros(4)} if case == "integer_weights" else None)
    weights = d / "sae_weights.safetensors"
    if case == "truncated_weights":
        weights.write_bytes(weights.read_bytes()[:-20])
    elif case == "header_lies":
        header_lies(weights)
    elif case == "cfg_missing":
        (d / "cfg.json").unlink()
    elif case == "cfg_a_list":
        (d / "cfg.json").write_text("[4, 8]")
    elif case == "cfg_missing_keys":
        (d / "cfg.json").write_text(json.dumps({"d_in": 4}))
    if needle is None:
        assert load_sae(d).sae.d_in == 4
        return
    with pytest.raises(UserError) as info:
        load_sae(d)
    assert needle in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------ activation shards (pai sae train)


def test_sae_train_truncated_or_lying_activation_file(tmp_path: Path) -> None:
    for case in ("truncated", "header_lies"):
        path = tmp_path / f"{case}.safetensors"
        save_file({"activations": torch.randn(64, 8)}, str(path))
        if case == "truncated":
            path.write_bytes(path.read_bytes()[:-100])
        else:
            header_lies(path)
        out = tmp_path / f"out_{case}"
        one_line_error(run_pai("sae", "train", "--activations", str(path), "--output", str(out), "--quiet",
                               timeout=120), "is not a readable safetensors file")
        assert not out.exists() and not list(tmp_path.glob(f"out_{case}.partial-*"))


def _collection(directory: Path, parts: object, meta_rows: int = 6) -> Path:
    from pai_ros.sae.activations import META_TENSORS

    directory.mkdir()
    (directory / "collect.json").write_text(json.dumps({"d": 4, "layout": {"cameras": []}}))
    tensors = {"activations": torch.randn(6, 4)}
    tensors.update({k: torch.zeros(meta_rows, dtype=torch.int32) for k in META_TENSORS})
    save_file(tensors, str(directory / "episode_000000-part0000.safetensors"))
    (directory / "episode_000000.json").write_text(json.dumps({"episode": 0, "frames": 1, "rows": 6, "parts": parts}))
    return directory


@pytest.mark.parametrize("case, parts, meta_rows, needle", [
    ("reference", [{"file": "episode_000000-part0000.safetensors", "rows": 6}], 6, None),
    ("parts_not_a_list", "episode_000000-part0000.safetensors", 6, "has no complete episodes"),
    ("part_not_an_object", ["episode_000000-part0000.safetensors"], 6, "has no complete episodes"),
    ("part_outside_the_directory", [{"file": "../x.safetensors", "rows": 6}], 6, "has no complete episodes"),
    ("rows_missing", [{"file": "episode_000000-part0000.safetensors"}], 6, "has no complete episodes"),
    # A shard whose metadata is short is not its episode's: the episode is left for collect to redo.
    ("metadata_short", [{"file": "episode_000000-part0000.safetensors", "rows": 6}], 5,
     "has no complete episodes"),
])
def test_read_activations_damaged_manifests(case, parts, meta_rows, needle, tmp_path: Path) -> None:
    from pai_ros.sae.shards import read_activations

    d = _collection(tmp_path / "acts", parts, meta_rows)
    if needle is None:
        assert len(read_activations(d)) == 6
        return
    with pytest.raises(UserError) as info:
        read_activations(d)
    assert needle in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------ policy checkpoints (load_act_policy)


def _checkpoint(tiny_act: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "ckpt"
    shutil.copytree(tiny_act, dst)
    return dst


@pytest.mark.parametrize("missing", ["model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json"])
def test_checkpoint_missing_file_is_named(missing: str, tiny_act: Path, tmp_path: Path) -> None:
    from pai_ros.policy.loading import load_act_policy

    ckpt = _checkpoint(tiny_act, tmp_path)
    (ckpt / missing).unlink()
    with pytest.raises(UserError, match=f"is incomplete: missing {missing}$"):
        load_act_policy(ckpt, "cpu")


def test_checkpoint_without_config_json(tiny_act: Path, tmp_path: Path) -> None:
    from pai_ros.policy.loading import load_act_policy

    ckpt = _checkpoint(tiny_act, tmp_path)
    (ckpt / "config.json").unlink()
    with pytest.raises(UserError, match="is not a LeRobot checkpoint: no config.json"):
        load_act_policy(ckpt, "cpu")


@pytest.mark.parametrize("given", ["run", "run/checkpoints", "run/checkpoints/000010"])
def test_lerobot_train_layout_without_pretrained_model(given: str, tiny_act: Path, tmp_path: Path) -> None:
    from pai_ros.policy.loading import load_act_policy

    step = tmp_path / "run" / "checkpoints" / "000010"
    (step / "training_state").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last").symlink_to("000010")
    with pytest.raises(UserError, match=r"looks like a lerobot-train output, but .*pretrained_model/config.json is "
                                        "missing"):
        load_act_policy(tmp_path / given, "cpu")


@pytest.mark.parametrize("case, needle", [
    ("weights_truncated", "model.safetensors is not a readable safetensors file"),
    ("weights_header_lies", "model.safetensors is not a readable safetensors file"),
    ("steps_not_a_list", "is not a LeRobot processor file ('steps' must be a list of objects)"),
    ("normaliser_garbage", "cannot load the processors of"),
    ("weights_nan", "weights that are not finite (NaN or inf) in model.action_head.weight (a training run that "
                    "diverged?); refusing to run it"),
])
def test_checkpoint_damaged_files(case: str, needle: str, tiny_act: Path, tmp_path: Path) -> None:
    from pai_ros.policy.loading import load_act_policy

    ckpt = _checkpoint(tiny_act, tmp_path)
    if case == "weights_truncated":
        weights = ckpt / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif case == "weights_header_lies":
        header_lies(ckpt / "model.safetensors")
    elif case == "weights_nan":  # what a diverged training run saves, without complaint
        from safetensors.torch import load_file

        tensors = load_file(ckpt / "model.safetensors")
        tensors["model.action_head.weight"][0, 0] = float("nan")
        save_file(tensors, str(ckpt / "model.safetensors"))
    elif case == "steps_not_a_list":
        (ckpt / "policy_postprocessor.json").write_text(json.dumps({"name": "x", "steps": "unnormalize"}))
    else:
        next(ckpt.glob("policy_preprocessor_*normalizer*.safetensors")).write_bytes(b"\x10" * 40)
    with pytest.raises(UserError) as info:
        load_act_policy(ckpt, "cpu")
    assert needle in str(info.value) and "\n" not in str(info.value)


def _truncate(path: Path, fraction: float) -> None:
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * fraction)])


@pytest.mark.parametrize("damage, needle", [
    # LeRobot's readers raise their own errors with long tracebacks: one line that names the dataset
    # and episode, with the reader's reason.
    (lambda root: _truncate(next((root / "data").rglob("*.parquet")), 0.5),
     "is damaged: episode 0's data/chunk-000/file-000.parquet is not a readable Parquet file"),
    (lambda root: [_truncate(v, 0.2) for v in (root / "videos").rglob("*.mp4")], "is damaged (episode 2, frame "),
    (lambda root: (root / "meta" / "info.json").write_text(json.dumps(
        {k: v for k, v in json.loads((root / "meta" / "info.json").read_text()).items() if k != "features"})),
     "lacks features: not a complete LeRobotDataset v3.0 info.json"),
])
def test_damaged_dataset_files_are_one_line(damage, needle: str, tiny_dataset, tiny_act: Path, tmp_path: Path) -> None:
    root, _ = tiny_dataset
    damaged = tmp_path / "ds"
    shutil.copytree(root, damaged)
    damage(damaged)
    episode = "2" if "episode 2" in needle else "0"
    result = run_pai("attention", "--dataset-root", str(damaged), "--episode", episode, "--policy-path",
                     str(tiny_act), "--output-dir", str(tmp_path / "out"), "--no-videos", "--quiet")
    line = one_line_error(result, needle)
    assert line.startswith("pai attention: error: ") and str(damaged) in line
    assert not (tmp_path / "out").exists()  # a failed run leaves no empty output directory behind


@pytest.mark.parametrize("fps", [0, -30, float("nan"), float("inf"), "thirty", "30", None])
def test_an_info_json_whose_fps_is_not_a_positive_number_is_one_line(fps: object, tmp_path: Path) -> None:
    """fps 0 was a ZeroDivisionError in the replay node's timer, "thirty" a ValueError: every command and
    node reads info.json through read_info, which says it in one line."""
    from pai_ros.data.episodes import read_info

    info_path = tmp_path / "meta" / "info.json"
    info_path.parent.mkdir()
    info_path.write_text(json.dumps({"codebase_version": "v3.0", "features": {}, "fps": fps, "total_episodes": 1}))
    with pytest.raises(UserError) as refused:
        read_info(tmp_path)
    shown = f"'{fps}' (text)" if isinstance(fps, str) else fps  # "30" in quotes: a number written as text
    assert str(refused.value) == f"fps in {info_path} must be a positive number, got {shown}"


@pytest.mark.parametrize("command", [
    ["sae", "collect", "--output"],
    ["features", "record", "--sae", "SAE", "--output-dir"],
    ["attention", "--episode", "0", "--output-dir"],
])
def test_an_output_directory_that_is_a_file_is_one_line(command: list[str], tiny_dataset, tiny_act: Path,
                                                         tiny_sae: Path, tmp_path: Path) -> None:
    root, _ = tiny_dataset
    taken = tmp_path / "out"
    taken.write_text("mine")
    argv = [str(tiny_sae) if a == "SAE" else a for a in command]
    result = run_pai(*argv, str(taken), "--policy-path", str(tiny_act), "--dataset-root", str(root), "--quiet")
    one_line_error(result, f"the output directory {taken} is a file")  # not "[Errno 17] File exists"
    assert taken.read_text() == "mine"


def test_a_demo_output_directory_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    taken = tmp_path / "out"
    taken.write_text("mine")
    one_line_error(run_pai("demo", "--output-dir", str(taken), "--quiet"), f"the output directory {taken} is a file")
    one_line_error(run_pai("demo", "--output-dir", str(taken / "sub"), "--quiet"),
                   f"cannot create the output directory {taken / 'sub'}: {taken} is a file")
    assert taken.read_text() == "mine"


@pytest.mark.parametrize("command, output, needle", [
    (["attention", "--episode", "0", "--output-dir"], "DS/analysis", "is inside the dataset"),
    (["sae", "collect", "--output"], "ACT/acts", "is inside the checkpoint"),
    (["features", "record", "--sae", "SAE", "--output-dir"], "SAE", "is the SAE"),
    (["features", "record", "--sae", "SAE", "--output-dir"], ".", "contains the dataset"),
])
def test_an_output_inside_an_input_is_refused(command: list[str], output: str, needle: str, tiny_dataset,
                                              tiny_act: Path, tiny_sae: Path, tmp_path: Path) -> None:
    """Files mixed into a dataset, a checkpoint or an SAE directory: other tools read those."""
    root, _ = tiny_dataset
    copies = {"DS": tmp_path / "ds", "ACT": tmp_path / "act", "SAE": tmp_path / "sae"}
    for name, source in (("DS", root), ("ACT", tiny_act), ("SAE", tiny_sae)):
        shutil.copytree(source, copies[name])
    before = {p: sorted(x.name for x in p.rglob("*")) for p in copies.values()}
    out = tmp_path if output == "." else copies[output.split("/")[0]].joinpath(*output.split("/")[1:])
    argv = [str(copies["SAE"]) if a == "SAE" else a for a in command]
    result = run_pai(*argv, str(out), "--policy-path", str(copies["ACT"]), "--dataset-root", str(copies["DS"]),
                     "--quiet")
    one_line_error(result, needle)
    assert {p: sorted(x.name for x in p.rglob("*")) for p in copies.values()} == before


def test_an_output_beside_the_checkpoint_in_its_run_directory_is_fine(tiny_dataset, tiny_act: Path,
                                                                      tmp_path: Path) -> None:
    """The check is against the pretrained_model directory loaded, not the run directory given."""
    root, _ = tiny_dataset
    run = tmp_path / "outputs" / "train" / "myrun"
    shutil.copytree(tiny_act, run / "checkpoints" / "005000" / "pretrained_model")
    (run / "checkpoints" / "last").symlink_to("005000")
    result = run_pai("attention", "--episode", "0", "--output-dir", str(run / "analysis"), "--policy-path",
                     str(run), "--dataset-root", str(root), "--no-videos", "--quiet")
    assert result.returncode == 0, result.stderr
    inside = run / "checkpoints" / "last" / "pretrained_model" / "analysis"
    result = run_pai("attention", "--episode", "0", "--output-dir", str(inside), "--policy-path", str(run),
                     "--dataset-root", str(root), "--quiet")
    one_line_error(result, "is inside the checkpoint")
