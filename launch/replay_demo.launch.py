"""Analyse a recorded dataset without a robot: replay + policy (+ heatmaps) + recorder.

    ros2 launch pai_ros replay_demo.launch.py dataset_root:=/data/ds policy_path:=/ckpt bag_path:=analysis

The replay node plays the dataset's episodes on the camera and joint-state topics and the
recorded action on recorded_action; the policy node interprets them live; the recorder keeps
everything (heatmaps included) in an MCAP bag for `pai bag2parquet`.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    config = PathJoinSubstitution([FindPackageShare("pai_ros"), "config"])
    args = [
        DeclareLaunchArgument("dataset_root", description="LeRobotDataset v3.0 directory to replay"),
        DeclareLaunchArgument("policy_path", description="LeRobot ACT checkpoint directory (pretrained_model)"),
        DeclareLaunchArgument("bag_path", default_value="pai_replay_bag", description="recorder output directory"),
        DeclareLaunchArgument("rate_factor", default_value="1.0", description="replay speed (1.0 = recorded)"),
    ]
    replay = Node(package="pai_ros", executable="replay_node", name="replay_node", output="screen",
                  parameters=[PathJoinSubstitution([config, "replay.yaml"]),
                              {"dataset_root": LaunchConfiguration("dataset_root"),
                               "rate_factor": LaunchConfiguration("rate_factor")}])
    policy = Node(package="pai_ros", executable="policy_node", name="policy_node", output="screen",
                  parameters=[PathJoinSubstitution([config, "policy.yaml"]),
                              {"policy_path": LaunchConfiguration("policy_path")}])
    recorder = Node(package="pai_ros", executable="recorder_node", name="recorder_node", output="screen",
                    parameters=[PathJoinSubstitution([config, "recorder.yaml"]),
                                {"output": LaunchConfiguration("bag_path"), "record_heatmaps": True}])
    return LaunchDescription([*args, replay, policy, recorder])
