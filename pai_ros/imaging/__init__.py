"""Image conversion at the ROS edge: raw and compressed camera messages <-> RGB arrays."""
