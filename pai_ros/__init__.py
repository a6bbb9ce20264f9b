"""pai_ros: interpretability for LeRobot ACT policies, live in ROS 2 and offline.

The package is a pure core (no rclpy) plus thin ROS adapters. Importing ``pai_ros`` itself
pulls in nothing heavy; capabilities live in subpackages named for them (``policy``,
``demo``, ...). ``pai_ros.msg`` exists only in a colcon-built overlay.
"""

from pkgutil import extend_path

__version__ = "0.1.0"

# The generated message code (pai_ros.msg and its type-support libraries) lives in the colcon
# overlay's copy of this package. When this source tree is imported first (a checkout on
# sys.path, an editable install), let the package span both directories so that
# `from pai_ros.msg import FeatureActivations` still finds the overlay's generated code.
__path__ = extend_path(__path__, __name__)
