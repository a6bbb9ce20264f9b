"""Run an ACT policy once per control tick, capturing attention, without changing control.

Modes (how the executed action is chosen; the model's outputs are never altered):

* ``ensemble``: temporal ensembling with LeRobot's own ``ACTTemporalEnsembler``. The model runs
  every tick and every run is used, so every-tick maps cost nothing extra.
* ``queue``: LeRobot's chunk queue (``select_action`` semantics, bit-identical actions). The
  model also runs on ticks where the queue is not empty so that maps stay live; those extra
  forwards are counted as wasted in :class:`RunnerStats`.
* ``replan``: execute the first action of a fresh chunk every tick.
* ``chunk``: run only when the queue is empty (cheapest; maps refresh once per chunk).

``auto`` picks what the checkpoint itself would do: ``ensemble`` when its config sets
``temporal_ensemble_coeff``, else ``queue``.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from pai_ros.errors import UserError
from pai_ros.policy.capture import ActCapture, CaptureConfig, ForwardCapture
from pai_ros.policy.errors import PolicyOutputError
from pai_ros.policy.loading import LoadedPolicy
from pai_ros.policy.observation import Observation, ObservationSpec

MODES = ("ensemble", "queue", "replan", "chunk")
DEFAULT_ENSEMBLE_COEFF = 0.01  # the ACT paper's m


@dataclass
class TickResult:
    action: np.ndarray  # (action_dim,) float32, unnormalised: the action to send
    tick: int
    ran_model: bool  # a forward pass happened this tick
    capture: ForwardCapture | None  # this tick's forward pass (None when the model did not run)
    chunk: np.ndarray | None  # this tick's predicted chunk, unnormalised (chunk_size, action_dim)
    executed_query: int  # index of the executed action inside the chunk it came from
    executed_capture: ForwardCapture | None  # the forward pass that produced the executed action
    latency_s: float  # wall time of this tick (preprocess + forward + postprocess)


@dataclass
class RunnerStats:
    ticks: int = 0
    forwards: int = 0
    wasted_forwards: int = 0  # forwards whose actions were never executed (queue mode's live maps)
    latencies_s: deque = field(default_factory=lambda: deque(maxlen=1000))

    @property
    def wasted_per_action(self) -> float:
        return self.wasted_forwards / self.ticks if self.ticks else 0.0

    def latency_summary(self) -> dict[str, float]:
        if not self.latencies_s:
            return {"mean_ms": float("nan"), "p50_ms": float("nan"), "p99_ms": float("nan")}
        arr = np.asarray(self.latencies_s) * 1000.0
        return {"mean_ms": float(arr.mean()), "p50_ms": float(np.percentile(arr, 50)),
                "p99_ms": float(np.percentile(arr, 99))}


class Explainer(Protocol):
    """A per-forward explanation that needs the forward pass's autograd graph (e.g. relevance).

    The runner calls :meth:`begin` before the forward pass, runs it with gradients enabled and
    hands :meth:`explain` the chunk still attached to the graph; the result ``[B, S]`` lands in
    ``ForwardCapture.explanations[name]``. The action is taken from the detached chunk.
    """

    name: str

    def begin(self) -> None: ...

    def explain(self, chunk: torch.Tensor) -> torch.Tensor: ...


class PolicyRunner:
    """One call per control tick: observation in, action + capture out."""

    def __init__(self, loaded: LoadedPolicy, mode: str = "auto", capture: CaptureConfig | None = None,
                 ensemble_coeff: float | None = None) -> None:
        cfg = loaded.config
        if mode == "auto":
            mode = "ensemble" if cfg.temporal_ensemble_coeff is not None else "queue"
        if mode not in MODES:
            raise UserError(f"unknown runner mode '{mode}' (choose from auto, {', '.join(MODES)})")
        self.loaded = loaded
        self.policy = loaded.policy
        self.mode = mode
        self.spec = ObservationSpec.from_config(cfg)
        # Dataset camera -> policy camera for datasets read offline (over_dataset.use_camera_rename).
        self.camera_rename: dict[str, str] = dict(loaded.camera_rename)
        self.capture = ActCapture(self.policy, capture or CaptureConfig()).attach()
        self.n_action_steps = int(cfg.n_action_steps)
        self.chunk_size = int(cfg.chunk_size)
        self.ensemble_coeff = (ensemble_coeff if ensemble_coeff is not None else
                               cfg.temporal_ensemble_coeff if cfg.temporal_ensemble_coeff is not None
                               else DEFAULT_ENSEMBLE_COEFF)
        self.stats = RunnerStats()
        # Set between ticks (one reference swap); None: plain inference-mode forwards.
        self.explainer: Explainer | None = None
        self.reset()

    @property
    def device(self) -> str:
        return self.loaded.device

    def reset(self) -> None:
        """Start a new episode: empty queue, empty ensemble."""
        from lerobot.policies.act.modeling_act import ACTTemporalEnsembler

        self._queue: deque[torch.Tensor] = deque()
        self._ensembler = ACTTemporalEnsembler(self.ensemble_coeff, self.chunk_size)
        self._chunk_tick = -1
        self._chunk_capture: ForwardCapture | None = None
        self._tick = 0

    def close(self) -> None:
        self.capture.detach()

    @torch.inference_mode()
    def queued_actions(self) -> np.ndarray:
        """The actions still queued after this tick's, unnormalised ``(n, action_dim)`` (queue/chunk modes).

        What the robot will execute next if nothing changes: a trajectory controller can be sent
        the whole remaining plan instead of one point. Empty in ensemble and replan modes.
        """
        if not self._queue:
            return np.zeros((0, self.policy.config.action_feature.shape[0]), dtype=np.float32)
        return self._unnormalise(torch.stack(list(self._queue)).reshape(len(self._queue), -1))

    # ------------------------------------------------------------------ one tick

    def _forward(self, batch: dict[str, torch.Tensor],
                 explainer: Explainer | None = None) -> tuple[torch.Tensor, ForwardCapture]:
        self.capture.reset()
        explanation, error = None, None
        if explainer is None:
            chunk = self.policy.predict_action_chunk(batch)  # (1, chunk_size, action_dim), normalised
        else:
            explainer.begin()
            try:
                with torch.enable_grad():
                    # predict_action_chunk's body (it is wrapped in no_grad), run with gradients; the
                    # numbers are the same (tested bit for bit), the graph is only read by the explainer.
                    grad_batch = dict(batch)
                    if self.policy.config.image_features:
                        grad_batch["observation.images"] = [batch[k] for k in self.policy.config.image_features]
                    chunk = self.policy.model(grad_batch)[0]
                    try:
                        explanation = explainer.explain(chunk).detach()
                    except Exception as exc:  # noqa: BLE001 - the action does not depend on the explanation
                        error = f"{explainer.name} failed: {exc}"
            except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
                # The graph kept for the gradients needs far more memory than the action (checked when
                # the method was chosen; the free memory can shrink since): the action must not be lost.
                del exc
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                self.capture.reset()
                chunk = self.policy.predict_action_chunk(batch)
                error = f"{explainer.name} ran out of memory; this action came from a forward pass without gradients"
            chunk = chunk.detach()
        self.stats.forwards += 1
        capture = self.capture.collect()
        if explanation is not None:
            capture.explanations[explainer.name] = explanation
        capture.explanation_error = error
        return chunk, capture

    def _unnormalise(self, actions: torch.Tensor) -> np.ndarray:
        return self.loaded.postprocessor(actions).detach().cpu().numpy().astype(np.float32, copy=False)

    def preprocess(self, obs: Observation) -> dict[str, torch.Tensor]:
        batch = self.loaded.preprocessor(self.spec.to_batch(obs, self.device))
        if self.spec.state_dim is None:
            # LeRobot 0.4's ACT reads batch["observation.state"].device even without a state
            # feature; an empty tensor satisfies it without adding a token.
            batch["observation.state"] = torch.zeros(1, 0, device=self.device)
        return batch

    def step(self, obs: Observation) -> TickResult:
        """Validate ``obs``, run the model as the mode says, return the action to execute."""
        explainer = self.explainer  # one reference for the whole tick
        # Inference tensors cannot enter an autograd graph: with an explainer, plain no_grad.
        with torch.inference_mode() if explainer is None else torch.no_grad():
            return self._step(obs, explainer)

    def _step(self, obs: Observation, explainer: Explainer | None) -> TickResult:
        start = time.perf_counter()
        batch = self.preprocess(obs)
        tick = self._tick
        chunk_t: torch.Tensor | None = None
        capture: ForwardCapture | None = None

        if self.mode == "ensemble":
            chunk_t, capture = self._forward(batch, explainer)
            # Always in inference mode: the ensembler's running sums are updated in place, and
            # sums made under inference_mode (no explainer) refuse in-place updates outside it
            # once the heatmap method switches to a gradient one at run time.
            with torch.inference_mode():
                action_t = self._ensembler.update(chunk_t)
            self._chunk_tick, self._chunk_capture, executed = tick, capture, 0
        elif self.mode == "replan":
            chunk_t, capture = self._forward(batch, explainer)
            action_t = chunk_t[:, 0]
            self._chunk_tick, self._chunk_capture, executed = tick, capture, 0
        else:  # queue / chunk: LeRobot's select_action queue, refilled when empty
            refill = not self._queue
            if refill or self.mode == "queue":
                chunk_t, capture = self._forward(batch, explainer)
            if refill:
                self._queue.extend(chunk_t[:, : self.n_action_steps].transpose(0, 1))
                self._chunk_tick, self._chunk_capture = tick, capture
            elif self.mode == "queue":
                self.stats.wasted_forwards += 1  # run only to keep the maps live
            action_t = self._queue.popleft()
            executed = tick - self._chunk_tick

        action = self._unnormalise(action_t)[0]
        chunk = None
        if chunk_t is not None:
            b, t, d = chunk_t.shape
            chunk = self._unnormalise(chunk_t.reshape(b * t, d)).reshape(t, d)
        if not np.isfinite(action).all() or (chunk is not None and not np.isfinite(chunk).all()):
            # Weights are checked at load, but a forward can still overflow (half precision on a GPU,
            # an input far outside training): no caller may act on, queue or compare such an action.
            self.reset()
            raise PolicyOutputError(f"the policy's action is not finite (NaN or inf) for this observation "
                                    f"({self.loaded.path})")
        latency = time.perf_counter() - start
        self.stats.ticks += 1
        self.stats.latencies_s.append(latency)
        self._tick += 1
        return TickResult(action=action, tick=tick, ran_model=chunk_t is not None, capture=capture, chunk=chunk,
                          executed_query=executed, executed_capture=self._chunk_capture, latency_s=latency)


def activations_runner(policy_path: str | Path, device: str = "auto") -> PolicyRunner:
    """A runner for reading activations over a dataset (SAE collection, feature recording, calibration).

    A fresh forward per frame (``replan``): activations do not depend on how actions are executed;
    only the encoder output is captured.
    """
    from pai_ros.policy.loading import load_act_policy

    return PolicyRunner(load_act_policy(policy_path, device), "replan",
                        CaptureConfig(cross_attention=False, encoder_output=True))
