"""``pai bag2parquet``: a recorded bag as Parquet tables and MP4 videos, for analysis."""

from __future__ import annotations

import argparse
from pathlib import Path


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
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("bag", type=Path, metavar="BAG", help="bag directory, or a .mcap/.db3 file")
    p.add_argument("out", type=Path, metavar="OUT", help="output directory (new, or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists and is not empty")
    p.add_argument("--no-videos", action="store_true",
                   help="write the Parquet tables only (no MP4s; frames.parquet indexes the image messages)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from pai_ros.bags.to_parquet import bag_to_parquet

    summary = bag_to_parquet(args.bag, args.out, progress=not args.quiet, overwrite=args.overwrite,
                             videos=not args.no_videos)
    for line in summary.lines():
        print(f"  {line}")
    print(f"pai bag2parquet: {summary.messages} messages from {args.bag} -> {args.out} in {summary.seconds:.1f} s")
    return 0
