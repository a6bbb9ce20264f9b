"""``pai demo --closed-loop``: the demo policy drives the simulated demo robot, live, then a report.

One process, one executor, real nodes on real DDS topics (so `ros2 topic echo` and
rqt_image_view on the same domain see them): ``sim_node`` shows the demo scene and executes
actions, ``policy_node`` acts on its cameras (heatmaps, features), the recorder keeps everything
in an MCAP bag. Afterwards the bag becomes Parquet tables, a heatmap MP4 and a contact sheet, and
``report.json`` holds every episode's outcome and the success rate.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from pai_ros.demo import outputs
from pai_ros.demo.output_dir import check_output_dir, demo_sae_id, finish_output_dir, prepare_output_dir
from pai_ros.ros import topics
from pai_ros.ros.demo import DemoResult
from pai_ros.ros.in_process import (
    InProcessGraph,
    demo_policy_parameters,
    demo_recorder_parameters,
    observation_age_for,
)
from pai_ros.sim.policy import EVAL_MODE

if TYPE_CHECKING:
    from pai_ros.demo.assets import DemoAssets

OUTCOME_TOPICS = ["sim_node/episode_outcome", "sim_node/summary"]


def run_closed_loop_demo(output_dir: Path, *, episodes: int = 3, seed: int = 0, rate_hz: float = 15.0,
                         mode: str = EVAL_MODE, overwrite: bool = False, progress: bool = True,
                         assets: DemoAssets | None = None) -> DemoResult:
    """Run ``episodes`` closed-loop episodes of ``seed`` into ``output_dir`` (``assets``: default: build or find).

    ``mode``: the policy node's runner mode (default: temporal ensembling, as the closed-loop
    evaluation runs it; see :data:`pai_ros.sim.policy.EVAL_MODE`).
    """
    from rclpy.parameter import Parameter
    from tqdm import tqdm

    from pai_ros.demo.assets import ensure_demo_assets
    from pai_ros.ros.policy_node import PolicyNode
    from pai_ros.ros.recorder_node import RecorderNode
    from pai_ros.ros.sim_node import SimNode
    from pai_ros.sim.scene import STATE_NAMES

    check_output_dir(Path(output_dir), overwrite)  # before minutes of asset building
    assets = assets or ensure_demo_assets(progress=progress)
    out = prepare_output_dir(Path(output_dir), overwrite, demo_sae_id(assets))
    scene = assets.settings.scene
    bag = out / "bag"

    with InProcessGraph() as graph:
        policy = graph.add(PolicyNode(parameter_overrides=demo_policy_parameters(
            assets, STATE_NAMES, STATE_NAMES, rate_hz, mode=mode)))
        recorder = graph.add(RecorderNode(parameter_overrides=demo_recorder_parameters(
            str(bag), topics.DEMO_CAMERAS, [topics.JOINT_STATES, topics.ACTION, topics.ATTENTION_SHARES,
                                            topics.DIAGNOSTICS, topics.FEATURES, *OUTCOME_TOPICS])))
        sim = graph.add(SimNode(parameter_overrides=[
            Parameter("episodes", value=int(episodes)), Parameter("seed", value=int(seed)),
            Parameter("rate_hz", value=float(rate_hz)), Parameter("image_height", value=int(scene.front_hw[0])),
            Parameter("image_width", value=int(scene.front_hw[1])), Parameter("start_delay_s", value=2.0),
            # The silence before each episode outlasts the policy's observation age twice, so that the
            # policy always drops its old plan.
            Parameter("settle_s", value=max(2.0, 2 * observation_age_for(rate_hz)))]))
        start = time.monotonic()
        with tqdm(total=episodes, desc="closed loop (sim -> policy -> sim)", unit="episode",
                  disable=not progress) as bar:
            graph.spin_while(lambda: not sim.finished, lambda: bar.update(len(sim.session.outcomes) - bar.n))
        graph.settle()  # the summary and the last ticks reach the recorder
        lossless = graph.close_recording(policy, recorder)
        report = sim.session.report()
        counts = sim.session.counts
        live = {"seconds": round(time.monotonic() - start, 1), "recorder_lossless": lossless,
                "sim_ticks": counts.ticks, "executed_steps": counts.executed, "settling_ticks": counts.settling,
                "held_steps": dict(counts.held), "policy_ticks": policy.live.health.counts[0],
                "policy_latency_ms": policy.live.runner.stats.latency_summary(), "mode": policy.live.runner.mode}

    done = outputs.outputs_from_bag(bag, out, rate_hz, progress)
    result = {"closed_loop": report.as_dict(), **live, "rate_hz": rate_hz, "heatmap_frames": done.heatmap_frames,
              "converted": done.converted, "policy": str(assets.policy_dir)}
    finish_output_dir(out, result)
    return DemoResult(out, bag, done.parquet, done.combined, done.sheet, result)
