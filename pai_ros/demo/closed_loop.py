"""The demo assets' closed-loop stage: the demo policy drives the simulated demo robot.

demo/ builds on sim/ (the scene is sim's world; the dataset records the scripted expert in
it), never the other way round. It is a module of its own, not part of
:mod:`pai_ros.demo.assets`, so that building the dataset and the policy does not load the
simulator; ``pai demo-assets`` asks for it after the other stages.
"""

from __future__ import annotations

from pathlib import Path

from pai_ros.demo.assets import (
    CLOSED_LOOP_EPISODES,
    CLOSED_LOOP_FILE,
    CLOSED_LOOP_SEED,
    DemoAssets,
    ensure_policy_stage,
)
from pai_ros.demo.report import plot_closed_loop
from pai_ros.demo.stage_cache import say
from pai_ros.jsonfile import json_text
from pai_ros.sim.evaluate import evaluate_closed_loop
from pai_ros.sim.policy import EVAL_MODE, sim_config_for, sim_runner
from pai_ros.sim.robot import SimConfig


def ensure_closed_loop(assets: DemoAssets, *, episodes: int = CLOSED_LOOP_EPISODES, rebuild: bool = False,
                       progress: bool = True) -> Path:
    """The sealed ``closed_loop/`` stage (built when missing or older than the policy); its summary's path.

    ``episodes``: fewer than the demo's fixed set only for tests of the toy assets (a cached stage
    is reused whatever it was built with).
    """
    ensure_policy_stage(assets, assets.closed_loop_dir, "closed-loop evaluation",
                        lambda tmp: _build(tmp, assets, episodes, progress), rebuild=rebuild)
    return assets.closed_loop_dir / CLOSED_LOOP_FILE


def _build(tmp: Path, assets: DemoAssets, episodes: int, progress: bool) -> dict:
    say(f"closed-loop evaluation: the demo policy drives the simulated robot for {episodes} episodes")
    runner = sim_runner(assets.policy_dir, EVAL_MODE)
    try:
        config = sim_config_for(runner, SimConfig(scene=assets.settings.scene))
        report = evaluate_closed_loop(runner, episodes, CLOSED_LOOP_SEED, config, progress=progress)
    finally:
        runner.close()
    tmp.mkdir(parents=True)
    result = {**report.as_dict(), "mode": EVAL_MODE, "policy": str(assets.policy_dir)}
    (tmp / CLOSED_LOOP_FILE).write_text(json_text(result))
    plot_closed_loop(result, tmp / "closed_loop.png")
    return {"success_rate": report.success_rate, "mean_final_distance": report.mean_final_distance}
