"""ACT policies: loading LeRobot checkpoints offline (old ones migrated), the per-tick runner,
observations and their freshness, the instrumentation (capture hooks, token layout), and small
random checkpoints for tests."""
