"""The demo scene as a robot, ROS-free: the scene, a closed-loop simulator and its evaluation.

:mod:`pai_ros.sim.scene` is the world (table, blocks, gripper, cameras, scripted expert) that
the demo dataset records and the simulator moves; :mod:`pai_ros.sim.robot` moves the demo's
gripper as commanded actions say (with the dataset expert's motion limits) and renders its
cameras; :mod:`pai_ros.sim.evaluate` runs a policy on a fixed set of seeded episodes and
reports success rate and final distance. ``sim_node`` is the thin ROS adapter on top.
"""
