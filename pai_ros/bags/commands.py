"""``pai bag2parquet`` (a recorded bag as Parquet tables and MP4 videos), ``pai bag2dataset`` (bags as
a LeRobotDataset) and ``pai bag recover``."""

from __future__ import annotations

import argparse

from pai_ros.cli_help import HelpFormatter
from pai_ros.path_args import input_path, output_path


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "bag2parquet",
        help="convert a rosbag2 bag (MCAP or sqlite3) into Parquet tables and one MP4 per camera",
        description=(
            "Read a rosbag2 bag (a directory with metadata.yaml, or a single .mcap/.db3 file; recorded by "
            "`ros2 run pai_ros recorder_node` or by `ros2 bag record`) and write into OUT: features.parquet "
            "(pai_ros/msg/FeatureActivations), actions.parquet (sensor_msgs/JointState on topics named "
            "'action'), joint_states.parquet (other JointState topics), diagnostics.parquet (one row per "
            "diagnostic_msgs/DiagnosticStatus), one H.264 MP4 per sensor_msgs/Image or CompressedImage topic "
            "(cameras and attention heatmaps) with frames.parquet indexing every frame, and summary.json. "
            "Every table has stamp_ns (header stamp) and recv_ns (bag time) to join on. Topics of other "
            "types are listed in the summary, not converted. OUT is written under a temporary name and "
            "renamed when complete."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("bag", type=input_path, metavar="BAG", help="bag directory, or a .mcap/.db3 file")
    p.add_argument("out", type=output_path, metavar="OUT", help="output directory (new, or empty)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT if it holds an earlier bag2parquet output (never other files)")
    p.add_argument("--no-videos", action="store_true",
                   help="write the Parquet tables only (no MP4s; frames.parquet indexes the image messages)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run)

    d = sub.add_parser(
        "bag2dataset",
        help="convert bags of a robot's camera and joint topics into a LeRobotDataset v3.0",
        description=(
            "Make a LeRobotDataset v3.0 of recorded bags, so that pai attention, pai sae collect, pai features "
            "record, the replay node and LeRobot's training can use them. Frames are made as the policy node makes "
            "ticks: every 1/FPS s of bag time (receive time), from each input's latest message, and only when each "
            "arrived within --max-age before the tick. A tick where an input is older, an image cannot be decoded "
            "or a value is not finite ends the episode (LeRobot assumes an episode's frames follow at FPS); the "
            "next good tick starts another, and each bag starts its own. Episodes shorter than --min-frames are "
            "left out. Images are stored as H.264 video, one size per camera: ticks where a camera sends "
            "another size than its first frame's are left out, and said; observation.state holds the "
            "named joints' positions; action is written only with --action-topic (nothing is invented). OUT is "
            "written under a temporary name and renamed when complete; OUT/meta/pai_ros_bag_source.json records "
            "the bags and the mapping."
        ),
        formatter_class=HelpFormatter,
    )
    d.add_argument("bags", type=input_path, nargs="+", metavar="BAG", help="bag directories or .mcap/.db3 files")
    d.add_argument("-o", "--output", type=output_path, required=True, metavar="OUT", help="dataset directory to create")
    d.add_argument("--camera", action="append", required=True, metavar="NAME:TOPIC",
                   help="a camera: the policy's camera name and its sensor_msgs/Image or CompressedImage topic "
                        "(repeat per camera), e.g. --camera front:/camera/front/image_raw")
    d.add_argument("--joint-states", default="/joint_states", metavar="TOPIC",
                   help="sensor_msgs/JointState topic of the robot's state ('' for a dataset without state)")
    d.add_argument("--state-joint-names", nargs="+", default=[], metavar="NAME",
                   help="joints of observation.state, in the policy's order (default: every joint of the first "
                        "message, in its order)")
    d.add_argument("--action-topic", default=None, metavar="TOPIC",
                   help="the commanded action: sensor_msgs/JointState (e.g. the policy node's action) or "
                        "std_msgs/Float64MultiArray (default: no action feature)")
    d.add_argument("--action-names", nargs="+", default=[], metavar="NAME",
                   help="the action's joints, in order (default: the JointState's names, or action_0...)")
    d.add_argument("--fps", type=int, default=15, help="frames per second of bag time")
    d.add_argument("--max-age", type=float, default=0.25, metavar="S",
                   help="an input older than this at a tick ends the episode (seconds of bag time)")
    d.add_argument("--min-frames", type=int, default=10, help="shorter episodes are left out")
    d.add_argument("--task", default="recorded from ROS 2 bags", help="the dataset's task text")
    d.add_argument("--repo-id", default=None, help="the dataset's repo id (default: local/<OUT's name>)")
    d.add_argument("--overwrite", action="store_true",
                   help="replace OUT if it holds an earlier bag2dataset output (never other files)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(handler=_to_dataset)

    bag = sub.add_parser("bag", help="bag maintenance: recover an interrupted recording",
                         description="Bag maintenance commands.", formatter_class=HelpFormatter)
    bag_sub = bag.add_subparsers(dest="bag_command", metavar="<bag command>", title="bag commands", required=True)
    r = bag_sub.add_parser(
        "recover",
        help="make a complete bag of what an interrupted recording (killed recorder, full disk) left on disk",
        description=(
            "A recorder that was killed (SIGKILL, an out-of-memory kill, a crash) or ran out of disk "
            "leaves MCAP files without summary and footer and no metadata.yaml; rosbag2 readers, ros2 bag play "
            "and pai bag2parquet refuse such a bag. This reads every .mcap file of BAG sequentially (including "
            "the unfinished BAG/BAG_k/BAG_k.mcap of recorder_node), stops each at its first truncated or "
            "inconsistent record (a chunk counts whole or not at all), and writes what was readable as a new, "
            "complete rosbag2 bag OUT (MCAP, metadata v8, the recorded message definitions and QoS). It prints "
            "the messages recovered per topic and the bag time up to which the data is complete. BAG itself is "
            "never modified; OUT is written under a temporary name and renamed when complete. recorder_node "
            "flushes every flush_period_s (default 1 s), so a kill loses at most that last window."
        ),
        formatter_class=HelpFormatter,
    )
    r.add_argument("bag", type=input_path, metavar="BAG", help="bag directory, or a single .mcap file")
    r.add_argument("-o", "--output", type=output_path, metavar="OUT", default=None,
                   help="new bag directory to write (default: BAG_recovered next to BAG)")
    r.add_argument("--force", action="store_true",
                   help="rewrite a bag even if it is already complete (metadata.yaml and every footer present)")
    r.add_argument("--quiet", action="store_true", help="no progress bar (shown after a second of work)")
    r.set_defaults(handler=_recover)


def _recover(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from pai_ros.bags.recover import recover_bag

    report = recover_bag(args.bag, args.output, force=args.force, progress=not args.quiet)
    for line in report.lines():
        print(f"  {line}")
    if report.output is None:
        print(f"pai bag recover: {args.bag} is complete (metadata.yaml and every file's footer are there); "
              "nothing to recover (--force rewrites it anyway)")
        return 0
    until = report.complete_until_ns
    when = ("" if until is None else
            f" up to bag time {until} ns ({datetime.fromtimestamp(until / 1e9, timezone.utc):%Y-%m-%d %H:%M:%S.%f} UTC)")
    topics = sum(1 for t in report.topics.values() if t.messages)
    if report.after_gap:  # a split file damaged mid-way: what it held after the damage is lost
        when += f", then a gap; {report.after_gap} of them from later files"
    print(f"pai bag recover: {report.messages} messages on {topics} topics{when} -> {report.output}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from pai_ros.bags.to_parquet import bag_to_parquet

    summary = bag_to_parquet(args.bag, args.out, progress=not args.quiet, overwrite=args.overwrite,
                             videos=not args.no_videos)
    for line in summary.lines():
        print(f"  {line}")
    print(f"pai bag2parquet: {summary.messages} messages from {args.bag} -> {args.out} in {summary.seconds:.1f} s")
    return 0


def _to_dataset(args: argparse.Namespace) -> int:
    from pai_ros.bags.to_dataset import Sampling, TopicMapping, bags_to_dataset

    mapping = TopicMapping(cameras=tuple(TopicMapping.parse_camera(c) for c in args.camera),
                           joint_states=("/" + args.joint_states.lstrip("/")) if args.joint_states else None,
                           state_joint_names=tuple(args.state_joint_names),
                           action_topic=("/" + args.action_topic.lstrip("/")) if args.action_topic else None,
                           action_names=tuple(args.action_names))
    sampling = Sampling(fps=args.fps, max_age_s=args.max_age, min_frames=args.min_frames)
    summary = bags_to_dataset(args.bags, args.output, mapping, sampling, task=args.task, repo_id=args.repo_id,
                              overwrite=args.overwrite, progress=not args.quiet)
    for line in summary.lines()[1:]:
        print(line)
    print(f"pai bag2dataset: {summary.lines()[0]} from {len(args.bags)} bag(s) -> {args.output} "
          f"(pai attention --dataset-root {args.output} ...)")
    return 0
