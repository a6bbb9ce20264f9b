"""The README's parameter tables, generated from each node's declared ``PARAMS`` (one source of truth).

    python scripts/param_tables.py            # print the tables
    python scripts/param_tables.py --write    # replace them in README.md (between the params markers)

test/test_readme.py fails when README.md and the nodes disagree.
"""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
NODES = ("policy_node", "replay_node", "recorder_node", "sim_node")


def _default(value: object) -> str:
    return f'`"{value}"`' if value == "" else f"`{value}`"


def table(node: str) -> str:
    params = importlib.import_module(f"pai_ros.ros.{node}").PARAMS
    rows = ["| parameter | default | meaning |", "|---|---|---|"]
    for p in params:
        meaning = p.description.replace("|", "\\|")  # a bare | would end the table cell
        rows.append(f"| `{p.name}` | {_default(p.default)} | {meaning} |")
    return "\n".join(rows)


def marker(node: str) -> tuple[str, str]:
    return f"<!-- params:{node} -->", f"<!-- /params:{node} -->"


def readme_tables(text: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for node in NODES:
        begin, end = marker(node)
        m = re.search(re.escape(begin) + r"\n(.*?)\n" + re.escape(end), text, re.S)
        out[node] = m.group(1) if m else None
    return out


def write(text: str) -> str:
    for node in NODES:
        begin, end = marker(node)
        block = f"{begin}\n{table(node)}\n{end}"
        pattern = re.escape(begin) + r"\n.*?\n" + re.escape(end)
        if not re.search(pattern, text, re.S):
            raise SystemExit(f"param_tables: README.md has no {begin} ... {end} block")
        text = re.sub(pattern, lambda _m, b=block: b, text, flags=re.S)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="update README.md in place")
    args = ap.parse_args()
    if args.write:
        README.write_text(write(README.read_text()))
        print(f"updated {README}")
    else:
        for node in NODES:
            print(f"{node}\n{table(node)}\n")


if __name__ == "__main__":
    main()
