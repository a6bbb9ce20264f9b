"""The appended FeatureActivations fields with their "not computed / not steered" values.

rosbags' generated message classes need every field, so tests that build a FeatureActivations
through the typestore add these after the original thirteen.
"""

from __future__ import annotations

import math

import numpy as np


def appended_fields() -> dict:
    return {"ood_score": math.nan, "ood_score_threshold": math.nan, "steered": False, "steering_mode": "",
            "steered_features": np.array([], np.uint32), "steering_values": np.array([], np.float32),
            "steering_remaining_s": 0.0, "camera_state_score": math.nan, "camera_state_threshold": math.nan,
            "camera_state_cameras": [], "camera_state_camera_scores": np.array([], np.float32)}
