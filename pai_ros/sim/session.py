"""A run of closed-loop episodes at a fixed rate, as ``sim_node`` drives it (ROS-free).

Each tick of the node's timer is one :meth:`SimSession.tick`: the newest action received since
the previous tick is executed (none: the gripper holds, and the tick says why), the robot is
observed, and an episode that ended is reported and replaced by the next one.

Before each episode (the first too) come ``settle_steps`` ticks in which nothing is shown
(:attr:`SimSession.showing` is False: the node publishes no observation) and every action is
ignored. A policy that runs open loop on a chunk (LeRobot's action queue) or blends chunks
(temporal ensembling) would otherwise go on with what it planned on the previous episode's scene;
silence longer than the policy node's ``max_observation_age_s`` makes its inputs stale, and a
refused tick drops the plan, so the episode's first action comes from an empty queue and ensemble,
as :func:`pai_ros.sim.evaluate.run_episode` resets the runner. Showing the new scene still during
settling was worse: temporal ensembling blended ever more chunks predicted on the same unmoving
frame, drifting to the average of the whole plan (the gripper half closed before the first step),
and ``pai demo --closed-loop`` lost nearly every episode. (ROS offers no standard "new episode"
signal a policy node would obey.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pai_ros.diagnostic_level import Level
from pai_ros.require import require
from pai_ros.sim.evaluate import ClosedLoopReport
from pai_ros.sim.robot import EpisodeOutcome, SimConfig, SimObservation, SimRobot
from pai_ros.sim.scene import STATE_NAMES

SETTLING = "settling"  # a tick between episodes: actions ignored on purpose


def action_vector(names: Sequence[str], positions: Sequence[float]) -> np.ndarray:
    """``[x, y, gripper]`` from a named action: by name when it names all three, else in order.

    Anything malformed (wrong count, non-numbers) comes back as it is, and the robot holds and
    says why (:meth:`~pai_ros.sim.robot.SimRobot.check_action`).
    """
    values = np.asarray(list(positions), dtype=np.float64)
    names = list(names)
    if len(names) == len(values) and all(n in names for n in STATE_NAMES):
        return values[[names.index(n) for n in STATE_NAMES]]
    return values


@dataclass
class TickReport:
    """What one tick did: what to publish, and what ended."""

    observation: SimObservation | None  # None once every episode is done
    held: str | None  # why the command was not executed (None: executed or settling)
    detail: str
    settling: bool
    finished_episode: EpisodeOutcome | None = None
    all_done: bool = False


@dataclass
class SessionCounts:
    ticks: int = 0
    executed: int = 0
    settling: int = 0
    held: dict[str, int] = field(default_factory=dict)


class SimSession:
    """Episodes ``0..episodes-1`` of ``seed``, one :meth:`tick` per control period."""

    def __init__(self, config: SimConfig, seed: int, episodes: int, settle_steps: int, loop: bool = False) -> None:
        require("episodes", episodes, at_least=1, error=ValueError)
        self.robot = SimRobot(config)
        self.seed, self.episodes, self.settle_steps, self.loop = seed, episodes, settle_steps, loop
        self.outcomes: list[EpisodeOutcome] = []
        self.counts = SessionCounts()
        self.last_hold: tuple[str, str] | None = None
        self._window: dict[str, int] = {"steps": 0}  # since the last diagnostics() call
        self._next_index = 0
        self._settle_left = 0
        self._observation = self._start_next()

    @property
    def done(self) -> bool:
        return self._observation is None

    @property
    def episode_index(self) -> int:
        return self.robot.index

    @property
    def showing(self) -> bool:
        """Whether the cameras and joints are published now (False while settling before an episode)."""
        return self._observation is not None and self._settle_left == 0

    @property
    def observation(self) -> SimObservation | None:
        """What the cameras and joints show now (publish this)."""
        return self._observation

    def _start_next(self) -> SimObservation | None:
        if self._next_index >= self.episodes and not self.loop:
            return None
        index = self._next_index
        self._next_index += 1
        self._settle_left = self.settle_steps
        return self.robot.reset(self.seed, index % self.episodes if self.loop else index)

    def tick(self, action: np.ndarray | None) -> TickReport:
        """Advance one control period with ``action`` (the newest one received since the last tick)."""
        if self.done:
            return TickReport(None, None, "", False, all_done=True)
        self.counts.ticks += 1
        if self._settle_left > 0:
            self._settle_left -= 1
            self.counts.settling += 1
            return TickReport(self._observation, None, "", True)
        result = self.robot.step(action)
        self._window["steps"] += 1
        if result.held is None:
            self.counts.executed += 1
        else:
            self.counts.held[result.held] = self.counts.held.get(result.held, 0) + 1
            self._window[result.held] = self._window.get(result.held, 0) + 1
            self.last_hold = (result.held, result.detail)
        finished = None
        if self.robot.done:
            finished = self.robot.outcome
            self.outcomes.append(finished)
            self._observation = self._start_next()
        else:
            self._observation = self.robot.observe()
        return TickReport(self._observation, result.held, result.detail, False, finished, self.done)

    def diagnostics(self) -> tuple[Level, str, dict[str, str]]:
        """``(level, message, values)`` for /diagnostics since the previous call (OK, or WARN).

        WARN while steps hold (no action, NaN, out of range): the robot is not doing what the policy
        says, and the message says why.
        """
        window, self._window = self._window, {"steps": 0}
        steps = window.pop("steps")
        done = len(self.outcomes)
        successes = sum(o.success for o in self.outcomes)
        values = {"episode": str(self.episode_index), "episodes_done": str(done), "successes": str(successes),
                  "step": str(self.robot.steps), "ticks": str(self.counts.ticks),
                  "executed_steps": str(self.counts.executed),
                  "held_steps": str(sum(self.counts.held.values())),
                  **{f"held: {k}": str(v) for k, v in sorted(self.counts.held.items())}}
        if self.last_hold is not None:
            values["last_hold"] = f"{self.last_hold[0]}: {self.last_hold[1]}"
        if self.done:
            return Level.OK, f"finished: {successes}/{done} episodes succeeded", values
        if window:
            reasons = ", ".join(f"{k} ({v} of {steps} steps)" for k, v in sorted(window.items()))
            return Level.WARN, f"holding position: {reasons}", values
        phase = "settling (actions ignored)" if self._settle_left > 0 else "running"
        return Level.OK, f"episode {self.episode_index} {phase}, {successes}/{done} succeeded so far", values

    def report(self) -> ClosedLoopReport:
        cfg = self.robot.config
        return ClosedLoopReport(self.seed, list(self.outcomes), cfg.max_steps, cfg.success_radius)
