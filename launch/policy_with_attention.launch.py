"""Policy node with live attention heatmaps; optionally the bag recorder and the dataset replay.

    ros2 launch pai_ros policy_with_attention.launch.py policy_path:=/path/to/pretrained_model
    ros2 launch pai_ros policy_with_attention.launch.py policy_path:=... record:=true bag_path:=run1
    ros2 launch pai_ros policy_with_attention.launch.py policy_path:=... replay:=true dataset_root:=/data/ds
    ros2 launch pai_ros policy_with_attention.launch.py policy_path:=... namespace:=robot1

Heatmaps appear on attention/<camera>/heatmap (rqt_image_view, RViz Image display; see
share/pai_ros/rviz/pai_ros.rviz).

launch_ros reads `name:=value` as YAML, so a path named `123` or `true` would reach the node as
a number or a bool and fail its declared type: every value that becomes a node parameter is
wrapped in ParameterValue(..., value_type=...) with the type the node declares.
"""

from datetime import datetime

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from pai_ros.ros.launch_support import sae_path_if_given

BOOL_CHOICES = ["true", "false"]


def _policy(context) -> list:
    return [Node(
        package="pai_ros", executable="policy_node", name="policy_node", namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[LaunchConfiguration("params_file"),
                    {"policy_path": ParameterValue(LaunchConfiguration("policy_path"), value_type=str),
                     **sae_path_if_given(context)}],
    )]


def generate_launch_description() -> LaunchDescription:
    config = PathJoinSubstitution([FindPackageShare("pai_ros"), "config"])
    namespace = LaunchConfiguration("namespace")
    # A new name per launch: the recorder never overwrites, so a fixed default would make the
    # second launch in the same directory refuse to record.
    default_bag = datetime.now().strftime("pai_bag_%Y%m%d_%H%M%S")
    args = [
        DeclareLaunchArgument("policy_path", description="[string] LeRobot ACT checkpoint directory (pretrained_model)"),
        DeclareLaunchArgument("sae_path", default_value="",
                              description="[string] sparse autoencoder directory from `pai sae train` (empty: none)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="[string] namespace for every node, e.g. robot1 (topics become /robot1/...)"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([config, "policy.yaml"]),
                              description="[path] policy_node parameter file (key it /**/policy_node: to work "
                                          "in any namespace)"),
        DeclareLaunchArgument("record", default_value="false", choices=BOOL_CHOICES,
                              description="[bool] also start the bag recorder"),
        DeclareLaunchArgument("bag_path", default_value=default_bag,
                              description="[string] bag directory the recorder creates (default: pai_bag_<date>_<time> "
                                          "in the current directory; an existing path is refused)"),
        DeclareLaunchArgument("replay", default_value="false", choices=BOOL_CHOICES,
                              description="[bool] also replay a LeRobot dataset"),
        DeclareLaunchArgument("dataset_root", default_value="",
                              description="[string] LeRobotDataset v3.0 directory for replay:=true"),
    ]
    recorder = Node(
        package="pai_ros", executable="recorder_node", name="recorder_node", namespace=namespace, output="screen",
        condition=IfCondition(LaunchConfiguration("record")),
        parameters=[PathJoinSubstitution([config, "recorder.yaml"]),
                    {"output": ParameterValue(LaunchConfiguration("bag_path"), value_type=str)}],
    )
    replay = Node(
        package="pai_ros", executable="replay_node", name="replay_node", namespace=namespace, output="screen",
        condition=IfCondition(LaunchConfiguration("replay")),
        parameters=[PathJoinSubstitution([config, "replay.yaml"]),
                    {"dataset_root": ParameterValue(LaunchConfiguration("dataset_root"), value_type=str)}],
    )
    return LaunchDescription([*args, OpaqueFunction(function=_policy), recorder, replay])
