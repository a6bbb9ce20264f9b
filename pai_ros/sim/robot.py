"""The demo scene as a robot: episodes from a seed, commanded motion with the expert's limits.

The dataset's expert (:func:`pai_ros.sim.scene.expert_action`) commands absolute positions at
most ``max_step`` table units from the current one, and the gripper follows the command with a
small tracking error (``motion_noise``), clipped to the table; the gripper is closed when the
command's third value exceeds 0.5. :class:`SimRobot` moves by the same rules, whatever commands
it: a policy's command further away than ``max_step`` is shortened to ``max_step`` in its
direction, so the simulated arm can never move faster than the one the policy learned from.

An episode ends when the gripper first closes (success when its centre is within
``success_radius`` of the target's, i.e. over the red block; otherwise a miss) or after
``max_steps`` steps (timeout). A command that cannot be executed (wrong size, NaN/inf, outside
the table by more than ``range_tolerance``, or none at all) holds the gripper where it is, and
:class:`StepResult` says why: never an unbounded or undefined motion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pai_ros.require import require
from pai_ros.sim.scene import (
    Episode,
    SceneConfig,
    add_sensor_noise,
    render_front,
    render_wrist,
    sample_episode,
)

CAMERAS = ("front", "wrist")

# Why a step held the gripper still instead of moving it (StepResult.held).
HOLD_NO_ACTION = "no action"
HOLD_WRONG_SIZE = "wrong size"
HOLD_NOT_FINITE = "NaN or inf"
HOLD_OUT_OF_RANGE = "out of range"

OUTCOME_SUCCESS = "success"
OUTCOME_MISSED = "missed"  # closed, but not over the target
OUTCOME_TIMEOUT = "timeout"


@dataclass(frozen=True)
class SimConfig:
    """The simulated robot: the demo scene plus what defines an episode's end and a valid action."""

    scene: SceneConfig = field(default_factory=SceneConfig)
    max_steps: int = 80  # twice the demo's episode length: room for a slower-than-expert policy
    success_radius: float = 0.08  # half the block's side: the gripper closes over the red block
    range_tolerance: float = 0.1  # commands up to this far outside the table are clipped onto it, further: held
    gripper_range: tuple[float, float] = (-0.5, 1.5)  # gripper commands outside this are held

    def __post_init__(self) -> None:
        require("max_steps", self.max_steps, at_least=1)
        for name in ("success_radius", "range_tolerance"):
            require(name, getattr(self, name), at_least=0)


@dataclass(frozen=True)
class SimObservation:
    """What the robot's sensors give: camera images (RGB uint8) and the state ``[x, y, gripper]``."""

    images: dict[str, np.ndarray]
    state: np.ndarray  # (3,) float32
    step: int


@dataclass(frozen=True)
class StepResult:
    """What one step did: ``held`` is None when the command was executed, else why it was not."""

    state: np.ndarray
    held: str | None
    detail: str = ""


@dataclass(frozen=True)
class EpisodeOutcome:
    index: int
    outcome: str  # success | missed | timeout
    steps: int
    final_distance: float  # gripper centre to target centre, table units
    held_steps: int  # steps whose command was not executed
    hold_reasons: dict[str, int]

    @property
    def success(self) -> bool:
        return self.outcome == OUTCOME_SUCCESS

    def as_dict(self) -> dict:
        return {"episode": self.index, "outcome": self.outcome, "success": self.success, "steps": self.steps,
                "final_distance": self.final_distance, "held_steps": self.held_steps,
                "hold_reasons": dict(self.hold_reasons)}


def episode_rng(seed: int, index: int) -> np.random.Generator:
    """Episode ``index`` of ``seed``'s set: its own stream, the same whatever ran before it."""
    return np.random.default_rng([int(seed), int(index)])


class SimRobot:
    """One episode at a time: :meth:`reset`, then :meth:`observe` / :meth:`step` until :attr:`done`."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.episode: Episode | None = None
        self.index = -1
        self._rng = np.random.default_rng(0)
        self._state = np.zeros(3, dtype=np.float32)
        self._steps = 0
        self._holds: dict[str, int] = {}
        self._outcome: EpisodeOutcome | None = None

    # ------------------------------------------------------------------ episode

    def reset(self, seed: int, index: int = 0) -> SimObservation:
        """Start episode ``index`` of the set drawn from ``seed`` (reproducible) and observe it."""
        self._rng = episode_rng(seed, index)
        self.episode = sample_episode(self._rng, self.config.scene)
        self.index = index
        self._state = np.array([*self.episode.start, 0.0], dtype=np.float32)
        self._steps = 0
        self._holds = {}
        self._outcome = None
        return self.observe()

    @property
    def state(self) -> np.ndarray:
        return self._state.copy()

    @property
    def done(self) -> bool:
        return self._outcome is not None

    @property
    def outcome(self) -> EpisodeOutcome | None:
        return self._outcome

    @property
    def steps(self) -> int:
        return self._steps

    def distance(self) -> float:
        """Gripper centre to target centre, in table units."""
        self._require_episode()
        return float(np.linalg.norm(self.episode.target - self._state[:2].astype(np.float64)))

    def observe(self) -> SimObservation:
        """Render both cameras (with the dataset's sensor noise) at the current state."""
        ep, cfg = self._require_episode(), self.config.scene
        images = {"front": add_sensor_noise(render_front(ep, self._state, cfg), self._rng, cfg.pixel_noise),
                  "wrist": add_sensor_noise(render_wrist(ep, self._state, cfg), self._rng, cfg.pixel_noise)}
        return SimObservation(images, self._state.copy(), self._steps)

    # ------------------------------------------------------------------ one step

    def check_action(self, action: np.ndarray | list[float] | None) -> tuple[np.ndarray | None, str | None, str]:
        """``(command, None, "")`` for an executable command, else ``(None, reason, detail)``."""
        if action is None:
            return None, HOLD_NO_ACTION, "no action arrived for this step"
        try:
            arr = np.asarray(action, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            return None, HOLD_WRONG_SIZE, f"not a numeric vector: {action!r}"
        if arr.shape != (3,):
            return None, HOLD_WRONG_SIZE, f"expected 3 values [x, y, gripper], got {arr.size}"
        if not np.all(np.isfinite(arr)):
            return None, HOLD_NOT_FINITE, f"action {arr.tolist()} is not finite"
        tol, (g_lo, g_hi) = self.config.range_tolerance, self.config.gripper_range
        if np.any(arr[:2] < -tol) or np.any(arr[:2] > 1.0 + tol) or not g_lo <= arr[2] <= g_hi:
            return None, HOLD_OUT_OF_RANGE, (f"action {np.round(arr, 4).tolist()} is outside x, y in "
                                             f"[{-tol:g}, {1 + tol:g}], gripper in [{g_lo:g}, {g_hi:g}]")
        return arr, None, ""

    def step(self, action: np.ndarray | list[float] | None) -> StepResult:
        """Move towards ``action`` by at most ``max_step`` (the expert's limit), or hold and say why."""
        self._require_episode()
        if self.done:
            raise RuntimeError("the episode is over; call reset() first")
        command, reason, detail = self.check_action(action)
        cfg = self.config.scene
        if command is None:
            self._holds[reason] = self._holds.get(reason, 0) + 1
        else:
            pos = self._state[:2].astype(np.float64)
            delta = command[:2].clip(0.0, 1.0) - pos
            norm = float(np.linalg.norm(delta))
            if norm > cfg.max_step:
                delta *= cfg.max_step / norm
            noise = self._rng.normal(0.0, cfg.motion_noise, size=2)
            new_pos = (pos + delta + noise).clip(0.0, 1.0)
            self._state = np.array([new_pos[0], new_pos[1], float(command[2] > 0.5)], dtype=np.float32)
        self._steps += 1
        self._finish_if_over()
        return StepResult(self._state.copy(), reason, detail)

    def _finish_if_over(self) -> None:
        closed = self._state[2] > 0.5
        if not closed and self._steps < self.config.max_steps:
            return
        dist = self.distance()
        if closed:
            outcome = OUTCOME_SUCCESS if dist <= self.config.success_radius else OUTCOME_MISSED
        else:
            outcome = OUTCOME_TIMEOUT
        self._outcome = EpisodeOutcome(self.index, outcome, self._steps, dist, sum(self._holds.values()),
                                       dict(self._holds))

    def _require_episode(self) -> Episode:
        if self.episode is None:
            raise RuntimeError("no episode: call reset(seed, index) first")
        return self.episode


def expert_command(robot: SimRobot) -> np.ndarray:
    """The dataset's scripted expert acting on ``robot`` (it knows the target: a reference, not a policy)."""
    from pai_ros.sim.scene import expert_action

    return expert_action(robot.state, robot._require_episode().target, robot.config.scene)
