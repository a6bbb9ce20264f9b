"""Run a script or module in this process and record the top-level modules it imported.

make_bundle.py's import probe: what a run really imports (lazy imports included), not what a
static scan guesses. The run must exit 0. Appends to ``--out`` (a JSON list) so several runs
add up to one set.

Usage: python module_probe.py --out MODULES.json (--script PATH | --module NAME) -- ARGS...
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from pathlib import Path


def run_and_record(out: Path, target: str, is_module: bool, args: list[str]) -> int:
    before = set(sys.modules)
    sys.argv = [target, *args]
    code = 0
    try:
        if is_module:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            sys.path.insert(0, str(Path(target).resolve().parent))  # as `python SCRIPT` would
            runpy.run_path(target, run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if code != 0:
        return code
    loaded = {m.partition(".")[0] for m in set(sys.modules) - before}
    previous = set(json.loads(out.read_text())) if out.is_file() else set()
    out.write_text(json.dumps(sorted(previous | loaded)))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--script", help="a Python file, run as `python SCRIPT ARGS`")
    which.add_argument("--module", help="a module, run as `python -m MODULE ARGS`")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="after --: the run's own arguments")
    ns = ap.parse_args()
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    return run_and_record(ns.out, ns.module or ns.script, ns.module is not None, args)


if __name__ == "__main__":
    sys.exit(main())
