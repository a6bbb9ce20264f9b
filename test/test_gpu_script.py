"""bench/gpu: the latency script runs where only torch, torchvision and numpy are installed.

The GPU machine has no package index. Here it is imitated by a fresh venv whose site-packages
sees only this environment's torch, torchvision, numpy and what they require (through links):
the bundle that make_bundle.py builds is installed into it with run_on_gpu.sh, exactly as on
the GPU machine, and tick_latency.py runs on the CPU. The bundle is built for this Python
(the GPU machine's is built for 3.12: same distributions, compiled ones for that Python).
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GPU = REPO / "bench" / "gpu"
sys.path.insert(0, str(GPU))

import make_bundle  # noqa: E402
import stand_ins  # noqa: E402
import tick_latency  # noqa: E402

pytestmark = pytest.mark.slow
LOCAL = f"{sys.version_info.major}.{sys.version_info.minor}"


def _clean_env(**extra: str) -> dict[str, str]:
    # Nothing of this environment's overlay or venv may leak into the imitation of the GPU machine.
    drop = ("PYTHONPATH", "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "LD_LIBRARY_PATH", "VIRTUAL_ENV", "OUT")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return env


def _torch_only_python(root: Path) -> Path:
    """A fresh venv that sees torch, torchvision, numpy and their requirements, nothing else."""
    links = root / "torch_only"
    links.mkdir(parents=True)
    for name in sorted(make_bundle.requirement_closure(make_bundle.TARGET_PROVIDES)):
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        for top in sorted({f.parts[0] for f in dist.files or [] if not f.parts[0].startswith("..")}):
            src, dst = Path(dist.locate_file(top)), links / top
            if src.exists() and not dst.exists():
                dst.symlink_to(src)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "torch_only.pth").write_text(f"{links}\n")
    return python


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("lerobot") is None:
        pytest.skip("the bundle is built from an installed LeRobot, and this environment has none")
    out = tmp_path_factory.mktemp("gpu") / "bundle"
    proc = subprocess.run([sys.executable, str(GPU / "make_bundle.py"), "--out", str(out), "--python", LOCAL],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out


def test_bundle_holds_lerobot_and_pai_ros_but_not_torch(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    names = {w["name"].lower() for w in manifest["wheels"]}
    # matplotlib: `pai sae train` draws its training curves (device_check.sh runs it).
    assert {"lerobot", "pai_ros", "safetensors", "draccus", "matplotlib"} <= names
    assert not names & {"torch", "torchvision", "numpy", "pillow", "pyarrow", "pandas", "av", "datasets"}
    assert sorted(p.name for p in bundle.glob("*.whl")) == sorted(w["wheel"] for w in manifest["wheels"])


def test_latency_script_runs_with_only_torch_and_the_bundle(bundle: Path, tmp_path: Path) -> None:
    python = _torch_only_python(tmp_path)
    probe = ("import importlib.util as u; import torch, torchvision, numpy; "
             "print([m for m in ('lerobot', 'pyarrow', 'pandas', 'cv2', 'rclpy', 'pai_ros') if u.find_spec(m)])")
    seen = subprocess.run([str(python), "-c", probe], env=_clean_env(), capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)  # not the checkout: its pai_ros would be found
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout.strip() == "[]"  # the imitation is faithful: none of these is there

    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(GPU / "run_on_gpu.sh"), "--device", "cpu", "--ticks", "3", "--warmup", "0"],
                          env=_clean_env(PYTHON=str(python), BUNDLE=str(bundle), OUT=str(out),
                                         SITE_DIR=str(tmp_path / "site")),
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    print(proc.stdout)  # the CPU smoke figures, for whoever runs with -s
    assert "| capture on, SAE on" in proc.stdout and "target p99 <= 10 ms" in proc.stdout
    data = json.loads((out / "tick_latency.json").read_text())
    assert data["stand_ins"] == sorted(stand_ins.NAMES)
    import torch

    assert data["environment"]["torch"] == torch.__version__  # this environment's own torch, through the links
    assert data["params_m"] > 50  # the default ACT (51.6 M), not a small one
    assert set(data["settings"]) == {s.name for s in tick_latency.SETTINGS}
    for stats in data["settings"].values():
        assert stats["n"] == 3
        assert 0 < stats["min_ms"] <= stats["p50_ms"] <= stats["p99_ms"] <= stats["max_ms"]

    # The stand-ins change nothing that is computed: the same first tick with the real packages.
    core, used = tick_latency.import_core(force_stand_ins=False)
    assert used == []
    both = tick_latency.SETTINGS[-1]
    ref = tick_latency.measure(core, "cpu", ticks=1, warmup=0, seed=0, settings=(both,))["settings"][both.name]
    got = data["settings"][both.name]
    assert got["first_action"] == pytest.approx(ref["first_action"], abs=1e-4)
    assert got["first_shares"] == pytest.approx(ref["first_shares"], abs=1e-4)
    assert len(got["first_features"]) == 8


def test_device_check_runs_every_part_with_only_torch_and_the_bundle(bundle: Path, tmp_path: Path) -> None:
    # The one run a GPU session makes, here on the CPU at toy sizes: every part must pass on a
    # machine that has only torch and the bundle, and leave its figures where the summary says.
    python = _torch_only_python(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(GPU / "device_check.sh"), "--smoke"],
                          env=_clean_env(PYTHON=str(python), BUNDLE=str(bundle), OUT=str(out),
                                         SITE_DIR=str(tmp_path / "site")),
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    lines = (out / "device_check.md").read_text().splitlines()
    cells = [line.split("|") for line in lines if line.startswith("| ")]
    rows = {row[1].strip(): row[2].strip() for row in cells}
    assert {k: v for k, v in rows.items() if k != "part"} == {
        "tick_latency": "0", "sae_step": "0", "sae_train": "0", "pai_sae_train": "0",
        "torchrun_train": "skipped: NCCL data parallelism needs two GPUs; 0 here (smoke mode)"}
    ticked = json.loads((out / "tick_latency.json").read_text())["settings"]
    assert set(ticked) == {"capture off, SAE off", "capture on, SAE on"} and ticked["capture on, SAE on"]["n"] == 2
    trained = json.loads((out / "sae_train.json").read_text())
    assert set(trained["rates"]) == {"streamed", "in memory"} and all(trained["rates"].values())
    metrics = json.loads((out / "pai_sae_train_metrics.json").read_text())
    assert (metrics["d_in"], metrics["d_sae"], metrics["l0"]) == (512, 4096, pytest.approx(32.0))
    assert "chosen latents" in (out / "logs" / "sae_step.log").read_text()

    # A budget too short for any part: each is skipped and said to be, the summary is still written.
    short = subprocess.run(["bash", str(GPU / "device_check.sh"), "--smoke", "--budget", "30"],
                           env=_clean_env(PYTHON=str(python), BUNDLE=str(bundle), OUT=str(tmp_path / "short"),
                                          SITE_DIR=str(tmp_path / "site2")),
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert short.returncode == 1, short.stdout[-2000:] + short.stderr[-2000:]
    summary = (tmp_path / "short" / "device_check.md").read_text()
    assert summary.count("skipped: no time left of the 30 s budget") == 3, summary
    assert "| pai_sae_train | skipped: sae_train wrote no shards |" in summary


def test_bad_input_is_one_line_and_non_zero(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run(["bash", str(GPU / "run_on_gpu.sh")], env=_clean_env(BUNDLE=str(empty)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("run_on_gpu: no bundle in") and proc.stderr.count("\n") == 1

    proc = subprocess.run(["bash", str(GPU / "device_check.sh"), "--probe-modules", str(tmp_path / "m.json")],
                          env=_clean_env(BUNDLE=str(empty)), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "device_check: --probe-modules needs --smoke (the probe runs here, on the CPU)")

    proc = subprocess.run([sys.executable, str(GPU / "make_bundle.py"), "--python", "twelve"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr

    proc = subprocess.run([sys.executable, str(GPU / "tick_latency.py"), "--ticks", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip() == "tick_latency: --ticks must be >= 1 and --warmup >= 0"

    import torch

    if not torch.cuda.is_available():
        proc = subprocess.run([sys.executable, str(GPU / "tick_latency.py"), "--device", "cuda"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines() == [
            "tick_latency: device 'cuda' requested but CUDA is not available here; use cpu (--device cpu, or "
            "-p device:=cpu for a node)"]
