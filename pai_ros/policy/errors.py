"""What can go wrong with a policy's input, as exceptions (checkpoint problems are plain
:class:`~pai_ros.errors.UserError` with the checkpoint's path)."""

from __future__ import annotations

from pathlib import Path

from pai_ros.errors import UserError


class ObservationError(UserError):
    """The observation cannot be used (missing camera, wrong shape or dtype, NaN/inf)."""


class PolicyOutputError(UserError):
    """The policy computed an action that is not a finite number: nothing may act on it."""


def weights_mismatch(model_file: Path, exc: RuntimeError) -> UserError:
    """torch's load_state_dict error as one line: its first line says only "Error(s) in loading
    state_dict for ACTPolicy:", the next names the tensors that are missing, unexpected or of another shape."""
    detail = " ".join(line.strip() for line in str(exc).splitlines()[:2])
    return UserError(f"weights in {model_file} do not match config.json: {detail[:300]}")
