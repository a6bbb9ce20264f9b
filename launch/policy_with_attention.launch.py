"""Policy node with live attention heatmaps; optionally the bag recorder and the dataset replay.

    ros2 launch pai_ros policy_with_attention.launch.py policy_path:=/path/to/pretrained_model
    ros2 launch pai_ros policy_with_attention.launch.py policy_path:=... record:=true bag_path:=run1
    ros2 launch pai_ros policy_with_attention.launch.py policy_path:=... replay:=true dataset_root:=/data/ds

Heatmaps appear on attention/<camera>/heatmap (rqt_image_view, RViz Image display).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    config = PathJoinSubstitution([FindPackageShare("pai_ros"), "config"])
    namespace = LaunchConfiguration("namespace")
    args = [
        DeclareLaunchArgument("policy_path", description="LeRobot ACT checkpoint directory (pretrained_model)"),
        DeclareLaunchArgument("sae_path", default_value="", description="sparse autoencoder directory (optional)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace for every node"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([config, "policy.yaml"]),
                              description="policy_node parameter file"),
        DeclareLaunchArgument("record", default_value="false", description="also start the bag recorder"),
        DeclareLaunchArgument("bag_path", default_value="pai_bag", description="recorder output directory"),
        DeclareLaunchArgument("replay", default_value="false", description="also replay a LeRobot dataset"),
        DeclareLaunchArgument("dataset_root", default_value="", description="dataset for replay:=true"),
    ]
    policy = Node(
        package="pai_ros", executable="policy_node", name="policy_node", namespace=namespace, output="screen",
        parameters=[LaunchConfiguration("params_file"),
                    {"policy_path": LaunchConfiguration("policy_path"), "sae_path": LaunchConfiguration("sae_path")}],
    )
    recorder = Node(
        package="pai_ros", executable="recorder_node", name="recorder_node", namespace=namespace, output="screen",
        condition=IfCondition(LaunchConfiguration("record")),
        parameters=[PathJoinSubstitution([config, "recorder.yaml"]), {"output": LaunchConfiguration("bag_path")}],
    )
    replay = Node(
        package="pai_ros", executable="replay_node", name="replay_node", namespace=namespace, output="screen",
        condition=IfCondition(LaunchConfiguration("replay")),
        parameters=[PathJoinSubstitution([config, "replay.yaml"]),
                    {"dataset_root": LaunchConfiguration("dataset_root")}],
    )
    return LaunchDescription([*args, policy, recorder, replay])
