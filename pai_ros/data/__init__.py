"""Reading LeRobot datasets: video decoding and dataset opening shared by every tool."""
