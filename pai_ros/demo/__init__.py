"""The embedded demo: the reaching task of :mod:`pai_ros.sim` as a LeRobot dataset and a trained ACT policy.

Nothing here downloads anything: the scene (:mod:`pai_ros.sim.scene`) is rendered, the dataset
written with LeRobot's own writer and the policy trained with LeRobot's own training entry
point, behind a learning gate; the assets are cached, and the offline outputs of ``pai demo``
made from its bag.
"""
