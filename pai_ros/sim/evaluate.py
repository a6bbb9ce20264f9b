"""Closed-loop evaluation: a policy drives the simulated demo robot over a fixed set of episodes.

Held-out action error (:mod:`pai_ros.demo.evaluate`) says how close each predicted action is to
the expert's on the expert's own trajectory; closed loop says whether the policy, acting on what
its own actions led to, reaches the red block and closes on it. Episodes ``0..n-1`` of a seed
are the same for every policy (same layouts, same noise streams), so success rates of different
policies, or of one policy under different steerings, compare on identical episodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from pai_ros.require import require
from pai_ros.sim.robot import EpisodeOutcome, SimConfig, SimObservation, SimRobot

#: A policy as a plain function: observation in, ``[x, y, gripper]`` (or None: no action) out.
PolicyFn = Callable[[SimObservation], Any]


class _Runner(Protocol):  # pai_ros.policy.runner.PolicyRunner, without importing torch here
    def reset(self) -> None: ...
    def step(self, obs: Any) -> Any: ...


@dataclass(frozen=True)
class ClosedLoopReport:
    seed: int
    episodes: list[EpisodeOutcome]
    max_steps: int
    success_radius: float

    @property
    def success_rate(self) -> float:
        return float(np.mean([e.success for e in self.episodes])) if self.episodes else float("nan")

    @property
    def mean_final_distance(self) -> float:
        return float(np.mean([e.final_distance for e in self.episodes])) if self.episodes else float("nan")

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.episodes:
            out[e.outcome] = out.get(e.outcome, 0) + 1
        return out

    def summary(self) -> dict:
        """The figures without the per-episode list (what a report or a benchmark line shows)."""
        return {"episodes": len(self.episodes), "seed": self.seed, "success_rate": self.success_rate,
                "mean_final_distance": self.mean_final_distance, "outcomes": self.counts(),
                "max_steps": self.max_steps, "success_radius": self.success_radius,
                "mean_steps": float(np.mean([e.steps for e in self.episodes])) if self.episodes else float("nan"),
                "held_steps": int(sum(e.held_steps for e in self.episodes))}

    def as_dict(self) -> dict:
        return {**self.summary(), "per_episode": [e.as_dict() for e in self.episodes]}


def runner_policy(runner: _Runner) -> tuple[PolicyFn, Callable[[], None]]:
    """A PolicyRunner as ``(policy function, per-episode reset)``: images and state in, its action out."""
    from pai_ros.policy.errors import PolicyOutputError
    from pai_ros.policy.observation import Observation

    def act(obs: SimObservation) -> np.ndarray | None:
        try:
            return runner.step(Observation(images=obs.images, state=obs.state)).action
        except PolicyOutputError:
            return None  # no action: the robot holds, as it does live when the node refuses the tick

    return act, runner.reset


def run_episode(robot: SimRobot, policy: PolicyFn, seed: int, index: int) -> EpisodeOutcome:
    """One episode of ``seed``'s set, driven by ``policy`` until it succeeds, misses or times out."""
    obs = robot.reset(seed, index)
    while not robot.done:
        robot.step(policy(obs))
        if not robot.done:
            obs = robot.observe()
    assert robot.outcome is not None
    return robot.outcome


def evaluate_closed_loop(policy: _Runner | PolicyFn, episodes: int, seed: int, config: SimConfig | None = None, *,
                         reset: Callable[[], None] | None = None, robot: SimRobot | None = None,
                         progress: bool = False, desc: str = "closed loop") -> ClosedLoopReport:
    """Run episodes ``0..episodes-1`` of ``seed`` with ``policy`` and report each outcome.

    ``policy`` is a :class:`~pai_ros.policy.runner.PolicyRunner` (reset before every episode:
    empty queue and ensemble) or a function of the observation (``reset``, if given, is called
    before every episode). ``robot``: the robot to drive (default: a new one with ``config``), e.g.
    for a reference controller that reads the episode's ground truth.
    """
    require("episodes", episodes, at_least=1)
    if hasattr(policy, "step") and hasattr(policy, "reset"):
        fn, reset = runner_policy(policy)
    else:
        fn = policy
    robot = robot or SimRobot(config)
    outcomes = []
    bar = tqdm(range(episodes), desc=desc, unit="episode", disable=not progress)
    for i in bar:
        if reset is not None:
            reset()
        outcomes.append(run_episode(robot, fn, seed, i))
        bar.set_postfix(success=f"{np.mean([o.success for o in outcomes]):.0%}")
    return ClosedLoopReport(seed, outcomes, robot.config.max_steps, robot.config.success_radius)
