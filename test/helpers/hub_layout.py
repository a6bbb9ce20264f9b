"""Build what users have on disk: hub-cache entries and checkpoints of LeRobot before 0.4.

* :func:`place_in_hub_cache` lays a directory out the way the hub client does after
  ``hf download``: ``<cache>/<kind>s--<org>--<name>/blobs/<sha256>``,
  ``snapshots/<commit>/<path>`` as relative symlinks into ``blobs``, and ``refs/<revision>``
  holding the commit.
* :func:`make_pre_04_checkpoint` rewrites a LeRobot 0.4 ACT checkpoint into the format LeRobot
  0.1-0.3 wrote: the statistics as ``normalize_inputs.buffer_<feature>.<stat>``,
  ``normalize_targets.buffer_action.<stat>`` and ``unnormalize_outputs.buffer_action.<stat>``
  tensors in ``model.safetensors`` (only the statistics each feature's normalisation mode used,
  images as ``[C, 1, 1]``), no processor files, and a config.json in the oldest of those formats.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

# Policy-config fields added after the config format of January 2025 (LeRobot 0.1, the format of
# the ALOHA sim checkpoints on the hub): device/use_amp (March 2025), the hub fields (June 2025),
# use_peft/pretrained_path (0.4). Configs of every version in between are subsets of 0.4's.
FIELDS_ADDED_AFTER_01 = ("device", "use_amp", "push_to_hub", "repo_id", "private", "tags", "license",
                         "use_peft", "pretrained_path")
_MODE_STATS = {"MEAN_STD": ("mean", "std"), "MIN_MAX": ("min", "max")}


def place_in_hub_cache(src: Path, cache: Path, repo_id: str, kind: str = "model",
                       refs: tuple[str, ...] = ("main",)) -> Path:
    """Copy ``src`` into the hub cache ``cache`` as repository ``repo_id``; return the snapshot dir."""
    org, name = repo_id.split("/")
    repo = cache / f"{kind}s--{org}--{name}"
    files = sorted(p for p in src.rglob("*") if p.is_file())
    commit = hashlib.sha1("".join(str(p.relative_to(src)) for p in files).encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    for f in files:
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / f.relative_to(src)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def make_pre_04_checkpoint(new: Path, old: Path) -> Path:
    """Write checkpoint ``new`` (LeRobot 0.4 layout) to ``old`` as LeRobot 0.1 saved it."""
    from safetensors.torch import load_file, save_file

    config = json.loads((new / "config.json").read_text())
    mapping = config["normalization_mapping"]
    pre = _normaliser_state(new, "policy_preprocessor.json")
    post = _normaliser_state(new, "policy_postprocessor.json")
    state = load_file(str(new / "model.safetensors"))
    for prefix, features, stats in (("normalize_inputs", config["input_features"], pre),
                                    ("normalize_targets", config["output_features"], pre),
                                    ("unnormalize_outputs", config["output_features"], post)):
        for key, ft in features.items():
            for stat in _MODE_STATS.get(mapping.get(ft["type"], "IDENTITY"), ()):
                state[f"{prefix}.buffer_{key.replace('.', '_')}.{stat}"] = stats[f"{key}.{stat}"].clone()
    old.mkdir(parents=True)
    save_file(state, str(old / "model.safetensors"), metadata={"format": "pt"})
    (old / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k not in FIELDS_ADDED_AFTER_01},
                                                indent=4))
    return old


def randomise_statistics(ckpt: Path, seed: int = 0) -> None:
    """Give a 0.4 checkpoint's normalisers distinct statistics (0/1 would hide a missing normaliser).

    Pre- and post-processor get the same statistics per feature, as lerobot-train writes them.
    """
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    stats: dict = {}
    for processor in ("policy_preprocessor.json", "policy_postprocessor.json"):
        state = _normaliser_state(ckpt, processor)
        for k, v in state.items():
            if k not in stats:
                stats[k] = torch.randn(v.shape, generator=g) * 0.3  # mean
                if k.endswith((".std", ".max", ".min")):
                    stats[k] = (torch.rand(v.shape, generator=g) + 0.5) * (-1 if k.endswith(".min") else 1)
            state[k] = stats[k].clone()
        save_file(state, str(ckpt / _state_file(ckpt, processor)))


def _state_file(ckpt: Path, processor: str) -> str:
    steps = json.loads((ckpt / processor).read_text())["steps"]
    files = [s["state_file"] for s in steps if s.get("state_file")]
    assert len(files) == 1, f"{processor}: expected one normaliser state file, found {files}"
    return files[0]


def _normaliser_state(ckpt: Path, processor: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(ckpt / _state_file(ckpt, processor)))


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and modification time (to prove nothing was written)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    st = root.stat()
    out["."] = (st.st_size, st.st_mtime_ns)
    return out
