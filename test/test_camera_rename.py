"""A dataset whose cameras are named otherwise than the policy's: --rename-map and the checkpoint's own map.

The tiny dataset's cameras are ``front, wrist``. A policy with the same weights but a camera called
``top`` must, given ``front=top``, predict exactly what the ``front`` policy predicts: the same
images reached the same weights under another name.
"""

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import run_pai


def _top_act(directory: Path) -> Path:
    """tiny_act's weights (same seed and shapes) with its front camera called top."""
    from pai_ros.policy.random_init import save_random_act

    return save_random_act(directory, {"top": (64, 80), "wrist": (64, 80)}, state_dim=3, action_dim=3,
                           chunk_size=10, n_action_steps=10)


def _with_saved_rename(ckpt: Path, out: Path, rename_map: dict[str, str]) -> Path:
    """A copy of ``ckpt`` as lerobot-train writes it with ``--rename_map`` (the preprocessor's rename step)."""
    shutil.copytree(ckpt, out)
    path = out / "policy_preprocessor.json"
    pipeline = json.loads(path.read_text())
    step = next(s for s in pipeline["steps"] if s["registry_name"] == "rename_observations_processor")
    step["config"]["rename_map"] = rename_map
    path.write_text(json.dumps(pipeline))
    return out


@pytest.mark.parametrize("text, expected", [
    ("top=front", {"top": "front"}),
    (" top = front , side=wrist ", {"top": "front", "side": "wrist"}),
    ('{"observation.images.top": "observation.images.front"}', {"top": "front"}),  # lerobot-train's own form
    ('{"top": "front"}', {"top": "front"}),
    ("observation.images.top=front", {"top": "front"}),
])
def test_the_rename_map_reads_both_forms(text: str, expected: dict) -> None:
    from pai_ros.data.camera_rename import parse_rename_map

    assert parse_rename_map(text) == expected


@pytest.mark.parametrize("text, message", [
    ("top", "is not DATASET_CAMERA=POLICY_CAMERA"),
    (" , ", "an empty rename map"),
    ('{"observation.state": "observation.state.pos"}', "only cameras can be renamed"),
    ('{"top": 1}', "maps names to names"),
    ("{top: front}", "not a JSON object"),
    ("top=front,top=wrist", "named twice"),
    ("top=", "is not a camera name"),
])
def test_a_bad_rename_map_is_one_line(text: str, message: str) -> None:
    from pai_ros.data.camera_rename import parse_rename_map

    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse_rename_map(text)


def _predicted(out: Path) -> np.ndarray:
    return np.stack(pq.read_table(out / "episode_000000" / "actions.parquet").column("predicted").to_pylist())


def test_a_renamed_camera_feeds_the_policy_the_dataset_camera_it_names(tiny_dataset, tiny_act, tmp_path: Path) -> None:
    root, _ = tiny_dataset
    top = _top_act(tmp_path / "top_act")
    base = ["attention", "--dataset-root", str(root), "--episode", "0", "--quiet"]

    refused = run_pai(*base, "--policy-path", str(top), "--output-dir", str(tmp_path / "refused"))
    assert refused.returncode == 1
    # The line names what to give: the dataset camera the policy does not use, as the one it lacks.
    assert "needs camera(s) top, but" in refused.stderr and "--rename-map front=top" in refused.stderr
    assert refused.stderr.strip().count("\n") == 0, refused.stderr
    away = run_pai(*base, "--policy-path", str(tiny_act), "--output-dir", str(tmp_path / "away"),
                   "--rename-map", "wrist=front,front=side")
    assert away.returncode == 1 and "reads wrist as front (--rename-map wrist=wrist keeps" in away.stderr, \
        away.stderr

    renamed = run_pai(*base, "--policy-path", str(top), "--output-dir", str(tmp_path / "renamed"),
                      "--rename-map", "front=top")
    assert renamed.returncode == 0, renamed.stderr
    same = run_pai(*base, "--policy-path", str(tiny_act), "--output-dir", str(tmp_path / "same"), "--no-videos")
    assert same.returncode == 0, same.stderr
    np.testing.assert_allclose(_predicted(tmp_path / "renamed"), _predicted(tmp_path / "same"), atol=1e-6)

    episode = tmp_path / "renamed" / "episode_000000"
    assert set(pq.read_table(episode / "attention.parquet").column("camera").to_pylist()) == {"top", "wrist"}
    assert (episode / "top.mp4").is_file() and not (episode / "front.mp4").exists()
    assert json.loads((episode / "summary.json").read_text())["camera_rename"] == {"front": "top"}
    # The same directory read with another map would mix two inputs under one policy: refused.
    mixed = run_pai(*base, "--policy-path", str(top), "--output-dir", str(tmp_path / "renamed"),
                    "--rename-map", "wrist=top,front=wrist", "--episode", "1")
    assert mixed.returncode == 1 and "camera rename front -> top; now wrist -> top, front -> wrist" in mixed.stderr, \
        mixed.stderr


def test_the_checkpoints_own_rename_map_reads_its_training_data(tiny_dataset, tiny_act, tmp_path: Path) -> None:
    # lerobot-train --rename_map='{"observation.images.front": "observation.images.top"}' wrote this checkpoint.
    from pai_ros.policy.loading import load_act_policy
    from pai_ros.policy.over_dataset import run_episode
    from pai_ros.policy.runner import PolicyRunner

    root, _ = tiny_dataset
    ckpt = _with_saved_rename(_top_act(tmp_path / "top_act"), tmp_path / "trained_renamed",
                              {"observation.images.front": "observation.images.top"})
    loaded = load_act_policy(ckpt, "cpu")
    assert loaded.camera_rename == {"front": "top"}
    renamed = [tick.action for _, tick in run_episode(PolicyRunner(loaded, "replan"), root, 0, progress=False)]
    plain = [tick.action for _, tick in run_episode(PolicyRunner(load_act_policy(tiny_act, "cpu"), "replan"), root, 0,
                                                    progress=False)]
    np.testing.assert_allclose(np.stack(renamed), np.stack(plain), atol=1e-6)

    res = run_pai("attention", "--dataset-root", str(root), "--episode", "0", "--policy-path", str(ckpt),
                  "--output-dir", str(tmp_path / "out"), "--no-videos", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "the dataset's cameras are read as the checkpoint's rename map says (front -> top)" in res.stdout


def test_a_saved_rename_that_swaps_cameras_does_not_swap_the_live_batch(tiny_act, tmp_path: Path) -> None:
    # pai_ros builds batches with the policy's own names: left in the pipeline, the step would swap them.
    from pai_ros.policy.loading import load_act_policy
    from pai_ros.policy.observation import Observation
    from pai_ros.policy.runner import PolicyRunner

    swap = {"observation.images.front": "observation.images.wrist",
            "observation.images.wrist": "observation.images.front"}
    swapped = _with_saved_rename(tiny_act, tmp_path / "swapped", swap)
    rng = np.random.default_rng(0)
    obs = Observation({"front": rng.integers(0, 255, (64, 80, 3), dtype=np.uint8),
                       "wrist": np.zeros((64, 80, 3), dtype=np.uint8)}, np.zeros(3, dtype=np.float32), None)
    loaded = load_act_policy(swapped, "cpu")
    assert loaded.camera_rename == {"front": "wrist", "wrist": "front"}
    # Compared on the batch the model gets: ACT's action cannot tell two same-sized cameras apart
    # when their normalisation is the same (one backbone, one position embedding for both).
    batches = [PolicyRunner(policy, "replan").preprocess(obs) for policy in (loaded, load_act_policy(tiny_act, "cpu"))]
    for key in ("observation.images.front", "observation.images.wrist"):
        assert torch.equal(batches[0][key], batches[1][key]), key


def test_two_cameras_renamed_to_one_name_are_refused(tiny_act) -> None:
    from pai_ros.errors import UserError
    from pai_ros.policy.loading import load_act_policy
    from pai_ros.policy.over_dataset import check_dataset_fits, use_camera_rename
    from pai_ros.policy.runner import PolicyRunner

    runner = PolicyRunner(load_act_policy(tiny_act, "cpu"), "replan")
    assert use_camera_rename(runner, {"front": "wrist"}) == {"front": "wrist"}
    image = {"dtype": "video", "shape": [64, 80, 3], "names": ["height", "width", "channels"]}
    info = {"features": {"observation.images.front": image, "observation.images.wrist": image,
                         "observation.state": {"dtype": "float32", "shape": [3]}}}
    with pytest.raises(UserError, match="two cameras of ds are both called wrist; --rename-map front=front reads"):
        check_dataset_fits(runner, info, Path("ds"))


def test_a_renamed_camera_of_another_size_is_named_by_both_names(tiny_act) -> None:
    from pai_ros.errors import UserError
    from pai_ros.policy.loading import load_act_policy
    from pai_ros.policy.over_dataset import check_dataset_fits, use_camera_rename
    from pai_ros.policy.runner import PolicyRunner

    runner = PolicyRunner(load_act_policy(tiny_act, "cpu"), "replan")
    use_camera_rename(runner, {"top": "front"})
    hwc = ["height", "width", "channels"]
    info = {"features": {"observation.images.top": {"dtype": "video", "shape": [32, 40, 3], "names": hwc},
                         "observation.images.wrist": {"dtype": "video", "shape": [64, 80, 3], "names": hwc},
                         "observation.state": {"dtype": "float32", "shape": [3]}}}
    with pytest.raises(UserError, match="camera 'top' \\(read as 'front'\\) of ds is 32x40"):
        check_dataset_fits(runner, info, Path("ds"))


def test_a_given_map_replaces_the_checkpoints_entry_for_the_same_camera(tiny_act, tmp_path: Path) -> None:
    from pai_ros.policy.loading import load_act_policy
    from pai_ros.policy.over_dataset import use_camera_rename
    from pai_ros.policy.runner import PolicyRunner

    ckpt = _with_saved_rename(tiny_act, tmp_path / "saved", {"observation.images.top": "observation.images.front",
                                                             "observation.images.hand": "observation.images.wrist"})
    runner = PolicyRunner(load_act_policy(ckpt, "cpu"), "replan")
    # side now feeds front, whatever fed it before; the wrist entry stays.
    assert use_camera_rename(runner, {"side": "front"}) == {"hand": "wrist", "side": "front"}


def test_collect_record_and_thumbnails_keep_the_rename(tiny_dataset, tmp_path: Path) -> None:
    # The whole SAE path for a policy whose camera the dataset names otherwise, through the real CLI.
    root, _ = tiny_dataset
    top = _top_act(tmp_path / "top_act")
    data = ["--dataset-root", str(root), "--policy-path", str(top), "--quiet"]
    acts, sae, rec = tmp_path / "acts", tmp_path / "sae", tmp_path / "rec"

    collect = run_pai("sae", "collect", *data, "--episode", "0", "1", "--output", str(acts),
                      "--rename-map", "front=top")
    assert collect.returncode == 0, collect.stderr
    assert json.loads((acts / "collect.json").read_text())["source"]["camera_rename"] == {"front": "top"}
    # Resumed with the cameras read otherwise, the shards would mix two inputs: refused.
    other = run_pai("sae", "collect", *data, "--episode", "2", "--output", str(acts),
                    "--rename-map", "front=wrist,wrist=top")
    assert other.returncode == 1 and "different source" in other.stderr, other.stderr

    train = run_pai("sae", "train", "--activations", str(acts), "--output", str(sae), "--steps", "20",
                    "--batch-size", "64", "--k", "4", "--expansion", "2", "--eval-frames", "4", "--quiet")
    assert train.returncode == 0, train.stderr
    # Action recovery runs the policy on held-out frames: read with the collection's map, it is measured.
    metrics = json.loads((sae / "metrics.json").read_text())
    assert metrics["action_recovered"] is not None, metrics.get("action_recovery_note")
    record = run_pai("features", "record", *data, "--sae", str(sae), "--episode", "1", "--output-dir", str(rec),
                     "--rename-map", "front=top")
    assert record.returncode == 0, record.stderr
    assert json.loads((rec / "record.json").read_text())["camera_rename"] == {"front": "top"}
    analyse = run_pai("features", "analyse", str(rec), "--top-features", "2", "--top-frames", "1",
                      "--quiet")
    assert analyse.returncode == 0, analyse.stderr
    analysis = json.loads((rec / "analysis" / "analysis.json").read_text())
    assert "thumbnails_note" not in analysis, analysis.get("thumbnails_note")
    thumbs = [t for f in analysis["features"] for fr in f["top_frames"] for t in fr["thumbnails"]]
    assert "top" in thumbs  # drawn from the dataset's front camera, under the policy's name


def test_a_recording_from_before_the_map_was_recorded_read_its_cameras_as_named(tmp_path: Path) -> None:
    # record.json written before camera_rename was: nothing renamed then, so continuing it with a map
    # would put two readings of the cameras in one recording.
    from pai_ros.errors import UserError
    from pai_ros.features.record import open_output

    out = tmp_path / "rec"
    out.mkdir()
    before = {"sae_id": "s", "policy_path": "p", "dataset_root": "d", "top_n": 5, "episodes": [0]}
    (out / "record.json").write_text(json.dumps(before))
    with pytest.raises(UserError, match=r"camera rename none; now front -> top\)"):
        open_output(out, {**before, "episodes": [], "camera_rename": {"front": "top"}})
    header = open_output(out, {**before, "episodes": [], "camera_rename": {}})
    assert header["episodes"] == [0] and header["camera_rename"] == {}
