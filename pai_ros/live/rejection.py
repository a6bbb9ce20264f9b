"""What a live tick returns instead of an action: the reason, in the operator's words.

Every check before the forward pass (inputs present, fresh, decodable, complete) returns one; the
tick counts it in :class:`~pai_ros.live.health.Health`, the node logs and reports it, and no
action goes out that tick.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Rejection:
    """No action this tick, and why.

    ``stop_at``: on the first refusal after an action went out, that action (robot units). A
    controller given a whole plan (``trajectory_points:=chunk``) would otherwise go on executing
    the rest of it, planned from the last good observation: the node sends this one point instead.
    """

    reason: str
    stop_at: np.ndarray | None = field(default=None, compare=False)
