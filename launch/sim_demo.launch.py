"""A robot without hardware: the demo scene as a closed-loop robot, driven by a policy (+ recorder).

    ros2 launch pai_ros sim_demo.launch.py policy_path:=<the policy/ directory `pai demo-assets` prints>
    ros2 launch pai_ros sim_demo.launch.py policy_path:=/ckpt sae_path:=/sae episodes:=10 record:=true

sim_node publishes the demo cameras and joint_states and executes the policy node's actions
with the dataset expert's motion limits; each episode's outcome appears on
/sim_node/episode_outcome and the success rate on /sim_node/summary. Watch the policy act on
camera/front/image_raw and where it looks on attention/front/heatmap (rqt_image_view, RViz).

Every value that becomes a node parameter is wrapped in ParameterValue(..., value_type=...):
launch_ros reads `name:=value` as YAML, so `rate_hz:=15` would otherwise arrive as an integer.
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
    return [Node(package="pai_ros", executable="policy_node", name="policy_node",
                 namespace=LaunchConfiguration("namespace"), output="screen",
                 parameters=[LaunchConfiguration("params_file"),
                             {"policy_path": ParameterValue(LaunchConfiguration("policy_path"), value_type=str),
                              **sae_path_if_given(context),
                              # The policy ticks at the simulation's rate: the two must agree.
                              "control_rate_hz": ParameterValue(LaunchConfiguration("rate_hz"), value_type=float),
                              "mode": ParameterValue(LaunchConfiguration("mode"), value_type=str),
                              "max_observation_age_s": 0.5}])]


def generate_launch_description() -> LaunchDescription:
    config = PathJoinSubstitution([FindPackageShare("pai_ros"), "config"])
    namespace = LaunchConfiguration("namespace")
    # A new name per launch: the recorder never overwrites an existing bag.
    default_bag = datetime.now().strftime("pai_sim_bag_%Y%m%d_%H%M%S")
    args = [
        DeclareLaunchArgument("policy_path", description="[string] LeRobot ACT checkpoint directory (the demo "
                                                         "policy: the policy/ directory `pai demo-assets` prints)"),
        DeclareLaunchArgument("sae_path", default_value="",
                              description="[string] sparse autoencoder directory for live features (empty: none)"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([config, "policy.yaml"]),
                              description="[path] policy_node parameter file (key it /**/policy_node: to work "
                                          "in any namespace)"),
        DeclareLaunchArgument("episodes", default_value="50", description="[int] episodes to run, then exit"),
        DeclareLaunchArgument("seed", default_value="0", description="[int] episode set (same seed, same episodes)"),
        DeclareLaunchArgument("rate_hz", default_value="15.0",
                              description="[float] simulation steps per second (lower it on a slow CPU)"),
        DeclareLaunchArgument("mode", default_value="ensemble",
                              description="[string] policy runner mode; ensemble (temporal ensembling: the model "
                                          "corrects itself every step) is what makes the demo policy succeed in "
                                          "closed loop, auto runs it open loop on 20-action chunks"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="[string] namespace for every node, e.g. robot1 (topics become /robot1/...)"),
        DeclareLaunchArgument("record", default_value="false", choices=BOOL_CHOICES,
                              description="[bool] also record cameras, actions, heatmaps and outcomes to a bag"),
        DeclareLaunchArgument("bag_path", default_value=default_bag,
                              description="[string] bag directory the recorder creates (default: "
                                          "pai_sim_bag_<date>_<time> in the current directory)"),
    ]
    sim = Node(package="pai_ros", executable="sim_node", name="sim_node", namespace=namespace, output="screen",
               parameters=[PathJoinSubstitution([config, "sim.yaml"]),
                           {"episodes": ParameterValue(LaunchConfiguration("episodes"), value_type=int),
                            "seed": ParameterValue(LaunchConfiguration("seed"), value_type=int),
                            "rate_hz": ParameterValue(LaunchConfiguration("rate_hz"), value_type=float)}])
    recorder = Node(package="pai_ros", executable="recorder_node", name="recorder_node", namespace=namespace,
                    output="screen", condition=IfCondition(LaunchConfiguration("record")),
                    parameters=[PathJoinSubstitution([config, "recorder.yaml"]),
                                {"output": ParameterValue(LaunchConfiguration("bag_path"), value_type=str),
                                 "record_heatmaps": True,
                                 "camera_topics": ["camera/front/image_raw", "camera/wrist/image_raw"],
                                 "topics": ["joint_states", "action", "features", "/diagnostics", "attention/shares",
                                            "sim_node/episode_outcome", "sim_node/summary"]}])
    return LaunchDescription([*args, sim, OpaqueFunction(function=_policy), recorder])
