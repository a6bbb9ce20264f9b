"""ROS 2 adapters: the only modules that import rclpy or message types.

Each node converts messages to arrays, calls the pure core and publishes; no computation
lives here that the offline tools could not reproduce.
"""
