"""Reading activation rows from shards (positioned reads, reused memory) and the allocator
setting that keeps a CPU training step's tensors on the heap. No ROS, no policy."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from pai_ros.errors import UserError
from pai_ros.sae.shards import RowReader, open_shards, read_activation_rows


def single_file(path: Path, x: torch.Tensor) -> Path:
    # A second tensor before and after 'activations' in the file: the reader must use its offset.
    save_file({"a_first": torch.arange(7, dtype=torch.int64), "activations": x, "z_last": torch.ones(3)}, str(path))
    return path


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_rows_read_equal_the_stored_rows_in_every_storage_type(tmp_path: Path, dtype: torch.dtype) -> None:
    x = torch.randn(57, 6).to(dtype)
    shard = open_shards(single_file(tmp_path / "a.safetensors", x)).shards[0]
    for start, stop in ((0, 57), (5, 6), (13, 40), (56, 57)):
        got = read_activation_rows(shard, start, stop)
        assert got.dtype == torch.float32
        assert torch.equal(got, x[start:stop].float())


def test_one_reader_reused_across_shards_of_different_sizes_and_types(tmp_path: Path) -> None:
    xs = [torch.randn(n, 5).to(dt) for n, dt in ((40, torch.float16), (9, torch.float32), (120, torch.bfloat16),
                                                 (3, torch.float16))]
    shards = [open_shards(single_file(tmp_path / f"{i}.safetensors", x)).shards[0] for i, x in enumerate(xs)]
    reader = RowReader()
    for shard, x in zip(shards * 2, xs * 2):
        assert torch.equal(reader.read(shard, 1, shard.rows).clone(), x[1:].float())


def test_non_finite_rows_name_the_shard(tmp_path: Path) -> None:
    x = torch.randn(30, 4).half()
    x[17, 2] = float("nan")
    shard = open_shards(single_file(tmp_path / "bad.safetensors", x)).shards[0]
    assert torch.isfinite(read_activation_rows(shard, 0, 17)).all()  # the rows before it are fine
    with pytest.raises(UserError, match=r"bad\.safetensors.*NaN or inf \(rows 10-30\)"):
        read_activation_rows(shard, 10, 30)


def test_a_shard_cut_short_after_opening_is_one_line(tmp_path: Path) -> None:
    path = single_file(tmp_path / "cut.safetensors", torch.randn(50, 4))
    shard = open_shards(path).shards[0]
    with open(path, "r+b") as f:
        f.truncate(shard.data_offset + 20 * 4 * 4 + 3)
    assert read_activation_rows(shard, 0, 20).shape == (20, 4)
    with pytest.raises(UserError, match="changed during training") as err:
        read_activation_rows(shard, 10, 30)
    assert "\n" not in str(err.value)
    path.unlink()
    with pytest.raises(UserError, match="changed during training"):
        read_activation_rows(shard, 0, 5)


HEAP_PROBE = r"""
import resource, sys, torch
import pai_ros.sae.train as T
if sys.argv[1] == "default":
    T.keep_step_tensors_on_heap = lambda: False  # what training did before the setting
gen = torch.Generator().manual_seed(0)
def batches():  # no large block loaded and freed first (as when training streams)
    while True:
        yield torch.randn(1024, 128, generator=gen)
stats = T.InputStats(torch.zeros(128), 128.0)
T.fit_sae(batches(), stats, 128, T.TrainSettings(steps=5, expansion=8, batch_size=1024), progress=False)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
T.fit_sae(batches(), stats, 128, T.TrainSettings(steps=40, expansion=8, batch_size=1024), progress=False)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 40)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_cpu_training_steps_reuse_heap_memory_instead_of_faulting_it_in() -> None:
    """Fresh processes, the demo SAE's shape (128 -> 1024, batch 1024): without the setting each
    step maps and faults in its multi-MiB tensors afresh (measured 230-320 faults a step), with it
    they are reused (27-36)."""
    faults = {}
    for mode in ("default", "set"):
        out = subprocess.run([sys.executable, "-c", HEAP_PROBE, mode], capture_output=True, text=True, check=True)
        faults[mode] = float(out.stdout.strip().splitlines()[-1])
    assert faults["set"] * 3 < faults["default"], faults
