"""SAE training at scale without ROS or a policy: streamed shards, the shuffle buffer, held-out
sums, mixed shards refused, and data-parallel training under a real torchrun (gloo, 2 CPU ranks)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pai_ros.errors import UserError
from pai_ros.sae.activations import (
    COLLECT_FILE,
    EpisodeShardWriter,
    complete_episodes,
)
from pai_ros.sae.errors import ActivationFileError, DiskBudgetError
from pai_ros.sae.metrics import ReconstructionAccumulator, reconstruction_metrics
from pai_ros.sae.model import SaeConfig, SparseAutoencoder
from pai_ros.sae.shards import open_shards, read_activations
from pai_ros.sae.stream import BatchStream, iter_heldout, plan_split
from pai_ros.sae.train import TrainSettings, train_sae
from pai_ros.sae.train_stream import train_sae_streaming

META = {"token_index": np.arange(4, dtype=np.int32), "token_kind": np.full(4, 3, dtype=np.int8),
        "camera_index": np.zeros(4, dtype=np.int16), "row": np.zeros(4, dtype=np.int16),
        "col": np.arange(4, dtype=np.int16)}


def write_collection(directory: Path, x: torch.Tensor, episodes: int, shard_tokens: int = 200,
                     dtype: torch.dtype = torch.float32) -> None:
    """``x`` as a collection in collect's format (4 tokens per frame), written by collect's own writer."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / COLLECT_FILE).write_text(json.dumps({
        "d": x.shape[1], "source": {"policy_path": "/nonexistent", "dataset_root": "/nonexistent"},
        "settings": {}, "layout": {"cameras": []}}))
    for e, rows in enumerate(torch.chunk(x, episodes)):
        writer = EpisodeShardWriter(directory, e, shard_tokens, dtype)
        frames = rows.reshape(-1, 4, x.shape[1])
        for f, tokens in enumerate(frames):
            writer.add(tokens, f, META)
        writer.finish(len(frames))


def sparse_data(d: int = 16, f: int = 64, n: int = 12000, k: int = 3, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(f, d, generator=gen)
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    idx = torch.stack([torch.randperm(f, generator=gen)[:k] for _ in range(n)])
    codes = torch.zeros(n, f).scatter_(1, idx, torch.rand(n, k, generator=gen) + 0.5)
    return codes @ dictionary + 0.2


def test_stream_visits_every_training_row_and_no_heldout_row(tmp_path: Path) -> None:
    # Column 0 numbers the rows, so a batch says exactly which rows it holds.
    n = 4000
    x = torch.randn(n, 8)
    x[:, 0] = torch.arange(n, dtype=torch.float32)
    write_collection(tmp_path / "c", x, episodes=10, shard_tokens=100)
    data = open_shards(tmp_path / "c")
    split = plan_split(data, 0.2, 0, chunk_rows=64)
    assert split.by == "episode" and split.heldout_episodes == [8, 9]
    stream = BatchStream(split, 8, 50, buffer_tokens=500, seed=0)
    try:
        assert not stream.resident  # 3200 training rows do not fit the 500-row buffer
        seen = torch.cat([next(stream)[:, 0] for _ in range(3 * 3200 // 50)]).long()
    finally:
        stream.close()
    assert seen.max() < 3200  # held-out episodes 8 and 9 are rows 3200..3999
    assert set(seen.tolist()) == set(range(3200))
    # Shuffled across shards: a batch of 50 rows spans rows of many of the 32 training shards.
    assert len(set((seen[:50] // 100).tolist())) >= 8
    held = torch.cat(list(iter_heldout(split)))[:, 0].long()
    assert sorted(held.tolist()) == list(range(3200, 4000))


def test_row_split_is_disjoint_and_the_same_on_every_rank(tmp_path: Path) -> None:
    x = torch.randn(3000, 4)
    x[:, 0] = torch.arange(3000, dtype=torch.float32)
    save_file({"activations": x}, str(tmp_path / "a.safetensors"))
    split = plan_split(open_shards(tmp_path / "a.safetensors"), 0.1, 3, chunk_rows=256)
    assert split.by == "row"
    held = {int(v) for r in range(2) for rows in iter_heldout(split, r, 2) for v in rows[:, 0]}
    train = {int(v) for p in split.train for v in split.rows(p, False)[:, 0]}
    assert not held & train and len(held | train) == 3000
    assert 200 < len(held) < 400


def test_streamed_metrics_equal_the_in_memory_metrics() -> None:
    x = sparse_data(n=3000)
    sae = SparseAutoencoder(SaeConfig(d_in=16, d_sae=64, k=3, scaling_factor=0.7)).requires_grad_(False)
    torch.nn.init.normal_(sae.W_enc)
    torch.nn.init.normal_(sae.W_dec)
    whole = reconstruction_metrics(sae, x)
    acc = ReconstructionAccumulator(sae)
    for part in torch.split(x, 777):
        acc.add(part)
    parts = acc.result()
    for key in ("fvu", "l0", "cos_sim", "l2_ratio", "dead_fraction_heldout", "dense_fraction"):
        assert parts[key] == pytest.approx(whole[key], rel=1e-5), key
    centred = ((x - x.mean(dim=0)) ** 2).sum()
    assert whole["fvu"] == pytest.approx(float(((x - sae.reconstruct(x)[0]) ** 2).sum() / centred), rel=1e-4)


def test_streaming_training_matches_in_memory_quality(tmp_path: Path) -> None:
    x = sparse_data()
    write_collection(tmp_path / "c", x, episodes=10, shard_tokens=300, dtype=torch.float16)
    settings = TrainSettings(k=3, num_features=64, steps=800, batch_size=256)
    streamed = train_sae_streaming(open_shards(tmp_path / "c"), settings, buffer_tokens=2048, progress=False)
    memory = train_sae(read_activations(tmp_path / "c"), settings, progress=False)
    assert streamed.metrics["streamed"] and streamed.metrics["storage_dtype"] == "float16"
    assert streamed.metrics["heldout_tokens"] == memory.metrics["heldout_tokens"] == 1200
    assert streamed.metrics["fvu"] < 0.3
    assert abs(streamed.metrics["fvu"] - memory.metrics["fvu"]) < 0.05


def test_a_shard_unlike_its_manifest_leaves_its_episode_out_for_collect_to_redo(tmp_path: Path) -> None:
    # Another width, or another episode's shard copied under this one's name: the episode is
    # incomplete (train leaves it out with a note, collect does it again), not an error train
    # stops on for good while collect, counting the episode done, would never repair it.
    write_collection(tmp_path / "w", torch.randn(800, 8), episodes=2)
    other = torch.randn(200, 6)
    save_file({"activations": other, **{k: torch.zeros(200, dtype=torch.int32) for k in
                                         ("episode_index", "frame_index", "token_index", "token_kind",
                                          "camera_index", "row", "col")}},
              str(tmp_path / "w" / "episode_000001-part0000.safetensors"))
    shards = open_shards(tmp_path / "w")
    assert shards.episodes == [0] and shards.incomplete == [1]
    assert sorted(complete_episodes(tmp_path / "w", 8)) == [0]  # what collect's resume sees: episode 1 to redo
    write_collection(tmp_path / "c", torch.randn(800, 8), episodes=2)
    shutil.copy(tmp_path / "c" / "episode_000000-part0000.safetensors",
                tmp_path / "c" / "episode_000001-part0000.safetensors")  # same rows and width, episode 0's tokens
    shards = open_shards(tmp_path / "c")
    assert shards.episodes == [0] and shards.incomplete == [1]


def test_a_collection_from_before_episode_headers_still_opens_whole(tmp_path: Path) -> None:
    # Shards written before they recorded their episode, and a collect.json without
    # episodes_requested: every episode complete, none left out, none said to be missing.
    from safetensors.torch import load_file

    from pai_ros.sae.train_output import not_collected

    write_collection(tmp_path / "old", torch.randn(800, 8), episodes=2)
    for shard in (tmp_path / "old").glob("*.safetensors"):
        save_file(load_file(str(shard)), str(shard))  # no metadata, as before
    shards = open_shards(tmp_path / "old")
    assert shards.episodes == [0, 1] and shards.incomplete == [] and not_collected(shards) == []
    assert sorted(complete_episodes(tmp_path / "old", 8)) == [0, 1]


def test_one_shard_of_a_collection_is_refused_naming_the_collection(tmp_path: Path) -> None:
    # Trained as a file from elsewhere, it gave an SAE that named no policy and held no episode out whole.
    write_collection(tmp_path / "c", torch.randn(800, 8), episodes=2)
    shard = tmp_path / "c" / "episode_000000-part0000.safetensors"
    with pytest.raises(ActivationFileError) as err:
        open_shards(shard)
    assert str(err.value) == (f"{shard} is one shard of the collection {tmp_path / 'c'}: give the collection "
                              "(--activations DIR), whose SAE then knows its policy, dataset and episodes")
    shutil.copy(shard, tmp_path / "alone.safetensors")  # the same file on its own is activations from elsewhere
    assert open_shards(tmp_path / "alone.safetensors").rows == 200  # shards hold 200 rows here
    shutil.copy(shard, tmp_path / "c" / "merged.safetensors")  # a file of the user's own beside the shards
    assert open_shards(tmp_path / "c" / "merged.safetensors").rows == 200


def test_mixed_dtypes_are_refused_in_one_line(tmp_path: Path) -> None:
    write_collection(tmp_path / "t", torch.randn(800, 8), episodes=2)
    writer = EpisodeShardWriter(tmp_path / "t", 1, 200, torch.float16)  # episode 1 again, stored as float16
    for f, tokens in enumerate(torch.randn(400, 8).reshape(-1, 4, 8)):
        writer.add(tokens, f, META)
    writer.finish(100)
    with pytest.raises(ActivationFileError, match="mixes shard dtypes") as err:
        open_shards(tmp_path / "t")
    assert "\n" not in str(err.value)
    # The in-memory read (benchmarks, peers) checks the files with the same code and line.
    with pytest.raises(ActivationFileError, match="mixes shard dtypes"):
        read_activations(tmp_path / "t")


def test_data_parallel_training_under_torchrun_matches_one_process(tmp_path: Path) -> None:
    """Two gloo ranks through a real torchrun: same held-out metrics as one process (within noise)."""
    x = sparse_data(n=8000)
    write_collection(tmp_path / "c", x, episodes=10, shard_tokens=400)
    args = ["sae", "train", "--activations", str(tmp_path / "c"), "--k", "3", "--num-features", "64",
            "--steps", "400", "--batch-size", "256", "--eval-frames", "0", "--quiet", "--shuffle-buffer", "1024"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "pai_ros.cli", *args, "--output", str(tmp_path / "one")],
                         check=False, capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "pai_ros.cli", *args, "--output", str(tmp_path / "two")],
                         check=False, capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "on 2 ranks" in two.stdout
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())["metrics"]
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())["metrics"]
    assert m2["ranks"] == 2 and m1["ranks"] == 1
    assert m1["heldout_tokens"] == m2["heldout_tokens"] and m1["train_tokens"] == m2["train_tokens"]
    print(f"1 process: FVU {m1['fvu']:.4f}; 2 ranks: FVU {m2['fvu']:.4f}")
    assert m1["fvu"] < 0.4 and abs(m1["fvu"] - m2["fvu"]) < 0.05
    assert m2["l0"] == pytest.approx(3.0)
    # Only rank 0 wrote, and nothing staged is left behind.
    assert not list(tmp_path.glob(".two.*"))


def test_torchrun_ranks_with_different_arguments_are_refused(tmp_path: Path) -> None:
    x = sparse_data(n=2000)
    write_collection(tmp_path / "c", x, episodes=4)
    # Each rank reads its own --steps from the environment torchrun gives it.
    script = tmp_path / "launch.py"
    script.write_text(
        "import os, sys\nfrom pai_ros.cli import main\n"
        "steps = '10' if os.environ['RANK'] == '0' else '11'\n"
        f"sys.exit(main(['sae', 'train', '--activations', {str(tmp_path / 'c')!r}, '--output', "
        f"{str(tmp_path / 's')!r}, '--k', '2', '--expansion', '2', '--steps', steps, '--quiet']))\n")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        str(script)], check=False, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode != 0
    # Each rank prints the one line (torchrun then adds its own failure summary). The two ranks
    # share one stderr pipe, so their lines can land interleaved: count the messages, not lines.
    said = r.stderr.count("pai sae train: error: torchrun ranks were started with different arguments")
    assert said == 2 and "rank(s) 1 differ from rank 0" in r.stderr, r.stderr[-3000:]
    assert not (tmp_path / "s").exists()


# ----------------------------------------------------------------------------- collection


def test_collect_estimates_refuses_over_max_disk_and_stores_float16(tiny_act: Path, tiny_dataset, tmp_path) -> None:
    from conftest import run_pai

    root, _ = tiny_dataset
    base = ["sae", "collect", "--policy-path", str(tiny_act), "--dataset-root", str(root), "--quiet"]
    # 3 episodes x 12 frames x 14 tokens x (32 x 2 bytes + 19 bytes of metadata) = 41,832 bytes.
    refused = run_pai(*base, "--output", str(tmp_path / "big"), "--max-disk", "40kB")
    lines = [line for line in refused.stderr.strip().splitlines() if line.strip()]
    assert refused.returncode == 1 and len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "41.8 kB" in lines[0] and "more than --max-disk 40.0 kB" in lines[0]
    assert not list((tmp_path / "big").glob("*.safetensors")) and not (tmp_path / "big" / COLLECT_FILE).exists()
    bad = run_pai(*base, "--output", str(tmp_path / "bad"), "--max-disk", "lots")
    assert bad.returncode == 1 and "cannot read 'lots' as a size" in bad.stderr
    ok = run_pai(*base, "--output", str(tmp_path / "ok"), "--max-disk", "1MB")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "estimate for 3 episode(s): 36 frames x 14 tokens = 504 tokens of width 32: about 41.8 kB" in ok.stdout
    data = open_shards(tmp_path / "ok")
    assert data.dtype == "float16" and data.rows == 504
    on_disk = sum(f.stat().st_size for f in (tmp_path / "ok").glob("*.safetensors"))
    assert 41_832 <= on_disk < 41_832 * 1.2  # the estimate is the data; shard headers add a little


def test_torchrun_collect_splits_episodes_and_redoes_a_killed_ranks_episode(tiny_act: Path, tiny_dataset,
                                                                           tmp_path: Path) -> None:
    """Two gloo ranks collect what one process does; a rank's unfinished episode is redone once."""
    from conftest import run_pai

    root, _ = tiny_dataset
    args = ["sae", "collect", "--policy-path", str(tiny_act), "--dataset-root", str(root), "--quiet",
            "--shard-tokens", "100", "--device", "cpu"]
    # One intra-op thread in every process: float sums depend on the thread count, and the
    # comparison below is exact (a CI run differed in the last bits with 2 threads vs 1).
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = run_pai(*args, "--output", str(tmp_path / "one"), env=env)
    assert one.returncode == 0, one.stderr[-2000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "-m", "pai_ros.cli", *args, "--output", str(tmp_path / "two")]
    two = subprocess.run(torchrun, check=False, capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "collected 504 tokens from 3 episode(s) into" in two.stdout and "on 2 ranks" in two.stdout
    a, b = read_activations(tmp_path / "one"), read_activations(tmp_path / "two")
    assert torch.equal(a.activations, b.activations)
    # What a rank killed in the middle of episode 1 leaves: some parts, no manifest, a temp file.
    manifest = json.loads((tmp_path / "two" / "episode_000001.json").read_text())
    (tmp_path / "two" / "episode_000001.json").unlink()
    (tmp_path / "two" / manifest["parts"][-1]["file"]).unlink()
    (tmp_path / "two" / ".episode_000001-part0001.safetensors.tmp-99999").write_bytes(b"partial")
    again = subprocess.run(torchrun, check=False, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "from 1 episode(s) into " in again.stdout and "(2 episode(s) were already complete)" in again.stdout
    c = read_activations(tmp_path / "two")
    assert torch.equal(a.activations, c.activations)  # nothing missing, nothing twice
    assert sorted(p.name for p in (tmp_path / "two").glob("episode_000001-part*")) == \
        [p["file"] for p in manifest["parts"]]


def test_ranks_compare_paths_as_the_directories_they_name(tmp_path: Path, monkeypatch) -> None:
    # `--output acts` from two working directories is two directories: compared as written, the ranks
    # agreed and split one collection between them. `acts` and its absolute path are one directory.
    from pai_ros.sae.distributed import same_everywhere

    tmp_path = tmp_path.resolve()  # the working directory is reported without links: compare like with like
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    given = {"output": "acts", "steps": 10, "policy_path": "lerobot/act_aloha"}
    monkeypatch.chdir(tmp_path / "a")
    in_a = same_everywhere(given, ("output", "policy_path"))
    assert in_a["output"] == str(tmp_path / "a" / "acts") and in_a["steps"] == "10"
    assert in_a["policy_path"] == "lerobot/act_aloha"  # a hub id, not a local path: as given
    assert same_everywhere({**given, "output": str(tmp_path / "a" / "acts")}, ("output",))["output"] == in_a["output"]
    monkeypatch.chdir(tmp_path / "b")
    assert same_everywhere(given, ("output", "policy_path")) != in_a


def test_a_rank_that_died_is_one_line_in_the_others() -> None:
    from pai_ros.sae.distributed import World

    world = World(rank=1, size=2, backend="gloo")
    with pytest.raises(UserError, match=r"rank 1: another rank stopped during a training step \(Connection closed by "
                                        r"peer \[127.0.0.1\]:1234\); see that rank's own error") as err:
        with world._peers("during a training step"):
            raise RuntimeError("[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:547] Connection closed by peer "
                               "[127.0.0.1]:1234\nException raised from recvBytes")
    assert "\n" not in str(err.value)
    # This rank's own failure (out of memory, a bug) is not blamed on another rank.
    with pytest.raises(torch.OutOfMemoryError):
        with world._peers("during a training step"):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_max_disk_counts_what_a_resumed_collection_holds_already(tmp_path: Path) -> None:
    from pai_ros.sae.sizing import Estimate, check_fits

    estimate = Estimate(frames=100, tokens_per_frame=10, d=8, dtype="float16")
    check_fits(estimate, tmp_path, max_disk=estimate.bytes + 5_000)
    with pytest.raises(DiskBudgetError, match="besides the 10.0 kB collected before, more than --max-disk"):
        check_fits(estimate, tmp_path, max_disk=estimate.bytes + 5_000, already=10_000)
