"""What the launch files in ``launch/`` share (they import it; only a ROS 2 distro has ``launch``).

``launch`` and ``launch_ros`` are imported inside the functions: this module is importable, and its
layer checked, where they are not installed.
"""

from __future__ import annotations

from typing import Any


def sae_path_if_given(context: Any) -> dict[str, Any]:
    """``sae_path`` as a policy-node parameter only when the launch argument is given: its default,
    empty, would otherwise replace the sae_path of the params_file (a robot's copy of policy.yaml)
    for every launch. For an ``OpaqueFunction``, which has the launch context."""
    from launch.substitutions import LaunchConfiguration
    from launch_ros.parameter_descriptions import ParameterValue

    sae = LaunchConfiguration("sae_path")
    return {"sae_path": ParameterValue(sae, value_type=str)} if sae.perform(context) else {}
