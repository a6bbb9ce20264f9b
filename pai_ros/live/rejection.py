"""What a live tick returns instead of an action: the reason, in the operator's words.

Every check before the forward pass (inputs present, fresh, decodable, complete) returns one; the
tick counts it in :class:`~pai_ros.live.health.Health`, the node logs and reports it, and no
action goes out that tick.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rejection:
    """No action this tick, and why."""

    reason: str
