"""``pai demo --closed-loop``: the demo policy drives the simulated demo robot, live, then a report.

One process, one executor, real nodes on real DDS topics (so `ros2 topic echo` and
rqt_image_view on the same domain see them): ``sim_node`` shows the demo scene and executes
actions, ``policy_node`` acts on its cameras (heatmaps, features), the recorder keeps everything
in an MCAP bag. Afterwards the bag becomes Parquet tables, a heatmap MP4 and a contact sheet, and
``report.json`` holds every episode's outcome and the success rate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from pai_ros.demo import outputs
from pai_ros.jsonfile import write_json_atomic
from pai_ros.ros import topics
from pai_ros.ros.demo import REPORT_FILE, prepare_output_dir
from pai_ros.sim.policy import EVAL_MODE

OUTCOME_TOPICS = ["sim_node/episode_outcome", "sim_node/summary"]


@dataclass
class ClosedLoopDemoResult:
    output_dir: Path
    bag: Path
    parquet: Path
    combined_video: Path
    contact_sheet: Path
    report: dict


def run_closed_loop_demo(output_dir: Path, *, episodes: int = 3, seed: int = 0, rate_hz: float = 15.0,
                         mode: str = EVAL_MODE, overwrite: bool = False, progress: bool = True,
                         assets=None) -> ClosedLoopDemoResult:
    """Run ``episodes`` closed-loop episodes of ``seed`` into ``output_dir`` (``assets``: default: build or find).

    ``mode``: the policy node's runner mode (default: temporal ensembling, as the closed-loop
    evaluation runs it; see :data:`pai_ros.sim.policy.EVAL_MODE`).
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from tqdm import tqdm

    from pai_ros.demo.assets import ensure_demo_assets
    from pai_ros.ros.policy_node import PolicyNode
    from pai_ros.ros.recorder_node import RecorderNode
    from pai_ros.ros.sim_node import SimNode
    from pai_ros.sim.scene import STATE_NAMES

    out = prepare_output_dir(Path(output_dir), overwrite)
    assets = assets or ensure_demo_assets(progress=progress)
    scene = assets.settings.scene
    bag = out / "bag"

    rclpy.init()
    executor = SingleThreadedExecutor()
    nodes = []
    try:
        policy = PolicyNode(parameter_overrides=[
            Parameter("policy_path", value=str(assets.policy_dir)),
            Parameter("state_joint_names", value=list(STATE_NAMES)), Parameter("action_names", value=list(STATE_NAMES)),
            Parameter("control_rate_hz", value=float(rate_hz)), Parameter("max_observation_age_s", value=0.5),
            Parameter("mode", value=mode),
            Parameter("sae_path", value=str(assets.sae_dir) if assets.has_sae() else "")])
        recorder = RecorderNode(parameter_overrides=[
            Parameter("output", value=str(bag)), Parameter("record_heatmaps", value=True),
            Parameter("camera_topics", value=[topics.CAMERA_IMAGE.format(camera=c) for c in topics.DEMO_CAMERAS]),
            Parameter("topics", value=[topics.JOINT_STATES, topics.ACTION, topics.ATTENTION_SHARES,
                                       topics.DIAGNOSTICS, topics.FEATURES, *OUTCOME_TOPICS])])
        sim = SimNode(parameter_overrides=[
            Parameter("episodes", value=int(episodes)), Parameter("seed", value=int(seed)),
            Parameter("rate_hz", value=float(rate_hz)), Parameter("image_height", value=int(scene.front_hw[0])),
            Parameter("image_width", value=int(scene.front_hw[1])), Parameter("start_delay_s", value=2.0)])
        nodes = [sim, policy, recorder]
        for n in nodes:
            executor.add_node(n)
        start = time.monotonic()
        with tqdm(total=episodes, desc="closed loop (sim -> policy -> sim)", unit="episode",
                  disable=not progress) as bar:
            while not sim.finished:
                executor.spin_once(timeout_sec=0.05)
                bar.update(len(sim.session.outcomes) - bar.n)
        end = time.monotonic() + 1.0  # let the summary and the last ticks reach the recorder
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        policy.shutdown()
        recorder.drain(executor)
        lossless = recorder.finish()
        report = sim.session.report()
        counts = sim.session.counts
        live = {"seconds": round(time.monotonic() - start, 1), "recorder_lossless": lossless,
                "sim_ticks": counts.ticks, "executed_steps": counts.executed, "settling_ticks": counts.settling,
                "held_steps": dict(counts.held), "policy_ticks": policy.live.health.counts[0],
                "policy_latency_ms": policy.live.runner.stats.latency_summary(), "mode": policy.live.runner.mode}
    finally:
        for n in nodes:
            n.destroy_node()
        rclpy.try_shutdown()

    done = outputs.outputs_from_bag(bag, out, rate_hz, progress)
    result = {"closed_loop": report.as_dict(), **live, "rate_hz": rate_hz, "heatmap_frames": done.heatmap_frames,
              "converted": done.converted, "policy": str(assets.policy_dir)}
    write_json_atomic(out / REPORT_FILE, result)  # written last: its presence says the run finished
    return ClosedLoopDemoResult(out, bag, done.parquet, done.combined, done.sheet, result)
