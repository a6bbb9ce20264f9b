"""`pai attention` end to end on the tiny dataset and tiny ACT (real subprocesses), and its errors."""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import run_pai
from pai_ros.media.video import count_frames


@pytest.fixture(scope="module")
def cross_attention_run(tiny_dataset, tiny_act, tmp_path_factory) -> Path:
    root, _ = tiny_dataset
    out = tmp_path_factory.mktemp("att")
    res = run_pai("attention", "--dataset-root", str(root), "--episode", "0", "2", "--policy-path", str(tiny_act),
                  "--output-dir", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "pai attention: 2 episode(s), 24 frames" in res.stdout
    return out


def test_attention_parquet_schema_and_values(cross_attention_run: Path, tiny_scene) -> None:
    table = pq.read_table(cross_attention_run / "episode_000000" / "attention.parquet")
    for col in ("frame_index", "timestamp", "camera", "grid_h", "grid_w", "weights", "latent_share", "state_share"):
        assert col in table.column_names
    rows = table.to_pylist()
    assert len(rows) == tiny_scene.episode_length * 2  # one row per frame and camera
    assert {r["camera"] for r in rows} == {"front", "wrist"}
    for r in rows:
        assert len(r["weights"]) == r["grid_h"] * r["grid_w"] == 2 * 3  # 64x80 -> 2x3 tokens
    # Raw cross-attention mass: per frame, both cameras + latent + state add up to 1 (rows of a softmax).
    by_frame: dict[int, float] = {}
    for r in rows:
        by_frame[r["frame_index"]] = by_frame.get(r["frame_index"], r["latent_share"] + r["state_share"]) + sum(r["weights"])
    assert all(abs(v - 1.0) < 1e-4 for v in by_frame.values()), by_frame
    assert [r["frame_index"] for r in rows[::2]] == list(range(tiny_scene.episode_length))


def test_actions_parquet_compares_predicted_and_recorded(cross_attention_run: Path, tiny_dataset) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root, repo_id = tiny_dataset
    rows = pq.read_table(cross_attention_run / "episode_000002" / "actions.parquet").to_pylist()
    ds = LeRobotDataset(repo_id, root=root, episodes=[2])
    assert len(rows) == len(ds)
    for r, i in zip(rows, range(len(ds))):
        assert np.allclose(r["recorded"], ds[i]["action"].numpy())
        assert np.allclose(r["abs_error"], np.abs(np.array(r["predicted"]) - np.array(r["recorded"])), atol=1e-6)


def test_videos_decode_with_one_frame_per_dataset_frame(cross_attention_run: Path, tiny_scene) -> None:
    for name in ("front.mp4", "wrist.mp4", "combined.mp4"):
        assert count_frames(cross_attention_run / "episode_000000" / name) == tiny_scene.episode_length
    summary = json.loads((cross_attention_run / "episode_000000" / "summary.json").read_text())
    assert summary["frames"] == tiny_scene.episode_length and summary["mode"] == "queue"
    # Which checkpoint and dataset made it (resolved: a lerobot-train `last` link names its step).
    assert Path(summary["policy_path"]).is_absolute() and (Path(summary["policy_path"]) / "config.json").is_file()
    assert (Path(summary["dataset_root"]) / "meta" / "info.json").is_file()


def test_video_colours_are_rgb_not_bgr(cross_attention_run: Path, tiny_dataset) -> None:
    import av

    from pai_ros.data.episodes import iter_episode

    root, _ = tiny_dataset
    frame = next(iter_episode(root, 0))
    u, v = frame.extras["annotation.target_px.front"].astype(int)
    with av.open(str(cross_attention_run / "episode_000000" / "front.mp4")) as c:
        decoded = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    # The red target stays red (R high, B low) under the overlay; a BGR swap would make it blue.
    r, g, b = np.median(decoded[v - 2:v + 3, u - 2:u + 3].reshape(-1, 3), axis=0)
    assert r > b + 60, (r, g, b)


@pytest.mark.parametrize("method", ["rollout", "relevance", "relevance_cross", "input_gradient",
                                    "integrated_gradients"])
def test_other_methods_write_the_same_schema(method: str, tiny_dataset, tiny_act, tmp_path: Path) -> None:
    root, _ = tiny_dataset
    # Each method's own options (another's is refused: test_bad_inputs_are_one_line_and_leave_no_output).
    own = {"integrated_gradients": ["--queries", "executed", "--ig-steps", "4"], "rollout": ["--queries", "executed"]}
    res = run_pai("attention", "--dataset-root", str(root), "--episode", "1", "--policy-path", str(tiny_act),
                  "--output-dir", str(tmp_path), "--method", method, "--mode", "replan", "--no-videos", "--quiet",
                  *own.get(method, ["--relevance-target", "first"]))
    assert res.returncode == 0, res.stderr
    table = pq.read_table(tmp_path / "episode_000001" / "attention.parquet")
    assert set(table.column("method").to_pylist()) == {method}
    weights = np.array(table.column("weights").to_pylist())
    assert weights.shape == (24, 6) and np.all(np.isfinite(weights)) and np.all(weights >= 0)
    assert not list(tmp_path.glob("episode_000001/*.mp4"))


def test_bad_inputs_are_one_line_and_leave_no_output(tiny_dataset, tiny_act, tmp_path: Path) -> None:
    root, _ = tiny_dataset
    broken = tmp_path / "broken_ckpt"
    shutil.copytree(tiny_act, broken)
    (broken / "model.safetensors").unlink()
    cases = [
        (["--episode", "7"], "episode 7 is out of range"),
        (["--dataset-root", str(tmp_path / "none")], "does not exist"),
        (["--dataset-root", str(root / "meta" / "info.json")], "meta/info.json is a file; give the dataset's "
                                                              "directory (the one holding meta/)"),
        (["--policy-path", str(broken)], "missing model.safetensors"),
        (["--queries", "9:3"], "query selection '9:3'"),
        (["--queries", "5:30"], "--queries 5:30: the policy predicts chunks of 10 actions (queries 0..9)"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--method", "gradcam"], "unknown method 'gradcam' (choose from cross_attention, rollout, relevance"),
        (["--method", "relevance", "--relevance-target", "last"], "relevance target 'last' is not one of"),
        # An option the method would ignore is refused, not dropped: the run would explain something else.
        (["--method", "input_gradient", "--queries", "3"], "--queries does not apply: input_gradient explains "
                                                           "--relevance-target"),
        (["--relevance-target", "first"], "--relevance-target does not apply: cross_attention explains --queries"),
        (["--ig-steps", "5", "--ig-baseline", "black"], "--ig-steps and --ig-baseline do not apply: for --method "
                                                        "integrated_gradients only (the method is cross_attention)"),
        (["--faithfulness-steps", "4"], "--faithfulness-steps does not apply: for --faithfulness only"),
        (["--faithfulness", "--method", "rollout"], "--method does not apply: --faithfulness compares"),
        (["--faithfulness", "--mode", "queue"], "--mode does not apply: --faithfulness measures fresh forward passes"),
        (["--faithfulness", "--alpha", "0.3"], "--alpha does not apply: --faithfulness draws curves, not heatmaps"),
        (["--faithfulness", "--no-videos"], "--no-videos does not apply: --faithfulness writes no videos"),
        (["--faithfulness", "--faithfulness-methods", "random", "--ig-steps", "3"],
         "--ig-steps does not apply: integrated_gradients is not among --faithfulness-methods"),
        (["--output-dir", str(tmp_path / "afile")], f"the output directory {tmp_path / 'afile'} is a file"),
    ]
    (tmp_path / "afile").write_text("mine")
    for extra, message in cases:
        args = {"--dataset-root": str(root), "--episode": "0", "--policy-path": str(tiny_act),
                "--output-dir": str(tmp_path / "out")}
        argv = ["attention", "--quiet"]
        for k, v in args.items():
            if k not in extra:
                argv += [k, v]
        res = run_pai(*argv, *extra)
        assert res.returncode == 1, (extra, res.stderr)
        assert message in res.stderr, (extra, res.stderr)
        assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr, res.stderr
    assert not list((tmp_path / "out").glob("episode_*")) if (tmp_path / "out").exists() else True


@pytest.mark.parametrize("command", [
    ["attention", "--dataset-root", "/nowhere", "--policy-path", "/nowhere", "--episode", "0", "--output-dir", "/nowhere",
     "--method", "gradcam"],
    ["attention", "--dataset-root", "/nowhere", "--policy-path", "/nowhere", "--episode", "0", "--output-dir", "/nowhere",
     "--faithfulness-steps", "4"],
    ["demo", "--rate-factor", "0"],
])
def test_a_wrong_option_is_refused_before_torch_and_ros_are_imported(command: list[str]) -> None:
    """Importing torch takes seconds: a typo in an option was said only after it (5 s for pai demo)."""
    import subprocess
    import sys

    script = ("import sys; from pai_ros.cli import main; rc = main(sys.argv[1:]); "
              "print(rc, 'torch' in sys.modules, 'rclpy' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", script, *command], capture_output=True, text=True, timeout=120)
    assert res.stdout.split() == ["1", "False", "False"], res.stdout + res.stderr
    assert res.stderr.count("\n") == 1 and "error:" in res.stderr, res.stderr


def test_policy_camera_missing_from_dataset(tiny_dataset, tmp_path: Path) -> None:
    from pai_ros.policy.random_init import save_random_act

    root, _ = tiny_dataset
    ckpt = save_random_act(tmp_path / "act", {"front": (64, 80), "top": (64, 80)})
    res = run_pai("attention", "--dataset-root", str(root), "--episode", "0", "--policy-path", str(ckpt),
                  "--output-dir", str(tmp_path / "out"), "--quiet")
    assert res.returncode == 1
    assert "needs camera(s) top" in res.stderr
    assert not (tmp_path / "out" / "episode_000000").exists()


def test_a_dataset_of_another_action_width_gives_maps_and_no_action_error(tiny_dataset, tmp_path: Path) -> None:
    # Same cameras and state, another robot's actions (3 recorded, 2 predicted): the maps are
    # still the policy's; the action error has nothing to compare and says so (was a traceback).
    from pai_ros.policy.random_init import save_random_act

    root, _ = tiny_dataset
    ckpt = save_random_act(tmp_path / "act", {"front": (64, 80), "wrist": (64, 80)}, action_dim=2)
    res = run_pai("attention", "--dataset-root", str(root), "--episode", "0", "--policy-path", str(ckpt),
                  "--output-dir", str(tmp_path / "out"), "--no-videos", "--quiet")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert "no recorded actions to compare with (none, or of another width" in res.stdout, res.stdout
    actions = pq.read_table(tmp_path / "out" / "episode_000000" / "actions.parquet").to_pylist()
    assert actions and all(len(r["predicted"]) == 2 and np.isnan(r["mae"]) for r in actions)
