"""Live feature steering: requests with bounds and an expiry, and the hook that applies them.

:class:`SteeringControl` holds the one steering in force (a new request replaces it; it expires
on the tick clock) and is safe to call from a service thread while ticks run. The live tick reads
it once per tick and arms :class:`pai_ros.sae.steering.SteeringHook` for that tick's forward pass
only. The hook is registered after the capture hooks, so the published features describe the
scene as the policy saw it before steering.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from pai_ros.errors import UserError
from pai_ros.require import require
from pai_ros.sae.steering import Steering, SteeringHook
from pai_ros.timestamps import NS_PER_S

__all__ = ["ActiveSteering", "SteeringControl", "SteeringHook"]

#: How far before a request's time a tick's time may lie and still be that tick (read before the
#: request was accepted, decoding meanwhile), not a clock gone back; resets jump back much further.
CLOCK_BACK_NS = 2 * NS_PER_S


@dataclass(frozen=True)
class ActiveSteering:
    """The steering of one tick, with how long it has left."""

    steering: Steering
    sae_id: str
    remaining_s: float

    def describe(self) -> str:
        return f"{self.steering.describe()} ({self.remaining_s:.1f} s left)"


class SteeringControl:
    """The steering in force, set by requests and expiring by itself (thread-safe)."""

    def __init__(self, allowed: bool, max_value: float, max_duration_s: float) -> None:
        self.allowed, self.max_value, self.max_duration_s = allowed, max_value, max_duration_s
        self._lock = threading.Lock()
        self._current: tuple[Steering, str, int, int] | None = None  # steering, sae_id, set at, expires at (ns)
        self.steered_ticks = 0

    def request(self, features: list[int], mode: str, values: list[float], duration_s: float, now_ns: int,
                sae_id: str | None, num_features: int) -> str:
        """Validate and apply a request; returns what was applied, raises :class:`UserError` why not."""
        if not self.allowed:
            raise UserError("steering is off: start the node with allow_steering:=true to allow it")
        if sae_id is None:
            raise UserError("steering needs an SAE: start the node with sae_path")
        require("duration_s", duration_s, above=0, at_most=self.max_duration_s, note=" (steering_max_duration_s)")
        steering = Steering.build(features, mode, values, num_features=num_features, max_value=self.max_value)
        with self._lock:
            self._current = (steering, sae_id, now_ns, now_ns + round(duration_s * NS_PER_S))
        return f"steering: {steering.describe()} for {duration_s:g} s"

    def clear(self) -> bool:
        """Stop steering now; True if something was in force."""
        with self._lock:
            was, self._current = self._current is not None, None
        return was

    def current(self, now_ns: int, sae_id: str | None) -> ActiveSteering | None:
        """The steering for a tick at ``now_ns`` (None once expired, when the SAE changed, or when the
        clock went back: a simulator's reset or a looping bag's /clock would stretch it by the jump).

        A tick reads its time before it gets here, and a request may be accepted in between: a time a
        little before the request's is that, not a clock going back (``CLOCK_BACK_NS``)."""
        with self._lock:
            if self._current is None:
                return None
            steering, for_sae, set_at, expires = self._current
            # another SAE's feature i means something else
            if now_ns >= expires or now_ns < set_at - CLOCK_BACK_NS or for_sae != sae_id:
                self._current = None
                return None
        return ActiveSteering(steering, for_sae, (expires - now_ns) / NS_PER_S)
