"""Train the demo ACT with LeRobot's own training entry point (``lerobot-train``).

The run is a subprocess of ``python -m lerobot.scripts.lerobot_train`` with command-line
overrides, exactly what a user would type, with every hub access switched off: no push, no
wandb, no ImageNet backbone download (the backbone trains from scratch, so its learning rate
is raised from ACT's fine-tuning default to the transformer's).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from pai_ros.errors import UserError

_LOSS_LINE = re.compile(r"\bstep:\S+ .*\bloss:([0-9.eE+-]+)")


@dataclass(frozen=True)
class TrainSettings:
    """The ACT and optimiser settings of the demo policy (part of the demo cache key)."""

    # Measured on the demo task with seed 1 (bench/RESULTS.md, "Demo policy trainings compared"): 1200 steps
    # close over the target in 78% of closed-loop episodes, 2000 steps in 98% (training loss 0.108 -> ~0.07,
    # held-out chunk error 0.33x -> 0.26x holding still). About 35-75 min on a 2-core CPU.
    steps: int = 2000
    batch_size: int = 16
    lr: float = 3e-4  # transformer and backbone alike: the backbone starts from random weights
    dim_model: int = 128
    n_heads: int = 4
    dim_feedforward: int = 512
    n_encoder_layers: int = 2
    n_vae_encoder_layers: int = 2
    # LeRobot's default. Measured on the demo with seed 1 (same machine): with the VAE, held-out chunk
    # error 1.6x holding still; without, 0.45x; both predicted the gripper closed from the first frame
    # (the learning gate catches either). An earlier training with the VAE learned all of it.
    use_vae: bool = True
    chunk_size: int = 20
    n_action_steps: int = 20
    seed: int = 1
    log_freq: int = 50
    num_workers: int = 1

    def cli_args(self) -> list[str]:
        return [
            "--policy.type=act",
            "--policy.push_to_hub=false",
            "--policy.pretrained_backbone_weights=null",
            f"--policy.dim_model={self.dim_model}",
            f"--policy.n_heads={self.n_heads}",
            f"--policy.dim_feedforward={self.dim_feedforward}",
            f"--policy.n_encoder_layers={self.n_encoder_layers}",
            f"--policy.n_vae_encoder_layers={self.n_vae_encoder_layers}",
            f"--policy.use_vae={str(self.use_vae).lower()}",
            f"--policy.chunk_size={self.chunk_size}",
            f"--policy.n_action_steps={self.n_action_steps}",
            f"--policy.optimizer_lr={self.lr}",
            f"--policy.optimizer_lr_backbone={self.lr}",
            f"--batch_size={self.batch_size}",
            f"--steps={self.steps}",
            f"--num_workers={self.num_workers}",
            f"--log_freq={self.log_freq}",
            f"--save_freq={self.steps}",
            "--eval_freq=0",
            "--wandb.enable=false",
            f"--seed={self.seed}",
        ]

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    checkpoint_dir: Path  # .../checkpoints/last/pretrained_model
    loss_curve: list[tuple[int, float]]  # (step, training loss) every log_freq steps
    seconds: float
    log_path: Path


def train_act(dataset_root: Path, repo_id: str, output_dir: Path, settings: TrainSettings, *,
              device: str = "cpu", video_backend: str = "pyav", progress: bool = True) -> TrainResult:
    """Run ``lerobot-train`` on the dataset at ``dataset_root``; ``output_dir`` must not exist."""
    log_path = output_dir.parent / f"{output_dir.name}.log"
    cmd = [
        sys.executable, "-m", "lerobot.scripts.lerobot_train",
        f"--dataset.repo_id={repo_id}", f"--dataset.root={dataset_root}",
        f"--dataset.video_backend={video_backend}",
        f"--policy.device={device}", f"--output_dir={output_dir}",
        *settings.cli_args(),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled",
           "PYTHONUNBUFFERED": "1"}
    curve: list[tuple[int, float]] = []
    start = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log, tqdm(
        total=settings.steps, desc="training demo ACT (lerobot-train)", unit="step", disable=not progress
    ) as bar:
        log.write(" ".join(cmd) + "\n")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                                bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            log.flush()
            match = _LOSS_LINE.search(line)
            if match:
                # LeRobot prints steps as 1K, 1.2K...: count log lines instead of parsing them.
                step = (len(curve) + 1) * settings.log_freq
                curve.append((step, float(match.group(1))))
                bar.update(step - bar.n)
                bar.set_postfix(loss=f"{curve[-1][1]:.3f}")
        rc = proc.wait()
    if rc != 0:
        raise UserError(f"lerobot-train failed with exit code {rc}; its log is {log_path}")
    ckpt = output_dir / "checkpoints" / "last" / "pretrained_model"
    if not (ckpt / "model.safetensors").is_file():
        raise UserError(f"lerobot-train finished but wrote no checkpoint at {ckpt}; its log is {log_path}")
    return TrainResult(checkpoint_dir=ckpt, loss_curve=curve, seconds=time.monotonic() - start, log_path=log_path)
