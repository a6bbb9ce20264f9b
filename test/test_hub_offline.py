"""Hub ids resolve offline: checkpoints and datasets placed in a temporary HF_HOME the way the
hub client (``hf download``) and LeRobot (``LeRobotDataset(repo_id)``) lay them out are found;
missing ones give one line with the download command. Nothing here can reach a network.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import run_pai
from helpers.hub_layout import place_in_hub_cache, tree_state
from pai_ros.errors import UserError

MODEL = "lerobot/act_tiny_test"
DATASET = "pai/tiny_demo"


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HF_HOME of this test's own; no other cache variable may point elsewhere."""
    home = tmp_path / "hf_home"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_LEROBOT_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    return home


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------ checkpoints


def test_hub_checkpoint_loads_from_the_cache(tiny_act: Path, hf_home: Path) -> None:
    from pai_ros.policy.loading import load_act_policy

    snapshot = place_in_hub_cache(tiny_act, hf_home / "hub", MODEL)
    before = tree_state(hf_home)
    loaded = load_act_policy(MODEL, "cpu")
    assert loaded.path == snapshot
    assert loaded.camera_names == ["front", "wrist"]
    assert tree_state(hf_home) == before, "loading wrote into the hub cache"


def test_local_directory_wins_over_the_hub_id(tiny_act: Path, hf_home: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from pai_ros.policy.loading import resolve_checkpoint_dir

    place_in_hub_cache(tiny_act, hf_home / "hub", MODEL)
    shutil.copytree(tiny_act, tmp_path / "work" / MODEL)
    monkeypatch.chdir(tmp_path / "work")
    assert resolve_checkpoint_dir(MODEL).resolve() == (tmp_path / "work" / MODEL).resolve()


def test_missing_hub_checkpoint_says_how_to_download(hf_home: Path) -> None:
    from pai_ros.policy.loading import load_act_policy

    with pytest.raises(UserError) as info:
        load_act_policy("lerobot/act_aloha_sim_transfer_cube_human", "cpu")
    message = _one_line(info)
    assert "'lerobot/act_aloha_sim_transfer_cube_human' is neither a local directory nor in the Hugging Face " \
           f"cache ({hf_home / 'hub'})" in message
    assert message.endswith("download it once with: hf download lerobot/act_aloha_sim_transfer_cube_human")


def test_hub_entry_without_a_snapshot_is_missing(tiny_act: Path, hf_home: Path) -> None:
    # An interrupted download: refs/main names a commit whose snapshot folder never came.
    from pai_ros.policy.loading import load_act_policy

    snapshot = place_in_hub_cache(tiny_act, hf_home / "hub", MODEL)
    shutil.rmtree(snapshot)
    with pytest.raises(UserError, match=f"download it once with: hf download {MODEL}$"):
        load_act_policy(MODEL, "cpu")


def test_hub_snapshot_without_config_says_it_is_the_cache_copy(tiny_act: Path, hf_home: Path) -> None:
    # A repository that is not a LeRobot policy, or a download cut short: the advice about
    # lerobot-train's folders would send the user looking in the wrong place.
    from pai_ros.policy.loading import load_act_policy

    snapshot = place_in_hub_cache(tiny_act, hf_home / "hub", MODEL)
    (snapshot / "config.json").unlink()
    with pytest.raises(UserError) as info:
        load_act_policy(MODEL, "cpu")
    assert _one_line(info) == (f"{snapshot}, the Hugging Face cache's copy of '{MODEL}', has no config.json: not a "
                               "LeRobot policy repository, or a download that did not finish "
                               f"(again: hf download {MODEL})")


def test_newer_config_in_the_hub_cache_is_not_edited_in_place(tiny_act: Path, hf_home: Path, tmp_path: Path) -> None:
    # The snapshot's config.json links to a shared blob: the advice is to edit a copy.
    import json

    from pai_ros.policy.loading import load_act_policy

    src = tmp_path / "src"
    shutil.copytree(tiny_act, src)
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "pretrained_revision": None}))
    snapshot = place_in_hub_cache(src, hf_home / "hub", MODEL)
    with pytest.raises(UserError) as info:
        load_act_policy(MODEL, "cpu")
    assert (f"its hooks read its ACT): copy it (cp -rL {snapshot} DIR, a new DIR), remove those fields from "
            "DIR/config.json and use DIR as the policy path, or train the policy again with LeRobot ") in _one_line(info)


# ------------------------------------------------------------------ datasets


def test_dataset_in_lerobots_home(tiny_dataset, hf_home: Path) -> None:
    from pai_ros.data.source import resolve_dataset_root

    root, _ = tiny_dataset
    shutil.copytree(root, hf_home / "lerobot" / DATASET)
    assert resolve_dataset_root(None, DATASET) == hf_home / "lerobot" / DATASET


def test_dataset_in_an_explicit_lerobot_home(tiny_dataset, hf_home: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from pai_ros.data.source import resolve_dataset_root

    root, _ = tiny_dataset
    monkeypatch.setenv("HF_LEROBOT_HOME", str(tmp_path / "lr"))
    shutil.copytree(root, tmp_path / "lr" / DATASET)
    assert resolve_dataset_root(None, DATASET) == tmp_path / "lr" / DATASET


@pytest.mark.parametrize("ref", ["v3.0", "main"])
def test_dataset_in_the_hub_cache(ref: str, tiny_dataset, hf_home: Path) -> None:
    from pai_ros.data.episodes import iter_episode, read_info, select_episodes
    from pai_ros.data.source import resolve_dataset_root

    root, _ = tiny_dataset
    snapshot = place_in_hub_cache(root, hf_home / "hub", DATASET, kind="dataset", refs=(ref,))
    before = tree_state(snapshot)
    found = resolve_dataset_root(None, DATASET)
    assert found == snapshot
    info = read_info(found)
    assert select_episodes(info, found, None) == [0, 1, 2]
    frames = list(iter_episode(found, 1, info))
    originals = list(iter_episode(root, 1))
    assert len(frames) == len(originals) == 12
    assert all((a.images["front"] == b.images["front"]).all() and (a.action == b.action).all()
               for a, b in zip(frames, originals))
    assert tree_state(snapshot) == before, "reading wrote into the hub cache snapshot"


def test_lerobots_home_wins_over_the_hub_cache(tiny_dataset, hf_home: Path) -> None:
    from pai_ros.data.source import resolve_dataset_root

    root, _ = tiny_dataset
    place_in_hub_cache(root, hf_home / "hub", DATASET, kind="dataset")
    shutil.copytree(root, hf_home / "lerobot" / DATASET)
    assert resolve_dataset_root(None, DATASET) == hf_home / "lerobot" / DATASET


@pytest.mark.parametrize("given", ["absolute", "org_name_shaped"])
def test_directory_given_as_dataset_id_points_to_dataset_root(given: str, tiny_dataset, hf_home: Path,
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pai_ros.data.source import resolve_dataset_root

    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_dataset[0], tmp_path / "recordings" / "ds")
    repo_id = str(tmp_path / "recordings" / "ds") if given == "absolute" else "recordings/ds"
    with pytest.raises(UserError) as info:
        resolve_dataset_root(None, repo_id)
    assert _one_line(info) == (f"'{repo_id}' is a directory here, not a hub dataset id that is cached: give it as "
                               "the dataset root (--dataset-root, or the replay node's dataset_root)")
    with pytest.raises(UserError, match="download it once with"):  # not a directory: the hub's own advice
        resolve_dataset_root(None, "recordings/other")


def test_cached_dataset_id_given_as_dataset_root_points_to_dataset_repo_id(tiny_dataset, hf_home: Path,
                                                                          tmp_path: Path, monkeypatch) -> None:
    # The reverse of the test above: an id given as a directory (that does not exist here).
    from pai_ros.data.episodes import read_info

    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_dataset[0], hf_home / "lerobot" / DATASET)
    with pytest.raises(UserError) as info:
        read_info(Path(DATASET))
    assert _one_line(info) == (f"dataset root {DATASET} does not exist here, but '{DATASET}' is a hub dataset cached "
                               f"on this machine: give it as --dataset-repo-id {DATASET} (the replay node's "
                               "dataset_repo_id)")
    with pytest.raises(UserError) as info:  # not cached: no such advice
        read_info(Path("pai/other"))
    assert _one_line(info) == "dataset root pai/other does not exist"


def test_a_dataset_root_one_level_off_names_the_dataset(tiny_dataset, tmp_path: Path) -> None:
    from pai_ros.data.episodes import read_info

    shutil.copytree(tiny_dataset[0], tmp_path / "data" / "org" / "robot_a")
    shutil.copytree(tiny_dataset[0], tmp_path / "data" / "robot_b")
    for given, said in ((tmp_path / "data", f"; it holds 2 dataset(s): {tmp_path}/data/org/robot_a, "
                                            f"{tmp_path}/data/robot_b; give one of them"),
                        (tmp_path / "data" / "robot_b" / "meta", f"; it is the meta/ folder of the dataset "
                                                                 f"{tmp_path}/data/robot_b: give that")):
        with pytest.raises(UserError) as info:
            read_info(given)
        assert _one_line(info) == f"{given} is not a LeRobot dataset: no meta/info.json{said}"


def test_missing_dataset_says_how_to_download(hf_home: Path) -> None:
    from pai_ros.data.source import resolve_dataset_root

    with pytest.raises(UserError) as info:
        resolve_dataset_root(None, "lerobot/aloha_sim_transfer_cube_human")
    message = _one_line(info)
    target = hf_home / "lerobot" / "lerobot" / "aloha_sim_transfer_cube_human"
    assert f"looked in {target} and the Hugging Face cache {hf_home / 'hub'}" in message
    assert message.endswith("download it once with: hf download lerobot/aloha_sim_transfer_cube_human "
                            f"--repo-type dataset --revision v3.0 --local-dir {target}")


@pytest.mark.parametrize("layout", ["lerobot_home", "hub_cache"])
def test_partly_downloaded_dataset_names_the_missing_file(layout: str, tiny_dataset, hf_home: Path) -> None:
    # LeRobot downloads only the episodes it is asked for; the rest must not be fetched silently.
    from pai_ros.data.episodes import check_episodes, read_info
    from pai_ros.data.source import resolve_dataset_root

    root, _ = tiny_dataset
    if layout == "lerobot_home":
        shutil.copytree(root, hf_home / "lerobot" / DATASET)
        found = hf_home / "lerobot" / DATASET
    else:
        found = place_in_hub_cache(root, hf_home / "hub", DATASET, kind="dataset")
    (found / "videos" / "observation.images.wrist" / "chunk-000" / "file-000.mp4").unlink()
    assert resolve_dataset_root(None, DATASET) == found
    with pytest.raises(UserError) as info:
        check_episodes(read_info(found), [0], found)
    message = _one_line(info)
    assert f"{found} is incomplete: episode 0 needs videos/observation.images.wrist/chunk-000/file-000.mp4, " \
           "which is missing; no episode has all its files here; download the whole dataset with: hf download " \
           "pai/tiny_demo --repo-type dataset" in message


def test_partial_dataset_names_the_episodes_that_can_be_read(tiny_dataset, tmp_path: Path) -> None:
    # A download of some episodes only: the refusal says which ones are there (--episodes, or the
    # replay node's episodes parameter, can then pick them).
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pai_ros.data.episodes import check_episodes, read_info

    root = tmp_path / "ds"
    shutil.copytree(tiny_dataset[0], root)
    meta = next((root / "meta" / "episodes").rglob("*.parquet"))
    table = pq.read_table(meta)
    column = table["data/file_index"]
    moved = pc.if_else(pc.equal(table["episode_index"], 2), 1, column).cast(column.type)  # a file not downloaded
    pq.write_table(table.set_column(table.schema.get_field_index("data/file_index"), "data/file_index", moved), meta)
    check_episodes(read_info(root), [0, 1], root)
    with pytest.raises(UserError) as info:
        check_episodes(read_info(root), [1, 2], root)
    assert _one_line(info) == (f"{root} is incomplete: episode 2 needs data/chunk-000/file-001.parquet, which is "
                               "missing; the episodes whose files are all here: 0-1")
    # A damaged row of another episode changes nothing for these; the damaged episode itself is one line.
    table = pq.read_table(meta)
    column = table["data/file_index"]
    damaged = pc.if_else(pc.equal(table["episode_index"], 2), pa.scalar(None, column.type), column)
    pq.write_table(table.set_column(table.schema.get_field_index("data/file_index"), "data/file_index", damaged), meta)
    check_episodes(read_info(root), [0, 1], root)
    with pytest.raises(UserError) as info:
        check_episodes(read_info(root), [2], root)
    assert _one_line(info) == f"{meta} has a damaged entry for episode 2 (its file indices cannot be read)"


def test_episode_metadata_with_a_float_index_column_is_read(tiny_dataset, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pai_ros.data.episodes import check_episodes, read_info

    root = tmp_path / "ds"
    shutil.copytree(tiny_dataset[0], root)
    meta = next((root / "meta" / "episodes").rglob("*.parquet"))
    table = pq.read_table(meta)
    as_float = table["episode_index"].cast(pa.float64())
    pq.write_table(table.set_column(table.schema.get_field_index("episode_index"), "episode_index", as_float), meta)
    check_episodes(read_info(root), [0, 2], root)


def test_episode_ranges_stay_short() -> None:
    from pai_ros.data.episodes import episode_ranges

    assert episode_ranges([0, 1, 2, 3, 7, 9, 10]) == "0-3, 7, 9-10"
    assert episode_ranges(list(range(0, 40, 2)), most_runs=3) == "0, 2, 4, ... (20 episodes in all)"


def test_dataset_options_are_exclusive_and_one_is_required() -> None:
    from pai_ros.cli import build_parser

    parser = build_parser()
    for command in (["attention", "--episode", "0", "--policy-path", "p", "--output-dir", "o"],
                    ["sae", "collect", "--policy-path", "p", "--output", "o"],
                    ["sae", "calibrate", "--sae", "s", "--policy-path", "p"],
                    ["features", "record", "--policy-path", "p", "--sae", "s", "--output-dir", "o"]):
        args = parser.parse_args([*command, "--dataset-repo-id", DATASET])
        assert args.dataset_repo_id == DATASET and args.dataset_root is None
        for bad in (["--dataset-root", "d", "--dataset-repo-id", DATASET], []):
            with pytest.raises(SystemExit):
                parser.parse_args([*command, *bad])


# ------------------------------------------------------------------ the command line, end to end


@pytest.mark.slow  # two `pai` processes, one runs the policy over an episode
def test_pai_attention_with_hub_ids_only(tiny_act: Path, tiny_dataset, hf_home: Path, tmp_path: Path) -> None:
    import os

    root, _ = tiny_dataset
    place_in_hub_cache(tiny_act, hf_home / "hub", MODEL)
    place_in_hub_cache(root, hf_home / "hub", DATASET, kind="dataset")
    env = {**os.environ, "HF_HOME": str(hf_home)}
    out = tmp_path / "att"
    r = run_pai("attention", "--policy-path", MODEL, "--dataset-repo-id", DATASET, "--episode", "2",
                "--output-dir", str(out), "--no-videos", "--device", "cpu", "--quiet", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "episode_000002" / "attention.parquet").is_file()

    r = run_pai("attention", "--policy-path", MODEL, "--dataset-repo-id", "pai/not_here", "--episode", "0",
                "--output-dir", str(out), env=env)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pai attention: error: dataset 'pai/not_here' is not on this "
                                                   "machine") and "hf download pai/not_here" in lines[0]


# ------------------------------------------------------------------ replay_node


def _replay(env: dict, *params: str):
    import sys

    from ros_processes import Proc

    args = [sys.executable, "-m", "pai_ros.ros.replay_node", "--ros-args"]
    for p in params:
        args += ["-p", p]
    return Proc(args, env, "replay_node")


@pytest.mark.ros
@pytest.mark.slow
def test_replay_node_plays_a_hub_dataset(tiny_dataset, hf_home: Path, ros_env: dict) -> None:
    root, _ = tiny_dataset
    snapshot = place_in_hub_cache(root, hf_home / "hub", DATASET, kind="dataset")
    env = {**ros_env, "HF_HOME": str(hf_home)}
    node = _replay(env, f"dataset_repo_id:={DATASET}", "episodes:=[0]", "rate_factor:=4.0")
    try:
        assert node.popen.wait(timeout=90) == 0, "\n".join(node.lines)
    finally:
        node.stop()
    assert any(f"replaying {snapshot} episodes [0]" in line for line in node.lines), node.lines
    assert any("replay finished: 12 frames published" in line for line in node.lines), node.lines


@pytest.mark.ros
@pytest.mark.parametrize("params, message", [
    ([f"dataset_repo_id:={DATASET}"], f"dataset '{DATASET}' is not on this machine"),
    ([f"dataset_repo_id:={DATASET}", "dataset_root:=/tmp/x"], "set dataset_root or dataset_repo_id, not both"),
])
def test_replay_node_dataset_errors_are_one_line(params, message, hf_home: Path, ros_env: dict) -> None:
    node = _replay({**ros_env, "HF_HOME": str(hf_home)}, *params)
    assert node.popen.wait(timeout=90) == 1
    node.stop()
    errors = [line for line in node.lines if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("replay_node: error: ") and message in errors[0], node.lines


# ------------------------------------------------------------------ policy_node


@pytest.mark.ros
@pytest.mark.slow  # two node processes; the first loads the policy
def test_policy_node_loads_a_hub_checkpoint(tiny_act: Path, hf_home: Path, ros_env: dict) -> None:
    import sys

    from ros_processes import Proc

    snapshot = place_in_hub_cache(tiny_act, hf_home / "hub", MODEL)
    env = {**ros_env, "HF_HOME": str(hf_home)}
    node = Proc([sys.executable, "-m", "pai_ros.ros.policy_node", "--ros-args", "-p", f"policy_path:={MODEL}",
                 "-p", "state_joint_names:=['x', 'y', 'gripper']", "-p", "device:=cpu"], env, "policy_node")
    try:
        node.wait_for_line(lambda line: "ready:" in line, 90)
    finally:
        node.stop()
    assert any(f"ready: {snapshot} on cpu" in line for line in node.lines), node.lines

    missing = Proc([sys.executable, "-m", "pai_ros.ros.policy_node", "--ros-args", "-p",
                    "policy_path:=lerobot/act_not_downloaded"], env, "policy_node")
    assert missing.popen.wait(timeout=90) == 1
    missing.stop()
    errors = [line for line in missing.lines if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("policy_node: error: 'lerobot/act_not_downloaded' is neither") \
        and errors[0].endswith("hf download lerobot/act_not_downloaded"), missing.lines
