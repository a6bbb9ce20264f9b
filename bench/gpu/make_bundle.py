"""Build bench/gpu/bundle/: the wheels device_check.sh needs on a machine with only torch installed.

The target (a GPU machine) has Python, torch, torchvision and their own dependencies, and no
package index. This script finds, empirically, which distributions the measured paths import:
it runs device_check.sh's parts at toy sizes on the CPU in this environment (tick_latency.py
with the stand-ins of ``stand_ins.py`` in force), and maps the modules they imported to
installed distributions.
It drops what the target already has (torch, torchvision, numpy and everything they require)
and writes one wheel per remaining distribution:

* from the installed files (the dist-info RECORD lists them), when its wheel tags suit the
  target's Python (pure-Python wheels, abi3 wheels, or any wheel when the versions match);
* otherwise (a compiled wheel for another Python) the same version for the target's Python,
  with ``pip download`` (needs the package index, which this machine reaches);

plus a wheel of pai_ros itself, from this source tree. ``manifest.json`` records what came from
where. Nothing is compiled and no source distribution is built.

Usage: python bench/gpu/make_bundle.py [--out bench/gpu/bundle] [--python 3.12]
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import importlib.metadata as md
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags, parse_tag
from packaging.utils import canonicalize_name

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TARGET_PROVIDES = ("torch", "torchvision", "numpy")  # with everything they require
# Imported by this environment's site hooks (.pth files), not by the measured path.
NOT_NEEDED = {"ros-wheels-bootstrapper", "setuptools"}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_5_x86_64", "manylinux1_x86_64")


class BundleError(Exception):
    """A one-line reason why the bundle cannot be built."""


def requirement_closure(roots: tuple[str, ...]) -> set[str]:
    """Canonical names of ``roots`` and everything they require (extras off), as installed here."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue  # required only on other platforms or Pythons
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def probe_modules(python: str) -> list[str]:
    """Top-level modules that device_check.sh's parts import, run here at toy sizes on the CPU.

    Its smoke run walks every part's code path (tick_latency.py with attention and SAE on and its
    stand-ins forced, the SAE step bench, the GPU training script, ``pai sae train``).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out, results = Path(tmp) / "modules.json", Path(tmp) / "results"
        env = {**os.environ, "PYTHON": python, "OUT": str(results)}
        cmd = ["bash", str(HERE / "device_check.sh"), "--smoke", "--probe-modules", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0 or not out.is_file():
            why = _probe_failure(proc, results)
            raise BundleError(f"the import probe (device_check.sh --smoke on cpu) failed: {why}")
        return json.loads(out.read_text())


def _probe_failure(proc: subprocess.CompletedProcess, results: Path) -> str:
    """The first failed part and the last line of its log, or the script's own last word."""
    summary = results / "device_check.md"
    rows = [line.split("|") for line in summary.read_text().splitlines()] if summary.is_file() else []
    for row in rows:
        status = row[2].strip() if len(row) > 3 else ""
        if (status.split(" ")[0].isdigit() and status != "0") or "no time left" in status:
            name = row[1].strip()
            log = results / "logs" / f"{name}.log"
            lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
            return f"{name} ({row[2].strip()}): {lines[-1] if lines else 'no output'}"
    return ((proc.stderr + proc.stdout).strip().splitlines() or ["no output"])[-1]


def needed_distributions(modules: list[str]) -> dict[str, md.Distribution]:
    by_module = md.packages_distributions()
    provided = requirement_closure(TARGET_PROVIDES)
    out: dict[str, md.Distribution] = {}
    for module in modules:
        for dist_name in by_module.get(module, []):
            key = canonicalize_name(dist_name)
            if key in provided or key in NOT_NEEDED or key == "pai-ros" or key in out:
                continue
            out[key] = md.distribution(dist_name)
    return out


def target_tags(version: str) -> set[Tag]:
    major, minor = (int(v) for v in version.split("."))
    py = (major, minor)
    abi = f"cp{major}{minor}"
    return set(cpython_tags(py, [abi, "abi3", "none"], list(PLATFORMS))) | set(compatible_tags(py, abi, list(PLATFORMS)))


def wheel_tags(dist: md.Distribution) -> list[str]:
    text = dist.read_text("WHEEL") or ""
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:")]


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def write_wheel(path: Path, files: dict[str, bytes], dist_info: str) -> None:
    """A wheel (zip) of ``files`` (archive name -> bytes) with a fresh RECORD; written via a temp file."""
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
            writer.writerow([name, _record_hash(data), len(data)])
        writer.writerow([f"{dist_info}/RECORD", "", ""])
        zf.writestr(f"{dist_info}/RECORD", record.getvalue())
    os.replace(tmp, path)  # never a half-written wheel under the final name


def repack_installed(dist: md.Distribution, out_dir: Path) -> Path:
    """A wheel of an installed distribution, from the files its RECORD lists."""
    files: dict[str, bytes] = {}
    dist_info = None
    for entry in dist.files or []:
        name = entry.as_posix()
        if name.startswith("..") or "__pycache__" in name or name.endswith(".pyc"):
            continue  # scripts outside site-packages, byte code
        if ".dist-info/" in name:
            dist_info = name.split("/", 1)[0]
            if name.rsplit("/", 1)[1] in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json"):
                continue  # written by the installer, not part of a wheel
        source = Path(entry.locate())
        if source.is_file():
            files[name] = source.read_bytes()
    tags = wheel_tags(dist)
    if dist_info is None or not tags:
        raise BundleError(f"{dist.metadata['Name']} {dist.version} was not installed from a wheel; "
                          "cannot repack it")
    py, abi, plat = (".".join(dict.fromkeys(t.split("-")[i] for t in tags)) for i in range(3))
    stem = dist_info[: -len(".dist-info")]
    path = out_dir / f"{stem}-{py}-{abi}-{plat}.whl"
    write_wheel(path, files, dist_info)
    return path


def download(dist: md.Distribution, version: str, out_dir: Path) -> Path:
    """The same release built for the target Python, from the package index."""
    name = dist.metadata["Name"]
    major, minor = version.split(".")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", version, "--implementation", "cp", "--abi", f"cp{major}{minor}", "--abi", "abi3",
               "--abi", "none", *[a for p in PLATFORMS for a in ("--platform", p)], "--dest", tmp,
               f"{name}=={dist.version}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            raise BundleError(f"{name} {dist.version} is compiled for this Python only and no wheel for Python "
                              f"{version} could be downloaded (is the package index reachable?)")
        return Path(shutil.copy2(wheels[0], out_dir / wheels[0].name))


def pai_ros_wheel(out_dir: Path) -> tuple[Path, str]:
    """A pure-Python wheel of this source tree's pai_ros package (metadata only: installed --no-deps)."""
    init = (REPO / "pai_ros" / "__init__.py").read_text()
    version = re.search(r'__version__ = "([^"]+)"', init).group(1)
    dist_info = f"pai_ros-{version}.dist-info"
    files = {p.relative_to(REPO).as_posix(): p.read_bytes() for p in sorted((REPO / "pai_ros").rglob("*"))
             if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    files[f"{dist_info}/METADATA"] = (f"Metadata-Version: 2.1\nName: pai_ros\nVersion: {version}\n"
                                      "Requires-Python: >=3.10\n").encode()
    files[f"{dist_info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: pai_ros make_bundle\n"
                                   b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    path = out_dir / f"pai_ros-{version}-py3-none-any.whl"
    write_wheel(path, files, dist_info)
    return path, version


def build(out_dir: Path, version: str) -> dict:
    modules = probe_modules(sys.executable)
    dists = needed_distributions(modules)
    tags = target_tags(version)
    local = f"{sys.version_info.major}.{sys.version_info.minor}"
    tmp_dir = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    entries = []
    for key, dist in sorted(dists.items()):
        fits = version == local or any(t in tags for tag in wheel_tags(dist) for t in parse_tag(tag))
        wheel = repack_installed(dist, tmp_dir) if fits else download(dist, version, tmp_dir)
        entries.append({"name": dist.metadata["Name"], "version": dist.version, "wheel": wheel.name,
                        "source": "installed files" if fits else "package index"})
    own, own_version = pai_ros_wheel(tmp_dir)
    entries.append({"name": "pai_ros", "version": own_version, "wheel": own.name, "source": "this source tree"})
    sys.path.insert(0, str(HERE))
    import stand_ins

    manifest = {"python": version, "provided_by_target": sorted(requirement_closure(TARGET_PROVIDES)),
                "stand_ins": list(stand_ins.NAMES), "wheels": entries}
    (tmp_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp_dir, out_dir)  # the bundle appears whole or not at all
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "bundle")
    ap.add_argument("--python", default="3.12", help="the target's Python version, X.Y (default 3.12)")
    args = ap.parse_args(argv)
    if not re.fullmatch(r"3\.\d+", args.python):
        print(f"make_bundle: --python must look like 3.12, got '{args.python}'", file=sys.stderr)
        return 2
    try:
        manifest = build(args.out.resolve(), args.python)
    except BundleError as exc:
        print(f"make_bundle: {exc}", file=sys.stderr)
        return 1
    size = sum(p.stat().st_size for p in args.out.glob("*.whl")) / 2**20
    fetched = [w["name"] for w in manifest["wheels"] if w["source"] == "package index"]
    print(f"{args.out}: {len(manifest['wheels'])} wheels, {size:.1f} MiB, for Python {args.python}"
          + (f"; downloaded for that Python: {', '.join(fetched)}" if fetched else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
