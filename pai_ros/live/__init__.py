"""The live tick as a ROS-free core: configuration, inputs -> action/maps/features or a rejection, health.

``policy_node`` only converts messages into :class:`TickInputs`, calls :meth:`LiveTick.step` and
publishes the :class:`TickOutput` (all but its ``held_outputs``, which the tick read from the
:class:`ControllerGate` the node fills in by asking the controller); everything that decides
whether and what to act lives here, so it runs the same in the node, in tests with a fake clock,
and in offline tools.
"""

from pai_ros.live.config import CameraInput, LiveConfig
from pai_ros.live.controllers import ControllerGate
from pai_ros.live.health import Health, HealthReport, Level
from pai_ros.live.inputs import CameraFrame, JointReading, TickInputs, VectorReading
from pai_ros.live.parameters import ACTION_OUTPUTS, PARAMS
from pai_ros.live.reconfigure import RUN_TIME_PARAMETERS, reconfigure
from pai_ros.live.rejection import Rejection
from pai_ros.live.sae import FeaturesOutput, LiveSae
from pai_ros.live.tick import Diagnostics, LiveTick, TickOutput

__all__ = [
    "ACTION_OUTPUTS", "PARAMS", "RUN_TIME_PARAMETERS", "CameraFrame", "CameraInput", "ControllerGate", "Diagnostics",
    "FeaturesOutput", "Health",
    "HealthReport", "JointReading", "Level", "LiveConfig", "LiveSae", "LiveTick", "Rejection", "TickInputs",
    "TickOutput", "VectorReading", "reconfigure",
]
