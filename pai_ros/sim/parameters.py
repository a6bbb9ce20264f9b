"""``sim_node``'s parameters: one spec for the ROS node, the core and the README tables."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from pai_ros.errors import UserError
from pai_ros.paramspec import Param
from pai_ros.sim.robot import SimConfig
from pai_ros.sim.scene import SceneConfig

_SCENE = SceneConfig()
_SIM = SimConfig()

PARAMS: list[Param] = [
    Param("seed", 0, "episode set: episode i of a seed has the same layout and noise on every run", min=0,
          max=2**31 - 1, read_only=True),
    Param("episodes", 10, "episodes to run (0..episodes-1 of the seed); then a summary and exit", min=1,
          max=100000, read_only=True),
    Param("loop", False, "start again at episode 0 after the last one instead of exiting", read_only=True),
    Param("rate_hz", float(_SCENE.fps), "simulation steps per second (the demo dataset's frame rate; lower it "
          "when the policy cannot keep up and too many steps hold for lack of an action)", min=0.1, max=1000.0,
          read_only=True),
    Param("max_steps", _SIM.max_steps, "steps before an episode times out", min=1, max=100000, read_only=True),
    Param("success_radius", _SIM.success_radius, "an episode succeeds when the gripper closes this close to the "
          "target's centre (table units; the block's half side is 0.08)", min=0.0, max=1.0, read_only=True),
    Param("settle_s", 2.0, "before each episode, publish nothing this long and ignore actions, so the policy "
          "node's inputs go stale and it drops the plan made on the previous scene (keep it above the policy "
          "node's max_observation_age_s)", min=0.0, max=60.0, read_only=True),
    Param("start_delay_s", 2.0, "wait this long before the first step (lets subscribers connect)", min=0.0,
          max=60.0, read_only=True),
    Param("wait_for_subscribers", 0, "after start_delay_s, also wait until the camera and joint_states topics "
          "have at least this many subscribers (0: do not wait)", min=0, max=1000, read_only=True),
    Param("image_height", _SCENE.front_hw[0], "camera image height in pixels (the policy's input size)", min=8,
          max=2048, read_only=True),
    Param("image_width", _SCENE.front_hw[1], "camera image width in pixels", min=8, max=2048, read_only=True),
    Param("diagnostics_period_s", 1.0, "how often /diagnostics reports the simulator's state", min=0.05,
          max=60.0, read_only=True),
]


@dataclass(frozen=True)
class SimNodeConfig:
    """The node's validated settings."""

    sim: SimConfig
    seed: int
    episodes: int
    loop: bool
    rate_hz: float
    settle_steps: int
    start_delay_s: float
    wait_for_subscribers: int
    diagnostics_period_s: float

    @classmethod
    def from_parameters(cls, p: dict[str, Any]) -> SimNodeConfig:
        hw = (int(p["image_height"]), int(p["image_width"]))
        scene = replace(SceneConfig(), front_hw=hw, wrist_hw=hw)
        try:
            sim = SimConfig(scene=scene, max_steps=int(p["max_steps"]), success_radius=float(p["success_radius"]))
        except UserError as exc:
            raise UserError(f"sim_node: {exc}") from None
        rate = float(p["rate_hz"])
        return cls(sim=sim, seed=int(p["seed"]), episodes=int(p["episodes"]), loop=bool(p["loop"]), rate_hz=rate,
                   # Up, not to the nearest: the silence must last at least settle_s, and a short one at a
                   # low rate must not round to no silence at all (the old plan would blend into the new episode).
                   settle_steps=math.ceil(float(p["settle_s"]) * rate - 1e-9), start_delay_s=float(p["start_delay_s"]),
                   wait_for_subscribers=int(p["wait_for_subscribers"]),
                   diagnostics_period_s=float(p["diagnostics_period_s"]))

    @property
    def period_s(self) -> float:
        return 1.0 / self.rate_hz
