"""Steering SAE features inside a forward pass: change chosen features, keep everything else.

At the SAE's site each token ``x`` becomes ``reconstruct(codes') + (x - reconstruct(codes))``:
the SAE's reconstruction with the chosen features changed, plus the SAE's error term, so what
the SAE does not explain passes through untouched. The decoder is linear, so this equals
``x + (codes'_F - codes_F) W_dec[F] / scaling_factor`` over the changed features F alone, and
that form is what is computed: cheap (a few decoder rows), and with nothing changed the delta
is exactly zero, so the policy's actions are bit-identical to no steering.

Modes, per token: ``clamp`` sets the feature's activation to a value (on every token, also where
it was off: the "Golden Gate" experiment), ``scale`` multiplies it, ``ablate`` sets it to zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from pai_ros.errors import UserError
from pai_ros.sae.model import SparseAutoencoder

STEER_MODES = ("clamp", "scale", "ablate")


@dataclass(frozen=True)
class Steering:
    """Which features change, how, and to what (one value per feature; 0 for ablate)."""

    features: tuple[int, ...]
    mode: str
    values: tuple[float, ...]

    @classmethod
    def build(cls, features: list[int], mode: str, values: list[float], *, num_features: int,
              max_value: float) -> Steering:
        """Validated steering from a request; every problem is one :class:`UserError` line."""
        if mode not in STEER_MODES:
            raise UserError(f"steering mode '{mode}' does not exist (choose from {', '.join(STEER_MODES)})")
        features = [int(f) for f in features]
        if not features:
            raise UserError("no feature to steer (feature_indices is empty)")
        bad = [f for f in features if not 0 <= f < num_features]
        if bad:
            raise UserError(f"feature index {bad[0]} is out of range: the SAE has {num_features} features")
        if len(set(features)) != len(features):
            raise UserError(f"feature_indices repeats a feature: {features}")
        values = [float(v) for v in values]
        if mode == "ablate":
            if any(v != 0 for v in values):
                raise UserError("ablate takes no values (it sets the features to zero)")
            values = [0.0] * len(features)
        else:
            if len(values) == 1:
                values = values * len(features)
            if len(values) != len(features):
                raise UserError(f"{mode} needs one value, or one per feature ({len(features)}); got {len(values)}")
            if not all(math.isfinite(v) for v in values):
                raise UserError(f"{mode} values must be finite numbers, got {values}")
            worst = max(values, key=abs)
            if abs(worst) > max_value:
                raise UserError(f"{mode} value {worst:g} is outside the allowed bound +-{max_value:g} "
                                "(steering_max_value)")
        return cls(tuple(features), mode, tuple(values))

    def describe(self) -> str:
        if self.mode == "ablate":
            return f"ablate features {list(self.features)}"
        pairs = ", ".join(f"{f}->{v:g}" for f, v in zip(self.features, self.values))
        return f"{self.mode} {pairs}" if self.mode == "clamp" else f"scale {pairs.replace('->', ' x')}"


def steered(sae: SparseAutoencoder, x: torch.Tensor, steering: Steering) -> torch.Tensor:
    """``x`` (raw activations ``[..., d_in]``) with ``steering`` applied (see the module docstring)."""
    index = torch.as_tensor(steering.features, device=x.device)
    codes = sae.encode(x.to(sae.W_enc.dtype))[..., index]  # [..., n] raw-space activations of the features
    if steering.mode == "ablate":
        new = torch.zeros_like(codes)
    else:
        values = torch.as_tensor(steering.values, dtype=codes.dtype, device=codes.device)
        new = values.expand_as(codes) if steering.mode == "clamp" else codes * values
    delta = (new - codes) @ sae.W_dec[index] / sae.cfg.scaling_factor
    return x + delta.to(x.dtype)


class SteeringHook:
    """A forward hook on the ACT encoder (the SAE's site) that applies the armed steering to its tokens.

    Disarmed, it returns at once: nothing computed, nothing changed.
    """

    def __init__(self, encoder: torch.nn.Module) -> None:
        self._armed: tuple[SparseAutoencoder, Steering] | None = None
        self._handle = encoder.register_forward_hook(self._hook)

    def arm(self, sae: SparseAutoencoder | None, steering: Steering | None) -> None:
        """Apply ``steering`` with ``sae`` in the following forward passes (None: pass through)."""
        self._armed = (sae, steering) if sae is not None and steering is not None else None

    def disarm(self) -> None:
        self._armed = None

    def _hook(self, _module: Any, _inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        armed = self._armed
        if armed is None:
            return None
        return steered(armed[0], output, armed[1])

    def remove(self) -> None:
        self._handle.remove()
