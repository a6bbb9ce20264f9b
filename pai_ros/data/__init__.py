"""LeRobot datasets: reading (video decoding, opening, episodes) shared by every tool, and writing."""
