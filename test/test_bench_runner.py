"""bench/run_all.py (`make bench`): targets checked, tables collected from real runs, RESULTS.md updated in place."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
import run_all  # noqa: E402


@pytest.mark.parametrize("this, ratio, target, expected", [
    ("455 ms", "1.023x", "<= 1.05x", "yes"),
    ("455 ms", "1.300x", "<= 1.05x", "NO"),
    ("20 ms", "4.4%", "<= 5%", "yes"),
    ("50k", "0.95x", ">= 1.0x", "NO"),
    ("0.32 s", "1.19x time (0.84x throughput)", ">= 0.8x throughput", "yes"),
    ("0", "-", "0", "yes"),
    ("3", "-", "0", "NO"),
    ("0.950", "-", "-", ""),
    ("10.5 kB", "0.011x", "< 1x", "yes"),
    ("2 kB", "1.5x", "< 1x", "NO"),
    ("0.703", "14.1x chance; mass x10.43", ">= 0.70", "yes"),
    ("0.0117", "-", "<= 0.2", "yes"),
    ("1.0%", "-", "<= 5%", "yes"),
    ("x", "-", "written = received = published", ""),
    ("-0.187 [-0.51-0.03]", "-1.50x IG", ">= 0.90x IG", "NO"),
    ("0.882 [0.84-0.90]", "1.00x IG", ">= 0.90x IG", "yes"),
])
def test_met_reads_the_target(this: str, ratio: str, target: str, expected: str) -> None:
    assert run_all.met(this, ratio, target) == expected


def test_results_section_is_replaced_and_the_rest_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Hand-written analysis\n\nkeep me\n")
    monkeypatch.setattr(run_all, "RESULTS", results)
    run_all.write_results("first table")
    run_all.write_results("second table")
    text = results.read_text()
    assert text.count(run_all.BEGIN) == 1 and "second table" in text and "first table" not in text
    assert text.index("second table") < text.index("keep me")


def test_a_real_quick_run_collects_the_table() -> None:
    out = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--quick", "--only", "bench_render", "--no-write"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| bench_render |")]
    assert len(rows) == 2 and "2-cam overlay tick" in rows[0]


def test_unknown_bench_name_is_one_line() -> None:
    out = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--only", "nope"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "error: --only names none" in out.stderr
