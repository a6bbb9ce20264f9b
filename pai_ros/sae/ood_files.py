"""The tensor files an OOD calibration keeps next to the SAE: written atomically, read back checked.

``ood.json`` names each file with its sha256; a file that is missing, replaced, unreadable or
made for another SAE is a :class:`UserError` that says to calibrate again, never a silently
dropped score. Only safetensors are read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from pai_ros.sae.errors import SaeFileError
from pai_ros.staging import staged_file

AGAIN = "run `pai sae calibrate` again"


def save_tensors(tensors: dict[str, np.ndarray], path: Path, sae_id: str, description: str) -> str:
    """Write ``tensors`` (temporary file + rename, so a reader never sees half a file); returns its sha256."""
    from safetensors.numpy import save_file

    with staged_file(path) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp),
                  metadata={"producer": "pai_ros", "sae_id": sae_id, "score": description})
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    return digest


def load_tensors(path: Path, meta: dict[str, Any], sae_id: str, what: str,
                 names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The tensors ``names`` of the file ``ood.json`` describes by ``meta`` (its ``sha256``), checked.

    ``what`` names the contents in messages ("per-position statistics"). Shapes and values are
    the caller's to check: only it knows what they must be.
    """
    from safetensors import SafetensorError, safe_open

    ood_json = path.parent / "ood.json"
    if not path.is_file():
        raise SaeFileError(f"{ood_json} names {what} but {path} is missing: {AGAIN}")
    data = path.read_bytes()
    if meta.get("sha256") and hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise SaeFileError(f"{path} is not the file {ood_json} was calibrated with: {AGAIN}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            file_sae = (f.metadata() or {}).get("sae_id")
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError) as exc:
        raise SaeFileError(f"{path} is not a readable safetensors file ({exc}): {AGAIN}") from None
    if file_sae is not None and file_sae != sae_id:
        raise SaeFileError(f"{path} was made for SAE {file_sae}, not {sae_id}: {AGAIN}")
    missing = [n for n in names if n not in tensors]
    if missing:
        raise SaeFileError(f"{path} has no tensor {', '.join(missing)} (has: {', '.join(sorted(tensors)) or 'none'})")
    for name in names:
        t = tensors[name]
        if not (np.issubdtype(t.dtype, np.floating) and np.isfinite(t).all()):
            raise SaeFileError(f"{path}: tensor '{name}' must hold finite floating-point numbers: {AGAIN}")
    return {name: tensors[name] for name in names}
