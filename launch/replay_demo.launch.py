"""Analyse a recorded dataset without a robot: replay + policy (+ heatmaps) + recorder.

    ros2 launch pai_ros replay_demo.launch.py dataset_root:=/data/ds policy_path:=/ckpt bag_path:=analysis \
        [sae_path:=/sae] [params_file:=my_robot_policy.yaml]

The replay node plays the dataset's episodes on the camera and joint-state topics and the
recorded action on recorded_action; the policy node interprets them live; the recorder keeps
everything (heatmaps included) in an MCAP bag for `pai bag2parquet`.

Values that become node parameters are wrapped in ParameterValue(..., value_type=...): launch_ros
reads `name:=value` as YAML, so `rate_factor:=2` would otherwise arrive as an integer and be
refused by the node's double parameter.
"""

from datetime import datetime

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from pai_ros.ros.launch_support import sae_path_if_given


def _policy(context) -> list:
    return [Node(package="pai_ros", executable="policy_node", name="policy_node",
                 namespace=LaunchConfiguration("namespace"), output="screen",
                 parameters=[LaunchConfiguration("params_file"),
                             {"policy_path": ParameterValue(LaunchConfiguration("policy_path"), value_type=str),
                              **sae_path_if_given(context)}])]


def generate_launch_description() -> LaunchDescription:
    config = PathJoinSubstitution([FindPackageShare("pai_ros"), "config"])
    namespace = LaunchConfiguration("namespace")
    # A new name per launch: the recorder never overwrites an existing bag.
    default_bag = datetime.now().strftime("pai_replay_bag_%Y%m%d_%H%M%S")
    args = [
        DeclareLaunchArgument("dataset_root", description="[string] LeRobotDataset v3.0 directory to replay"),
        DeclareLaunchArgument("policy_path", description="[string] LeRobot ACT checkpoint directory (pretrained_model)"),
        DeclareLaunchArgument("sae_path", default_value="",
                              description="[string] sparse autoencoder directory from `pai sae train` (empty: none)"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([config, "policy.yaml"]),
                              description="[path] policy_node parameter file (key it /**/policy_node: to work "
                                          "in any namespace)"),
        DeclareLaunchArgument("bag_path", default_value=default_bag,
                              description="[string] bag directory the recorder creates (default: "
                                          "pai_replay_bag_<date>_<time> in the current directory)"),
        DeclareLaunchArgument("rate_factor", default_value="1.0",
                              description="[float] replay speed (1.0 = as recorded, 2 = twice as fast)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="[string] namespace for every node, e.g. robot1"),
    ]
    replay = Node(package="pai_ros", executable="replay_node", name="replay_node", namespace=namespace,
                  output="screen",
                  parameters=[PathJoinSubstitution([config, "replay.yaml"]),
                              {"dataset_root": ParameterValue(LaunchConfiguration("dataset_root"), value_type=str),
                               "rate_factor": ParameterValue(LaunchConfiguration("rate_factor"), value_type=float)}])
    recorder = Node(package="pai_ros", executable="recorder_node", name="recorder_node", namespace=namespace,
                    output="screen",
                    parameters=[PathJoinSubstitution([config, "recorder.yaml"]),
                                {"output": ParameterValue(LaunchConfiguration("bag_path"), value_type=str),
                                 "record_heatmaps": True}])
    return LaunchDescription([*args, replay, OpaqueFunction(function=_policy), recorder])
