"""Loading LeRobot ACT checkpoints offline, and making small random ones for tests."""
