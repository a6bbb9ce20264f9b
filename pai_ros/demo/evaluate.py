"""Held-out evaluation of the demo policy: action error, and whether it uses the cameras.

Three numbers per held-out frame, all in action units (table units for x, y; 0/1 gripper):

* ``policy``: the executed (first) action of the predicted chunk vs the recorded action;
* ``images_swapped``: the same, with both camera images taken from another episode at the same
  frame index (same state, wrong scene): a policy that uses the images gets much worse;
* ``hold_position``: the trivial baseline that commands the current state again. One step
  ahead it is hard to beat (the gripper moves at most ``max_step`` per frame); over the
  chunk's horizon (``chunk_mae_*``) it is not, which is where the policy must know the target.

And one number per held-out episode, the open-loop counterpart of the simulated robot's success:
walking along the recorded trajectory, does the policy's first "close" (temporally ensembled, as
the closed loop runs it; while the recorded gripper is still open) command a position within
``radius`` of where the expert closed? A policy that closes early, or never, fails it; per-frame
gripper agreement does not see that (a training that agreed on 85% of frames closed early in 46
of 50 simulated episodes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pai_ros.data.video import video_backend
from pai_ros.demo.learning_gate import LearningGate
from pai_ros.policy.loading import load_act_policy
from pai_ros.policy.runner import DEFAULT_ENSEMBLE_COEFF
from pai_ros.sim.scene import SceneConfig


@dataclass
class HeldoutEval:
    frames: int
    episodes: int
    mae_policy: float  # mean |error| over x, y of the executed action
    mae_images_swapped: float
    mae_hold_position: float
    gripper_accuracy: float  # predicted gripper (>0.5) agrees with the recorded one
    chunk_mae_policy: float  # mean |error| over x, y of the whole predicted chunk vs recorded future
    chunk_mae_hold_position: float  # the same for "stay where you are" over the chunk's horizon
    first_close_success: float  # share of episodes whose first predicted close is over the target (see above)

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    @property
    def chunk_error_ratio(self) -> float:
        """The policy's chunk error over holding still's: well below 1 when it knows where to go."""
        return self.chunk_mae_policy / max(self.chunk_mae_hold_position, 1e-12)

    @property
    def image_use_ratio(self) -> float:
        """Executed-action error with the wrong episode's images over the right ones': above 1 when the
        policy reads the scene from the cameras."""
        return self.mae_images_swapped / max(self.mae_policy, 1e-12)

    def learned(self, gate: LearningGate) -> bool:
        return (self.chunk_error_ratio <= gate.max_chunk_error_ratio and self.image_use_ratio >= gate.min_image_use_ratio
                and self.first_close_success >= gate.min_first_close_success)

    def verdict(self) -> str:
        return (f"held-out chunk error {self.chunk_mae_policy:.3f} vs {self.chunk_mae_hold_position:.3f} holding "
                f"still ({self.chunk_error_ratio:.2f}x); executed-action error {self.mae_policy:.3f} vs "
                f"{self.mae_images_swapped:.3f} with swapped images ({self.image_use_ratio:.1f}x); first close over "
                f"the target in {self.first_close_success:.0%} of episodes (gripper right on "
                f"{self.gripper_accuracy:.0%} of frames)")


def _predict_chunks(loaded, batch: dict[str, torch.Tensor]) -> np.ndarray:
    with torch.inference_mode():
        obs = loaded.preprocessor(batch)
        chunk = loaded.policy.predict_action_chunk(obs)  # (B, chunk, action_dim), normalised
        b, t, d = chunk.shape
        actions = loaded.postprocessor(chunk.reshape(b * t, d)).reshape(b, t, d)
    return actions.numpy()


def evaluate_heldout(policy_dir: Path, dataset_root: Path, repo_id: str, *, batch_size: int = 32,
                     device: str = "cpu", radius: float = SceneConfig.block_size / 2,
                     max_step: float = SceneConfig.max_step) -> HeldoutEval:
    """``radius``: as the simulated robot's success radius, half a block; ``max_step``: the scene's motion limit."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    loaded = load_act_policy(policy_dir, device)
    ds = LeRobotDataset(repo_id, root=dataset_root, video_backend=video_backend())
    cams = loaded.camera_keys
    items = [ds[i] for i in range(len(ds))]
    episode = np.array([int(it["episode_index"]) for it in items])
    frame = np.array([int(it["frame_index"]) for it in items])
    state = torch.stack([it["observation.state"] for it in items])
    action = torch.stack([it["action"] for it in items]).numpy()
    images = {k: torch.stack([it[k] for it in items]) for k in cams}

    # For each frame, the same frame index in the next episode (clamped to its length).
    episodes = sorted(set(episode.tolist()))
    index_of = {(e, f): i for i, (e, f) in enumerate(zip(episode, frame))}
    last_frame = {e: frame[episode == e].max() for e in episodes}
    swap = np.empty(len(items), dtype=np.int64)
    for i, (e, f) in enumerate(zip(episode, frame)):
        other = episodes[(episodes.index(e) + 1) % len(episodes)]
        swap[i] = index_of[(other, min(f, last_frame[other]))]

    def run(image_index: np.ndarray) -> np.ndarray:
        out = []
        for s in range(0, len(items), batch_size):
            sl = slice(s, s + batch_size)
            batch = {"observation.state": state[sl]}
            for k in cams:
                batch[k] = images[k][torch.as_tensor(image_index[sl])]
            out.append(_predict_chunks(loaded, batch))
        return np.concatenate(out)

    identity = np.arange(len(items))
    chunks = run(identity)
    swapped = run(swap)

    # Recorded future actions for the chunk comparison, on the frames of the reach (recorded gripper still
    # open: once closed, holding still is the task) and up to the episode's end (episodes may be shorter than a
    # chunk); both the policy and holding still are scored on the same steps.
    chunk_len = chunks.shape[1]
    chunk_errors, hold_errors = [], []
    states = state.numpy()
    for i, (e, f) in enumerate(zip(episode, frame)):
        if states[i, 2] > 0.5:
            continue
        horizon = min(chunk_len, int(last_frame[e] - f) + 1)
        future = action[i: i + horizon]
        chunk_errors.append(np.abs(chunks[i, :horizon, :2] - future[:, :2]).mean())
        hold_errors.append(np.abs(states[i, None, :2] - future[:, :2]).mean())

    first = chunks[:, 0]
    # Judged on what the robot would execute with temporal ensembling (the mode the closed loop and the sim
    # launch file use), chunks predicted along the recorded trajectory: the first action alone is noisier.
    coeff = loaded.policy.config.temporal_ensemble_coeff or DEFAULT_ENSEMBLE_COEFF  # as the runner picks it
    first_close = [_first_close_on_target(_ensembled(chunks[episode == e], coeff), states[episode == e],
                                          action[episode == e], radius, max_step) for e in episodes]
    return HeldoutEval(
        frames=len(items), episodes=len(episodes),
        mae_policy=float(np.abs(first[:, :2] - action[:, :2]).mean()),
        mae_images_swapped=float(np.abs(swapped[:, 0, :2] - action[:, :2]).mean()),
        mae_hold_position=float(np.abs(state.numpy()[:, :2] - action[:, :2]).mean()),
        gripper_accuracy=float(((first[:, 2] > 0.5) == (action[:, 2] > 0.5)).mean()),
        chunk_mae_policy=float(np.mean(chunk_errors)) if chunk_errors else float("nan"),
        chunk_mae_hold_position=float(np.mean(hold_errors)) if hold_errors else float("nan"),
        first_close_success=float(np.mean(first_close)),
    )


def _ensembled(chunks: np.ndarray, coeff: float = DEFAULT_ENSEMBLE_COEFF) -> np.ndarray:
    """Per frame of one episode (chunks predicted frame by frame, in order), the action temporal ensembling
    executes: LeRobot's own ``ACTTemporalEnsembler``, as the runner's ``ensemble`` mode uses it."""
    from lerobot.policies.act.modeling_act import ACTTemporalEnsembler

    ensembler = ACTTemporalEnsembler(coeff, chunks.shape[1])
    return np.stack([ensembler.update(torch.as_tensor(c, dtype=torch.float64)[None])[0].numpy() for c in chunks])


def _first_close_on_target(predicted: np.ndarray, states: np.ndarray, recorded: np.ndarray, radius: float,
                           max_step: float) -> bool:
    """One episode's frames in order: is the policy's first close, while the recorded gripper is open, commanded
    within ``radius`` of where the expert closed? Never closing, or an episode the expert never closed, is a miss."""
    expert_closes = np.flatnonzero(recorded[:, 2] > 0.5)
    if len(expert_closes) == 0:
        return False
    goal = recorded[expert_closes[0], :2]
    for pred, state in zip(predicted, states):
        if state[2] > 0.5:
            break  # the recorded gripper is closed from here on: the expert's close came first
        if pred[2] > 0.5:
            # Where the robot ends up: the commanded position, at most one step of the motion limit away.
            delta = pred[:2] - state[:2]
            norm = float(np.linalg.norm(delta))
            reached = state[:2] + (delta if norm <= max_step else delta * max_step / norm)
            return bool(np.linalg.norm(reached - goal) <= radius)
    return False
