"""``pai sae`` and ``pai features`` end to end on a tiny policy and dataset, through the real CLI.

collect -> train -> calibrate -> record -> analyse, plus resumption and the bad inputs the issue
names: wrong tensor name or shape, SAE/policy dimension mismatch, empty or corrupt shards,
Parquet of another schema, a results directory without analysis.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import run_pai
from safetensors.torch import save_file


def ok(result) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def one_line_error(result, needle: str) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def pipeline(tiny_act: Path, tiny_dataset, tmp_path_factory) -> dict[str, Path]:
    root, _ = tiny_dataset
    work = tmp_path_factory.mktemp("sae_pipeline")
    acts, sae, results = work / "acts", work / "sae", work / "results"
    ok(run_pai("sae", "collect", "--policy-path", str(tiny_act), "--dataset-root", str(root), "--output", str(acts),
               "--quiet"))
    ok(run_pai("sae", "train", "--activations", str(acts), "--output", str(sae), "--expansion", "4", "--k", "4",
               "--steps", "150", "--batch-size", "64", "--eval-frames", "8", "--quiet"))
    calibrated = ok(run_pai("sae", "calibrate", "--sae", str(sae), "--policy-path", str(tiny_act), "--dataset-root",
                            str(root), "--episode", "0", "1", "--evaluate-episode", "2", "--quiet"))
    ok(run_pai("features", "record", "--policy-path", str(tiny_act), "--sae", str(sae), "--dataset-root", str(root),
               "--output-dir", str(results), "--quiet"))
    ok(run_pai("features", "analyse", str(results), "--top-features", "5", "--top-frames", "4", "--dedup-window", "1",
               "--quiet"))
    return {"acts": acts, "sae": sae, "results": results, "root": root, "policy": tiny_act, "work": work,
            "calibrate_stdout": calibrated}


def test_collect_stores_every_token_with_metadata(pipeline) -> None:
    from pai_ros.sae.shards import read_activations

    data = read_activations(pipeline["acts"])
    info = data.info
    # tiny ACT: latent + state + two 2x3 camera grids = 14 tokens per frame, 3 episodes x 12 frames.
    assert info["layout"]["num_tokens"] == 14 and data.d == 32
    assert len(data) == 3 * 12 * 14
    assert sorted(np.unique(data.meta["episode_index"]).tolist()) == [0, 1, 2]
    frame0 = (data.meta["episode_index"] == 1) & (data.meta["frame_index"] == 5)
    assert data.meta["token_index"][frame0].tolist() == list(range(14))
    assert data.meta["token_kind"][frame0][:2].tolist() == [0, 1]  # latent, state
    cams = data.meta["token_kind"][frame0] == 3
    assert data.meta["row"][frame0][cams].tolist() == [0, 0, 0, 1, 1, 1] * 2
    assert data.meta["camera_index"][frame0][cams].tolist() == [0] * 6 + [1] * 6


def test_a_shard_cut_short_is_collected_again_and_left_out_of_training(pipeline, tmp_path) -> None:
    """Counted as collected by its name alone: collect skipped it, and train failed on it."""
    acts = tmp_path / "acts"
    shutil.copytree(pipeline["acts"], acts)
    shard = acts / json.loads((acts / "episode_000002.json").read_text())["parts"][0]["file"]
    size = shard.stat().st_size
    with open(shard, "r+b") as f:
        f.truncate(size // 2)
    result = run_pai("sae", "train", "--activations", str(acts), "--output", str(tmp_path / "sae"), "--k", "4",
                     "--expansion", "4", "--steps", "5", "--batch-size", "64", "--eval-frames", "0", "--quiet")
    ok(result)
    assert "has 1 incomplete episode(s) (2: a shard missing, cut short or not what its manifest says" \
        in result.stderr, result.stderr
    out = ok(run_pai("sae", "collect", "--policy-path", str(pipeline["policy"]), "--dataset-root",
                     str(pipeline["root"]), "--output", str(acts), "--quiet"))
    assert "from 1 episode(s) into " in out and "(2 episode(s) were already complete)" in out
    assert shard.stat().st_size == size


def test_collect_resumes_per_episode_and_refuses_other_settings(pipeline, tmp_path) -> None:
    import shutil

    acts = tmp_path / "acts"
    shutil.copytree(pipeline["acts"], acts)
    (acts / "episode_000001.json").unlink()  # as if interrupted during episode 1
    before = (acts / "episode_000000-part0000.safetensors").stat().st_mtime_ns
    out = ok(run_pai("sae", "collect", "--policy-path", str(pipeline["policy"]), "--dataset-root",
                     str(pipeline["root"]), "--output", str(acts), "--quiet"))
    assert "from 1 episode(s) into " in out and "(2 episode(s) were already complete)" in out
    assert (acts / "episode_000000-part0000.safetensors").stat().st_mtime_ns == before
    assert (acts / "episode_000001.json").is_file()
    other = run_pai("sae", "collect", "--policy-path", str(pipeline["policy"]), "--dataset-root",
                    str(pipeline["root"]), "--output", str(acts), "--cell-stride", "2", "--quiet")
    line = one_line_error(other, "collected with a different settings")
    assert "selection was {" in line and "'cell_stride': 1" in line and "'cell_stride': 2" in line, line


def test_subsampling_keeps_grid_cells_on_a_coarser_grid(pipeline, tmp_path) -> None:
    from pai_ros.sae.shards import read_activations

    ok(run_pai("sae", "collect", "--policy-path", str(pipeline["policy"]), "--dataset-root", str(pipeline["root"]),
               "--episode", "0", "--output", str(tmp_path / "a"), "--cell-stride", "2", "--kinds", "camera",
               "--frame-stride", "3", "--quiet"))
    data = read_activations(tmp_path / "a")
    assert sorted(set(data.meta["frame_index"].tolist())) == [0, 3, 6, 9]
    assert set(data.meta["token_kind"].tolist()) == {3}
    assert set(zip(data.meta["row"].tolist(), data.meta["col"].tolist())) == {(0, 0), (0, 2)}


def test_train_writes_the_sae_directory_contract(pipeline) -> None:
    sae = pipeline["sae"]
    cfg = json.loads((sae / "cfg.json").read_text())
    assert (cfg["d_in"], cfg["d_sae"], cfg["architecture"], cfg["k"]) == (32, 128, "topk", 4)
    assert cfg["scaling_factor"] > 0 and len(cfg["input_mean"]) == 32
    assert cfg["source"]["policy_path"] == str(Path(pipeline["policy"]).resolve())
    document = json.loads((sae / "metrics.json").read_text())
    metrics = document["metrics"]
    for key in ("fvu", "l0", "dead_fraction", "dense_fraction", "cos_sim", "l2_ratio", "action_recovered"):
        assert key in metrics, key
        # The file contract (architecture.md) names these at the top level: tools read metrics.json["fvu"].
        assert document[key] == metrics[key], key
    assert set(document["history"]) >= {"step", "fvu", "l0"}
    assert metrics["l0"] == pytest.approx(4.0) and metrics["split"] == "episode"
    assert metrics["action_recovered"] is not None and metrics["frames"] == 8
    assert (sae / "training_curves.png").stat().st_size > 1000
    assert not list(sae.parent.glob("*.partial-*"))


def test_train_refuses_to_overwrite_and_takes_a_single_file(pipeline, tmp_path) -> None:
    again = run_pai("sae", "train", "--activations", str(pipeline["acts"]), "--output", str(pipeline["sae"]),
                    "--steps", "5", "--quiet")
    one_line_error(again, "already holds an SAE (use --overwrite to replace it)")
    for extra in ((), ("--overwrite",)):  # not an SAE: said without suggesting --overwrite, which would not help
        into_results = run_pai("sae", "train", "--activations", str(pipeline["acts"]), "--output",
                               str(pipeline["results"]), "--steps", "5", "--quiet", *extra)
        one_line_error(into_results, "is not an SAE directory; choose a new --output")
        into_acts = run_pai("sae", "train", "--activations", str(pipeline["acts"]), "--output",
                            str(pipeline["acts"]), "--steps", "5", "--quiet", *extra)
        one_line_error(into_acts, "is the activations")
    path = tmp_path / "acts.safetensors"
    save_file({"activations": torch.randn(300, 6)}, str(path))
    out = ok(run_pai("sae", "train", "--activations", str(path), "--output", str(tmp_path / "s"), "--k", "2",
                     "--steps", "20", "--batch-size", "32", "--quiet"))
    assert "6->48" in out
    metrics = json.loads((tmp_path / "s" / "metrics.json").read_text())["metrics"]
    assert metrics["split"] == "row" and metrics["action_recovered"] is None


def test_train_overwrite_replaces_only_what_train_and_calibrate_wrote(tmp_path) -> None:
    # --overwrite replaces the SAE directory whole: a file the user added there is refused (and
    # kept), while a calibration, made for the old SAE only, goes with it.
    path = tmp_path / "acts.safetensors"
    save_file({"activations": torch.randn(300, 6)}, str(path))
    sae = tmp_path / "s"
    train = ("sae", "train", "--activations", str(path), "--output", str(sae), "--k", "2", "--steps", "10",
             "--batch-size", "32", "--quiet")
    ok(run_pai(*train))
    written = json.loads((sae / ".pai_written.json").read_text())
    assert set(written) == {"cfg.json", "sae_weights.safetensors", "metrics.json", "training_curves.png"}
    (sae / "my_notes.txt").write_text("feature 3 looks at the gripper")
    one_line_error(run_pai(*train, "--overwrite"), "holds file(s) that pai sae train did not write (my_notes.txt)")
    assert (sae / "my_notes.txt").read_text() == "feature 3 looks at the gripper"
    (sae / "my_notes.txt").unlink()
    for name in ("ood.json", "ood_report.json", "ood_errors.png", "ood_positions.safetensors"):
        (sae / name).write_text("{}")  # stands for an earlier calibration: only its names matter here
    ok(run_pai(*train, "--overwrite"))
    assert not list(sae.glob("ood*")), "the old SAE's calibration must not stay beside the new weights"
    assert set(json.loads((sae / ".pai_written.json").read_text())) == set(written)


def test_train_overwrite_keeps_a_file_added_while_it_trained(tmp_path, monkeypatch) -> None:
    # The checks above run before training; a note added during a long training is carried into the
    # new SAE directory, while a calibration of the old SAE made meanwhile goes with the old SAE.
    from pai_ros.sae import train_output
    from pai_ros.sae.train import TrainSettings

    path = tmp_path / "acts.safetensors"
    save_file({"activations": torch.randn(300, 6)}, str(path))
    sae = tmp_path / "s"
    settings = TrainSettings(k=2, steps=10, batch_size=32)
    train_output.run_training(path, sae, settings, progress=False)
    train = train_output.train_sae_streaming

    def _train_while_the_user_writes(*args, **kwargs):  # the long part, before the output is staged
        (sae / "my_notes.txt").write_text("feature 3 looks at the gripper")
        (sae / "ood.json").write_text("{}")  # `pai sae calibrate` on the old SAE, meanwhile
        return train(*args, **kwargs)

    monkeypatch.setattr(train_output, "train_sae_streaming", _train_while_the_user_writes)
    train_output.run_training(path, sae, settings, overwrite=True, progress=False)
    assert (sae / "my_notes.txt").read_text() == "feature 3 looks at the gripper"
    assert not (sae / "ood.json").exists() and (sae / "cfg.json").is_file()
    assert "my_notes.txt" not in json.loads((sae / ".pai_written.json").read_text())


def test_train_keeps_the_sae_when_the_action_metric_cannot_be_measured(pipeline, tmp_path) -> None:
    # The action metric runs after training: a policy that is unnamed, not a policy any more, or
    # another width than the collection's costs that one figure (said, and why), never the SAE.
    from pai_ros.policy.random_init import save_random_act

    acts = tmp_path / "acts"
    shutil.copytree(pipeline["acts"], acts)
    info = json.loads((acts / "collect.json").read_text())
    source = info["source"]
    not_a_policy = tmp_path / "not_a_policy"
    not_a_policy.mkdir()
    wider = save_random_act(tmp_path / "wider", {"front": (64, 80), "wrist": (64, 80)}, dim_model=48)
    replaced = save_random_act(tmp_path / "replaced", {"front": (64, 80), "wrist": (64, 80)}, seed=1)
    unnamed = {k: v for k, v in info.items() if k != "source"}
    cases = {"unnamed": (unnamed, "name no policy or dataset"),
             "no_dataset": ({**info, "source": {k: v for k, v in source.items() if k != "dataset_root"}},
                            "name no policy or dataset"),
             "not_a_policy": ({**info, "source": {**source, "policy_path": str(not_a_policy)}}, str(not_a_policy)),
             "wider": ({**info, "source": {**source, "policy_path": str(wider)}},
                       "reads 32-dim activations but the policy's encoder outputs 48-dim tokens"),
             "replaced": ({**info, "source": {**source, "policy_path": str(replaced)}},
                          "was trained on another policy's tokens")}
    for name, (changed, needle) in cases.items():
        (acts / "collect.json").write_text(json.dumps(changed))
        out = ok(run_pai("sae", "train", "--activations", str(acts), "--output", str(tmp_path / "sae" / name),
                         "--k", "2", "--expansion", "2", "--steps", "5", "--batch-size", "32", "--eval-frames", "2",
                         "--quiet"))
        assert "action recovery not measured" in out and needle in out, (name, out)
        metrics = json.loads((tmp_path / "sae" / name / "metrics.json").read_text())["metrics"]
        assert metrics["action_recovered"] is None and needle in metrics["action_recovery_note"], name
        assert (tmp_path / "sae" / name / "sae_weights.safetensors").stat().st_size > 0
    (acts / "collect.json").write_text(json.dumps({**info, "source": [str(pipeline["policy"])]}))
    one_line_error(run_pai("sae", "train", "--activations", str(acts), "--output", str(tmp_path / "sae" / "list"),
                           "--steps", "5", "--quiet"), "'source' is not an object")
    assert not (tmp_path / "sae" / "list").exists()


@pytest.mark.parametrize("extra, needle", [
    (["--device", "gpu"], "unknown device 'gpu' (use auto, cpu, cuda, cuda:N or mps)"),
    (["--architecture", "relu", "--l1-coeff", "nan"], "--l1-coeff must be at least 0, got nan"),
    (["--l1-coeff", "0.1"], "--l1-coeff is for --architecture relu; topk sets its sparsity with --k"),  # was ignored
    (["--architecture", "relu", "--k", "4"], "--k is for --architecture topk or batchtopk; relu sets its sparsity "
                                             "with --l1-coeff"),  # was ignored too: cfg.json had k null
    (["--max-tokens", "0"], "--max-tokens must be at least 64 (--batch-size), got 0"),
    (["--seed", "-1"], "--seed must lie in [0, 4294967295], got -1"),
    (["--eval-frames", "-1"], "--eval-frames must be at least 0 (0 skips the action metric), got -1"),
])
def test_train_bad_options_are_one_line_and_write_nothing(pipeline, tmp_path, extra, needle) -> None:
    out = tmp_path / "sae"
    result = run_pai("sae", "train", "--activations", str(pipeline["acts"]), "--output", str(out),
                     "--steps", "5", "--batch-size", "64", "--quiet", *extra)
    one_line_error(result, needle)
    assert result.stderr.startswith("pai sae train: error: ")  # the step, as argparse's own errors name it
    assert not out.exists() and not list(tmp_path.glob(".*"))


def test_train_says_which_collected_episodes_it_leaves_out(pipeline, tmp_path) -> None:
    acts = tmp_path / "acts"
    shutil.copytree(pipeline["acts"], acts)
    manifest = json.loads((acts / "episode_000001.json").read_text())
    (acts / manifest["parts"][0]["file"]).unlink()
    result = run_pai("sae", "train", "--activations", str(acts), "--output", str(tmp_path / "sae"), "--k", "4",
                     "--expansion", "4", "--steps", "5", "--batch-size", "64", "--eval-frames", "0", "--quiet")
    ok(result)
    assert ("has 1 incomplete episode(s) (1: a shard missing, cut short or not what its manifest says, or a damaged "
            "manifest), left out" in result.stderr)
    metrics = json.loads((tmp_path / "sae" / "metrics.json").read_text())["metrics"]
    assert metrics["incomplete_episodes_left_out"] == [1]


@pytest.mark.parametrize("tensors, needle", [
    ({"acts": torch.zeros(10, 4)}, "has no tensor 'activations'"),
    ({"activations": torch.zeros(2, 3, 4)}, "must be [N, d]"),
])
def test_train_bad_tensor_is_one_line_and_writes_nothing(tmp_path, tensors, needle) -> None:
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path))
    result = run_pai("sae", "train", "--activations", str(path), "--output", str(tmp_path / "out"), "--quiet")
    one_line_error(result, needle)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.partial-*"))


def test_train_on_empty_or_corrupt_shards(pipeline, tmp_path) -> None:
    import shutil

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "collect.json").write_text((pipeline["acts"] / "collect.json").read_text())
    one_line_error(run_pai("sae", "train", "--activations", str(empty), "--output", str(tmp_path / "o1"), "--quiet"),
                   "no complete episodes")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(pipeline["acts"], corrupt)
    shard = corrupt / "episode_000001-part0000.safetensors"
    shard.write_bytes(b"garbage" * 10)  # no header: not a whole shard, so the episode is left out
    ok(run_pai("sae", "train", "--activations", str(corrupt), "--output", str(tmp_path / "o2"), "--k", "4",
               "--expansion", "4", "--steps", "5", "--batch-size", "64", "--eval-frames", "0", "--quiet"))
    # Whole by its header and size, but not safetensors inside (an unknown dtype): one line.
    data = (pipeline["acts"] / shard.name).read_bytes()
    assert data.count(b'"F16"') == 1
    shard.write_bytes(data.replace(b'"F16"', b'"Q16"'))
    one_line_error(run_pai("sae", "train", "--activations", str(corrupt), "--output", str(tmp_path / "o3"),
                           "--quiet"), "not a readable safetensors file")


def test_dimension_mismatch_between_sae_and_policy(pipeline, tmp_path) -> None:
    path = tmp_path / "a.safetensors"
    save_file({"activations": torch.randn(200, 16)}, str(path))
    ok(run_pai("sae", "train", "--activations", str(path), "--output", str(tmp_path / "s16"), "--k", "2",
               "--steps", "5", "--quiet"))
    for cmd in (["sae", "calibrate", "--sae", str(tmp_path / "s16")],
                ["features", "record", "--sae", str(tmp_path / "s16"), "--output-dir", str(tmp_path / "r")]):
        result = run_pai(*cmd, "--policy-path", str(pipeline["policy"]), "--dataset-root", str(pipeline["root"]),
                         "--episode", "0", "--quiet")
        one_line_error(result, "reads 16-dim activations but the policy's encoder outputs 32-dim")
    assert not (tmp_path / "r" / "episode_000000").exists()


def test_calibration_and_report(pipeline) -> None:
    cal = json.loads((pipeline["sae"] / "ood.json").read_text())
    sae_id = json.loads((pipeline["sae"] / "metrics.json").read_text())["metrics"]["sae_id"]
    assert cal["sae_id"] == sae_id and cal["frames"] == 24 and cal["rule"] == "p99"
    assert cal["percentiles"]["p50"] <= cal["percentiles"]["p99"] == cal["threshold"]
    report = json.loads((pipeline["sae"] / "ood_report.json").read_text())
    assert set(report["corruptions"]) == {"noise", "occlusion", "swapped_cameras", "covered_front", "covered_wrist"}
    assert all(0.0 <= r["auroc"] <= 1.0 for r in report["corruptions"].values())
    assert (pipeline["sae"] / "ood_errors.png").is_file()
    # 24 calibration frames cannot steady a 1% threshold: the command and ood.json say so.
    assert "of 24 calibration frames" in cal["position_score"]["note"]
    assert f"note: {cal['position_score']['note']}" in pipeline["calibrate_stdout"]


def test_record_matches_the_bag2parquet_schema_and_the_token_codes(pipeline) -> None:
    from pai_ros.bags.to_parquet import SCHEMAS

    ep = pipeline["results"] / "episode_000002"
    table = pq.read_table(ep / "features.parquet")
    assert table.schema.remove_metadata().equals(SCHEMAS["features"])
    assert table.num_rows == 12
    rows = table.to_pylist()
    record = json.loads((pipeline["results"] / "record.json").read_text())
    assert record["episodes"] == [0, 1, 2] and rows[0]["sae_id"] == record["sae_id"]
    assert not np.isnan(rows[0]["ood_threshold"])  # calibrated SAE: the threshold is in every row
    tokens = pq.read_table(ep / "feature_tokens.parquet").to_pylist()
    for row, tok in zip(rows, tokens):
        acts = np.asarray(row["activations"])
        assert np.all(np.diff(acts) <= 0)  # strongest first
        by_feature: dict[int, list[float]] = {}
        for f, a in zip(tok["feature_index"], tok["activation"]):
            by_feature.setdefault(f, []).append(a)
        # Frame level = max over tokens, and the count of tokens it fired on.
        assert sorted(row["feature_indices"]) == sorted(by_feature)
        for f, a, c in zip(row["feature_indices"], row["activations"], row["token_counts"]):
            assert a == pytest.approx(max(by_feature[f])) and c == len(by_feature[f])
        assert row["mean_l0"] == pytest.approx(len(tok["feature_index"]) / row["num_tokens"])


def test_variance_of_an_always_on_feature_is_exact(tmp_path) -> None:
    """E[x^2] - E[x]^2 cancels nearly all digits for a feature at 5 +- 0.02: its sums must not be float32."""
    from pai_ros.features.analyse import _pass_statistics
    from pai_ros.features.results import Source
    from pai_ros.features.tables import FEATURES_REQUIRED

    values = (5 + 0.02 * np.random.default_rng(0).standard_normal((2000, 8))).astype(np.float32)
    rows = [{"stamp_ns": i, "recv_ns": i, "topic": "/features", "sae_id": "s", "num_features": 8,
             "feature_indices": list(range(8)), "activations": v.tolist(), "token_counts": [1] * 8, "num_tokens": 8,
             "mean_l0": 8.0, "reconstruction_error": 0.1, "ood_threshold": float("nan"), "is_ood": False}
            for i, v in enumerate(values)]
    path = tmp_path / "features.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=FEATURES_REQUIRED), path)
    stats, _sae_id, _f, frames = _pass_statistics([Source(0, path, None)], progress=False)
    assert frames == 2000
    np.testing.assert_allclose(stats["variance"], np.var(values.astype(np.float64), axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats["mean"], values.astype(np.float64).mean(axis=0), rtol=1e-12)


def test_analysis_ranks_deduplicates_and_draws(pipeline) -> None:
    results = pipeline["results"]
    analysis = json.loads((results / "analysis" / "analysis.json").read_text())
    assert analysis["format"] == "pai_ros.features.analysis/1" and analysis["frames"] == 36
    feats = analysis["features"]
    assert len(feats) == 5 and [f["rank"] for f in feats] == [1, 2, 3, 4, 5]
    scores = [f["stats"]["variance"] for f in feats]
    assert scores == sorted(scores, reverse=True)
    # Recompute the variance of the top feature from the tables: the ranking is on real numbers.
    top = feats[0]["feature"]
    values = []
    for e in range(3):
        for row in pq.read_table(results / f"episode_{e:06d}" / "features.parquet").to_pylist():
            values.append(dict(zip(row["feature_indices"], row["activations"])).get(top, 0.0))
    assert feats[0]["stats"]["variance"] == pytest.approx(np.var(values), rel=1e-4)
    assert feats[0]["top_frames"][0]["activation"] == pytest.approx(max(values), rel=1e-6)
    for f in feats:
        frames = f["top_frames"]
        acts = [t["activation"] for t in frames]
        assert acts == sorted(acts, reverse=True) and len(frames) <= 4
        for i, a in enumerate(frames):
            for b in frames[i + 1:]:
                assert a["episode"] != b["episode"] or abs(a["frame"] - b["frame"]) > 1  # de-duplicated
        for t in frames:
            for cam in ("front", "wrist"):
                assert (results / "analysis" / t["thumbnails"][cam]).stat().st_size > 100
    assert (results / "analysis" / "ranking.png").is_file()


def test_analyse_bad_inputs(pipeline, tmp_path) -> None:
    one_line_error(run_pai("features", "analyse", str(tmp_path), "--quiet"), "has no features.parquet")
    other = tmp_path / "other"
    (other / "episode_000000").mkdir(parents=True)
    pq.write_table(pa.table({"stamp_ns": [1, 2], "x": [0.5, 0.7]}), other / "episode_000000" / "features.parquet")
    one_line_error(run_pai("features", "analyse", str(other), "--quiet"), "is not a pai_ros features table")
    # The output of an earlier step: what leads from it to a results directory, not the next step's advice.
    acts, sae = pipeline["acts"], pipeline["sae"]
    steps = (f"it is a `pai sae collect` output (activations); train an SAE on it (`pai sae train --activations "
             f"{acts} --output S`), record with that SAE (`pai features record --sae S ... --output-dir R`) and "
             "analyse that (`pai features analyse R`): R is the results directory")
    one_line_error(run_pai("features", "ui", str(acts)), f"{acts} has no analysis yet: {steps}")
    one_line_error(run_pai("features", "effects", str(acts), "--quiet"), f"{acts} has no record.json: {steps}")
    one_line_error(run_pai("features", "analyse", str(sae), "--quiet"),
                   f"{sae} has no features.parquet: it is an SAE (`pai sae train` output); record with it "
                   f"(`pai features record --sae {sae} ... --output-dir R`) and analyse that (`pai features analyse "
                   "R`): R is the results directory")


def test_calibration_with_training_episodes_fits_the_camera_state_score(pipeline, tmp_path) -> None:
    """The regression learns from other episodes too; its figures land in ood.json and the report."""
    sae = tmp_path / "sae"
    shutil.copytree(pipeline["sae"], sae)
    out = ok(run_pai("sae", "calibrate", "--sae", str(sae), "--policy-path", str(pipeline["policy"]),
                     "--dataset-root", str(pipeline["root"]), "--episode", "0", "--evaluate-episode", "2",
                     "--state-fit-dataset-root", str(pipeline["root"]), "--state-fit-episode", "1",
                     "--state-fit-frame-stride", "3", "--quiet"))
    cal = json.loads((sae / "ood.json").read_text())
    cs = cal["camera_state"]
    # 12 calibration frames + every 3rd of episode 1's 12 = 16 frames, 2 episodes (so a note says: too few).
    assert (cs["fit_frames"], cs["episodes"], cs["state_dim"]) == (16, 2, 3)
    assert cal["camera_state_fit"] == {"dataset_root": str(pipeline["root"]), "episodes": [1], "frame_stride": 3}
    assert (sae / cs["file"]).is_file() and len(cs["sha256"]) == 64
    assert f"camera-state threshold {cs['threshold']:.4g}" in out and f"note: {cs['episodes_note']}" in out
    report = json.loads((sae / "ood_report.json").read_text())
    assert all(0.0 <= r["camera_state_auroc"] <= 1.0 for r in report["corruptions"].values())
    assert "camera-state AUROC" in out


def test_calibrating_on_the_saes_own_training_episodes_is_said(pipeline) -> None:
    # The SAE reconstructs its training tokens better than new ones: a threshold fitted on them is too low
    # (on the demo, half the held-out episodes' p99). The pipeline calibrates on episodes 0 and 1.
    from pai_ros.data.episodes import episode_ranges
    from pai_ros.sae.calibrate import sae_training_note
    from pai_ros.sae.model import load_sae

    assert episode_ranges([9, 0, 1, 2, 3, 7, 10, 3]) == "0-3, 7, 9-10"

    metrics = json.loads((pipeline["sae"] / "metrics.json").read_text())
    assert metrics["split"] == "episode" and metrics["heldout_episodes"] == [2]
    assert metrics["training_episodes"] == [0, 1]
    note = ("2 of the 2 calibration episodes (0-1) are among those the SAE was trained on: it reconstructs them "
            "better than new data, so this threshold is lower than it should be and flags more ordinary frames than "
            "its target; calibrate on episodes it did not see (it held out 2)")
    assert f"note: {note}" in pipeline["calibrate_stdout"]
    assert json.loads((pipeline["sae"] / "ood.json").read_text())["sae_training_note"] == note
    loaded = load_sae(pipeline["sae"])
    assert sae_training_note(loaded, pipeline["root"], [2]) is None  # held out: nothing to say
    assert sae_training_note(loaded, pipeline["work"], [0, 1]) is None  # another dataset's episodes 0 and 1


def test_evaluating_on_the_saes_own_training_episodes_is_said(pipeline, tmp_path) -> None:
    """Clean frames the SAE trained on reconstruct too well: the AUROCs flatter it, said in the report."""
    assert "sae_training_note" not in json.loads((pipeline["sae"] / "ood_report.json").read_text())  # held-out 2
    sae = tmp_path / "sae"
    shutil.copytree(pipeline["sae"], sae)
    out = ok(run_pai("sae", "calibrate", "--sae", str(sae), "--policy-path", str(pipeline["policy"]),
                     "--dataset-root", str(pipeline["root"]), "--episode", "2", "--evaluate-episode", "0", "--quiet"))
    note = ("1 of the 1 evaluation episodes (0) are among those the SAE was trained on: it reconstructs their clean "
            "frames better than new data, so these AUROCs are higher and the clean flagged fraction lower than on new "
            "data; evaluate on episodes it did not see (it held out 2)")
    assert json.loads((sae / "ood_report.json").read_text())["sae_training_note"] == note
    assert f"note: {note}" in out
    assert "sae_training_note" not in json.loads((sae / "ood.json").read_text())  # calibrated on held-out 2


def test_calibrate_help_states_the_fit_frame_limit_the_code_uses() -> None:
    """--help names the limit without importing torch; it must stay the one the fit applies."""
    from pai_ros.sae.camera_state import MAX_FIT_FRAMES

    out = ok(run_pai("sae", "calibrate", "--help"))
    assert f"({MAX_FIT_FRAMES} with the calibration frames)" in " ".join(out.split())


@pytest.mark.parametrize("extra, needle", [
    (["--state-fit-episode", "1"], "--state-fit-episode needs --state-fit-dataset-root"),
    (["--state-fit-dataset-root", "ROOT", "--state-fit-frame-stride", "0"], "must be at least 1"),
    (["--state-fit-dataset-root", "ROOT", "--state-fit-episode", "0", "2"], "shares episode(s) [0, 2]"),
    # A NaN threshold would switch OOD flagging off without a word; a negative k flags nearly every frame.
    (["--threshold", "sigma", "--sigmas", "nan"], "--sigmas must be a positive number, got nan"),
    (["--threshold", "sigma", "--sigmas", "-3"], "--sigmas must be a positive number, got -3.0"),
])
def test_camera_state_fit_bad_input_is_one_line(pipeline, tmp_path, extra, needle) -> None:
    sae = tmp_path / "sae"
    shutil.copytree(pipeline["sae"], sae)
    before = (sae / "ood.json").read_bytes()
    extra = [str(pipeline["root"]) if a == "ROOT" else a for a in extra]
    one_line_error(run_pai("sae", "calibrate", "--sae", str(sae), "--policy-path", str(pipeline["policy"]),
                           "--dataset-root", str(pipeline["root"]), "--episode", "0", "--evaluate-episode", "2",
                           *extra, "--quiet"), needle)
    assert (sae / "ood.json").read_bytes() == before  # refused before any work: the old calibration stands


def test_a_state_fit_dataset_with_other_cameras_is_one_line_and_changes_nothing(pipeline, tmp_path) -> None:
    other = tmp_path / "other"
    shutil.copytree(pipeline["root"], other)
    info = json.loads((other / "meta" / "info.json").read_text())
    info["features"]["observation.images.side"] = info["features"].pop("observation.images.wrist")
    (other / "meta" / "info.json").write_text(json.dumps(info))
    sae = tmp_path / "sae"
    shutil.copytree(pipeline["sae"], sae)
    before = (sae / "ood.json").read_bytes()
    one_line_error(run_pai("sae", "calibrate", "--sae", str(sae), "--policy-path", str(pipeline["policy"]),
                           "--dataset-root", str(pipeline["root"]), "--episode", "0",
                           "--state-fit-dataset-root", str(other), "--quiet"), str(other))  # names the dataset
    assert (sae / "ood.json").read_bytes() == before


def test_an_analysis_older_than_the_recording_is_said(pipeline, tmp_path) -> None:
    from pai_ros.features.results import ResultsDir

    results = tmp_path / "results"
    shutil.copytree(pipeline["results"], results)
    assert ResultsDir(results).stale_analysis() is None
    shutil.copytree(results / "episode_000000", results / "episode_000009")  # recorded after the analysis
    note = ResultsDir(results).stale_analysis()
    assert note is not None and "also holds episode(s) 9 recorded after it" in note
    effects = run_pai("features", "effects", str(results), "--top-features", "1", "--frames", "2", "--quiet")
    assert "note: the analysis covers" in effects.stderr, effects.stderr


def test_analyse_keeps_the_analysis_when_the_dataset_changed_since_the_recording(pipeline, tmp_path) -> None:
    # Thumbnails come after both passes over the recording: a dataset that changed since (here its
    # videos damaged) costs them, said in a note, not the ranking.
    from pai_ros.features.results import ResultsDir
    from pai_ros.ui.browser import FeatureBrowser

    root, results = tmp_path / "ds", tmp_path / "results"
    shutil.copytree(pipeline["root"], root)
    shutil.copytree(pipeline["results"], results)
    for video in root.rglob("*.mp4"):
        video.write_bytes(video.read_bytes()[:200])
    record = json.loads((results / "record.json").read_text())
    (results / "record.json").write_text(json.dumps({**record, "dataset_root": str(root)}))
    res = run_pai("features", "analyse", str(results), "--top-features", "5", "--quiet")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert "note: no thumbnails (or not all) for episode(s) 0, " in res.stdout, res.stdout
    analysis = json.loads((results / "analysis" / "analysis.json").read_text())
    assert analysis["thumbnails_note"].startswith("no thumbnails (or not all) for episode(s) 0, ")
    assert len(analysis["features"]) == 5 and all(f["top_frames"] for f in analysis["features"])
    assert "no thumbnails (or not all)" in FeatureBrowser(ResultsDir(results)).summary_markdown()


def test_a_run_that_fails_on_its_first_episode_leaves_no_empty_output(pipeline, tmp_path) -> None:
    """A damaged video: collect and record failed after creating their output directory, left empty."""
    root = tmp_path / "ds"
    shutil.copytree(pipeline["root"], root)
    for video in root.rglob("*.mp4"):
        video.write_bytes(video.read_bytes()[:200])
    common = ["--policy-path", str(pipeline["policy"]), "--dataset-root", str(root), "--episode", "0", "--quiet"]
    for cmd, out in ((["sae", "collect", "--output"], tmp_path / "acts"),
                     (["features", "record", "--sae", str(pipeline["sae"]), "--output-dir"], tmp_path / "rec")):
        res = run_pai(*cmd, str(out), *common)
        assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
        assert not out.exists(), (cmd, sorted(p.name for p in out.iterdir()))


def test_record_refuses_another_top_n_into_the_same_results(pipeline, tmp_path) -> None:
    """Episodes kept with 5 and with every feature were ranked together, without a word."""
    results = tmp_path / "results"
    shutil.copytree(pipeline["results"], results)
    res = run_pai("features", "record", "--policy-path", str(pipeline["policy"]), "--sae", str(pipeline["sae"]),
                  "--dataset-root", str(pipeline["root"]), "--episode", "0", "--output-dir", str(results),
                  "--top-n", "5", "--quiet")
    one_line_error(res, "holds features recorded with other settings (top n none: every token; now 5)")


def test_a_collection_stopped_before_its_first_episode_takes_new_settings(pipeline, tmp_path) -> None:
    # A first run refused at frame 0 (activations beyond float16's range: "collect with --dtype
    # bfloat16") left a collect.json that locked its settings: the advice it gave was then refused.
    acts = tmp_path / "acts"
    acts.mkdir()
    shutil.copy(pipeline["acts"] / "collect.json", acts / "collect.json")
    out = ok(run_pai("sae", "collect", "--policy-path", str(pipeline["policy"]), "--dataset-root",
                     str(pipeline["root"]), "--output", str(acts), "--episode", "0", "--dtype", "bfloat16", "--quiet"))
    assert "from 1 episode(s) into " in out
    info = json.loads((acts / "collect.json").read_text())
    assert info["settings"]["dtype"] == "bfloat16" and info["episodes_requested"] == [0]
    # With an episode in it, other settings are refused as before.
    other = run_pai("sae", "collect", "--policy-path", str(pipeline["policy"]), "--dataset-root",
                    str(pipeline["root"]), "--output", str(acts), "--episode", "1", "--quiet")
    one_line_error(other, "collected with a different settings")


def test_train_says_which_requested_episodes_were_never_collected(pipeline, tmp_path) -> None:
    acts = tmp_path / "acts"
    shutil.copytree(pipeline["acts"], acts)
    assert json.loads((acts / "collect.json").read_text())["episodes_requested"] == [0, 1, 2]
    for path in acts.glob("episode_000002*"):  # a collect stopped before it reached episode 2
        path.unlink()
    result = run_pai("sae", "train", "--activations", str(acts), "--output", str(tmp_path / "sae"), "--k", "4",
                     "--expansion", "4", "--steps", "5", "--batch-size", "64", "--eval-frames", "0", "--quiet")
    ok(result)
    assert "lacks 1 of the episodes collect was asked for (2: interrupted?)" in result.stderr, result.stderr
    assert json.loads((tmp_path / "sae" / "metrics.json").read_text())["episodes_not_collected"] == [2]


def test_collect_and_train_refuse_outputs_that_are_not_theirs(pipeline, tmp_path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    into_notes = run_pai("sae", "collect", "--policy-path", str(pipeline["policy"]), "--dataset-root",
                         str(pipeline["root"]), "--output", str(notes), "--episode", "0", "--quiet")
    one_line_error(into_notes, "holds other files (todo.txt) and is not a `pai sae collect` directory")
    assert sorted(p.name for p in notes.iterdir()) == ["todo.txt"]
    inside = run_pai("sae", "train", "--activations", str(pipeline["acts"]), "--output",
                     str(pipeline["acts"] / "sae"), "--steps", "5", "--quiet")
    one_line_error(inside, "choose a path outside it")
    assert not (pipeline["acts"] / "sae").exists()


def test_one_process_commands_refuse_torchrun(pipeline) -> None:
    import os

    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0"}
    for command in (("sae", "calibrate", "--sae", str(pipeline["sae"])), ("features", "record", "--sae",
                                                                          str(pipeline["sae"]), "--output-dir", "x"),
                    ("features", "effects", str(pipeline["results"]))):
        policy = () if command[1] == "effects" else ("--policy-path", str(pipeline["policy"]), "--dataset-root",
                                                     str(pipeline["root"]))
        one_line_error(run_pai(*command, *policy, env=env), "runs in one process: start it without torchrun")
