"""pai_ros: interpretability for LeRobot ACT policies, live in ROS 2 and offline.

The package is a pure core (no rclpy) plus thin ROS adapters. Importing ``pai_ros`` itself
pulls in nothing heavy; capabilities live in subpackages named for them (``policy``,
``demo``, ...). ``pai_ros.msg`` exists only in a colcon-built overlay.
"""

import os
from pkgutil import extend_path

__version__ = "0.1.0"

# The generated message code (pai_ros.msg and its type-support libraries) lives in the colcon
# overlay's copy of this package. When this source tree is imported first (a checkout on
# sys.path, an editable install), let the package span both directories so that
# `from pai_ros.msg import FeatureActivations` still finds the overlay's generated code.
# With `colcon build --symlink-install` the overlay's files are links into the checkout: follow
# this file's link so that modules added since the last build are found as well.
__path__ = extend_path(__path__, __name__)
_source_dir = os.path.dirname(os.path.realpath(__file__))
if _source_dir not in __path__:
    __path__.insert(0, _source_dir)
del _source_dir
