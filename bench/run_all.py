"""`make bench`: run every benchmark, print one table, and write it into bench/RESULTS.md.

Each bench/bench_*.py prints its own tables (figure, this project, the reference measured in
the same run, ratio, target; medians of interleaved rounds with [min-max] where timed); with
``PAI_BENCH_ROWS`` set, bench/common.py's ``print_table`` also appends them to a file, which this
script collects. A benchmark that fails is reported as failed, the others still run, and the
exit status is non-zero. The table replaces the section between the ``make bench`` markers in
RESULTS.md; the hand-written analysis around it stays.

Usage: python bench/run_all.py [--quick] [--only NAME ...] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).parent
RESULTS = BENCH / "RESULTS.md"
BEGIN, END = "<!-- make bench: begin -->", "<!-- make bench: end -->"


@dataclass(frozen=True)
class Bench:
    script: str
    args: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    needs: str = ""  # "root": network namespaces (skipped, with the reason, when not root)


BENCHES = [
    Bench("bench_attention_overhead.py", ("--rounds", "20"), ("--rounds", "3")),
    Bench("bench_render.py", (), ("--reps", "20")),
    Bench("bench_steering.py", ("--rounds", "10"), ("--rounds", "2")),
    Bench("bench_attention_accuracy.py", (), ("--episodes", "0", "--ig-steps", "4")),
    Bench("bench_faithfulness.py", (), ("--episodes", "0", "1", "--frames-per-episode", "4", "--ig-steps", "4",
                                        "--steps", "6", "--timing-rounds", "3")),
    Bench("bench_policy_node.py", ("--seconds", "40"), ("--seconds", "8")),
    Bench("bench_memory.py", ("--ticks", "10"), ("--ticks", "3")),
    Bench("bench_recorder.py", ("--seconds", "60", "--transport", "shm32mb"), ("--seconds", "5", "--transport", "shm32mb")),
    Bench("bench_bag2parquet.py", ("--rounds", "3"), ("--ticks", "60", "--rounds", "1")),
    Bench("bench_sae.py", (), ("--quick",)),
    Bench("bench_sae_step.py", ("--rounds", "20"), ("--quick",)),
    Bench("bench_ood.py", (), ("--quick",)),
    Bench("bench_sae_scale.py", (), ("--quick",)),
    Bench("bench_closed_loop.py", ("--episodes", "50", "--modes", "ensemble", "chunk"), ("--episodes", "5")),
    Bench("bench_closed_loop_steering.py", ("--episodes", "50"), ("--episodes", "5", "--draws", "1")),
    Bench("bench_two_hosts.py", (), ("--quick",), needs="root"),
]


@dataclass
class Outcome:
    bench: Bench
    tables: list[dict]
    seconds: float
    error: str = ""


def met(this: str, ratio: str, target: str) -> str:
    """'yes' / 'NO' when the target is a comparison the row's numbers can be checked against, else ''."""
    t = target.strip()
    if t == "0":
        m = re.match(r"\s*(-?[\d.]+)", this)
        return ("yes" if float(m.group(1)) == 0 else "NO") if m else ""
    m = re.match(r"(<=|>=|<|>)\s*([\d.]+)\s*(x|%)?\s*(\w+)?", t)
    if not m:
        return ""
    op, bound, unit, word = m.group(1), float(m.group(2)), m.group(3), m.group(4)
    # A target with a unit (x, %) is about the ratio column; a bare number is about the figure itself.
    source = ratio if unit and ratio.strip() not in ("", "-") else this
    # A sign counts: a method scoring -1.5x the reference is not ">= 0.9x" of it.
    value = re.search(rf"(-?[\d.]+)\s*(?:x|%)?\s+{word}", source) if word else None
    value = value or re.search(r"(-?[\d.]+)", source)
    if not value:
        return ""
    v = float(value.group(1))
    ok = {"<=": v <= bound, ">=": v >= bound, "<": v < bound, ">": v > bound}[op]
    return "yes" if ok else "NO"


def run(bench: Bench, quick: bool) -> Outcome:
    if bench.needs == "root" and os.geteuid() != 0:
        return Outcome(bench, [], 0.0, "skipped: needs root (network namespaces)")
    script = BENCH / bench.script
    if not script.exists():
        return Outcome(bench, [], 0.0, "skipped: script not present")
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as rows:
        env = dict(os.environ, PAI_BENCH_ROWS=rows.name, PYTHONUNBUFFERED="1")
        args = [sys.executable, str(script), *(bench.quick if quick else bench.args)]
        print(f"\n== {' '.join(args[1:])}", flush=True)
        t0 = time.monotonic()
        proc = subprocess.run(args, env=env)  # output goes straight to the console
        seconds = time.monotonic() - t0
        tables = [json.loads(line) for line in Path(rows.name).read_text().splitlines() if line.strip()]
    return Outcome(bench, tables, seconds, "" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})")


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        mem = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal")) / 1024**2
        mem_text = f", {mem:.0f} GB RAM"
    except (OSError, StopIteration):
        mem_text = ""
    versions = []
    for name in ("torch", "lerobot", "rclpy"):
        try:
            from importlib.metadata import version

            versions.append(f"{name} {version(name if name != 'rclpy' else 'ros-rclpy')}")
        except Exception:  # noqa: BLE001 - a version we cannot read is left out, not fatal
            pass
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical cores{mem_text}, {gpu}, Python {platform.python_version()}, "
            f"{', '.join(versions)}, {platform.system()} {platform.release()}")


def markdown(outcomes: list[Outcome], quick: bool, started: dt.datetime, total_s: float) -> str:
    lines = [f"Run {started:%Y-%m-%d %H:%M} UTC by `make bench{' QUICK=1' if quick else ''}` "
             f"({total_s / 60:.1f} min) on: {machine_description()}.",
             "Timed figures are medians over interleaved rounds with [min-max]; each reference is measured in "
             "the same run. `met` is checked against the target where the target is a comparison.", "",
             "| benchmark | figure | this | reference | ratio | target | met |",
             "|---|---|---|---|---|---|---|"]
    for o in outcomes:
        name = o.bench.script.removesuffix(".py")
        if o.error:
            lines.append(f"| {name} | {o.error} | - | - | - | - | - |")
        for table in o.tables:
            for figure, this, ref, ratio, target in table["rows"]:
                cells = [name, figure, this, ref, ratio, target, met(this, ratio, target)]
                lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    lines += ["", "The tables' own titles (set-up of each measurement):", ""]
    lines += [f"- `{o.bench.script}` ({o.seconds:.0f} s): " + " / ".join(t["title"] for t in o.tables)
              for o in outcomes if o.tables]
    return "\n".join(lines)


def write_results(section: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    block = f"{BEGIN}\n{section}\n{END}"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        head, _, rest = text.partition("\n")
        text = f"{head}\n\n## Latest `make bench`\n\n{block}\n{rest}"
    RESULTS.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs of everything (a smoke test, not figures)")
    ap.add_argument("--only", nargs="*", default=None, help="run only these (e.g. bench_sae bench_memory)")
    ap.add_argument("--no-write", action="store_true", help="print the table, leave RESULTS.md alone")
    args = ap.parse_args()
    chosen = [b for b in BENCHES if args.only is None or b.script.removesuffix(".py") in args.only]
    if not chosen:
        print(f"run_all: error: --only names none of {', '.join(b.script for b in BENCHES)}", file=sys.stderr)
        return 2
    started, t0 = dt.datetime.now(dt.timezone.utc), time.monotonic()
    outcomes = [run(b, args.quick) for b in chosen]
    section = markdown(outcomes, args.quick, started, time.monotonic() - t0)
    print("\n" + section)
    if not args.no_write and not args.quick and args.only is None:
        write_results(section)
        print(f"\nwritten to {RESULTS}")
    elif not args.no_write:
        print(f"\n(not written to {RESULTS.name}: --quick or --only runs are not the full table)")
    return 1 if any(o.error.startswith("FAILED") for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
