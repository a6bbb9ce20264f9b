"""The embedded demo: a synthetic reaching task, its LeRobot dataset and a trained ACT policy.

Nothing here downloads anything: the scene is rendered, the dataset written with LeRobot's
own writer and the policy trained with LeRobot's own training entry point.
"""
