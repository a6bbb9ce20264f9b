"""Load a LeRobot ACT checkpoint directory offline, with one-line errors for bad input.

A checkpoint is what ``lerobot-train`` writes into ``checkpoints/<step>/pretrained_model``:
``config.json``, ``model.safetensors`` and the pre/post-processor JSON files with their
normaliser safetensors. Only JSON and safetensors are read (no pickle). A training output
directory (with ``checkpoints/last/pretrained_model``) is accepted too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pai_ros.errors import UserError

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"
REQUIRED_FILES = (CONFIG_FILE, MODEL_FILE, PREPROCESSOR_FILE, POSTPROCESSOR_FILE)


@dataclass
class LoadedPolicy:
    """An ACT policy ready for inference, with the processors it was trained with."""

    path: Path
    config: Any  # lerobot ACTConfig
    policy: Any  # lerobot ACTPolicy, in eval mode
    preprocessor: Any  # PolicyProcessorPipeline: rename -> batch -> device -> normalise
    postprocessor: Any  # PolicyProcessorPipeline: unnormalise -> cpu
    device: str

    @property
    def camera_keys(self) -> list[str]:
        """Image feature keys in the order ACT consumes them (``observation.images.<name>``)."""
        return list(self.config.image_features)

    @property
    def camera_names(self) -> list[str]:
        return [k.rsplit(".", 1)[-1] for k in self.camera_keys]


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """Find the ``pretrained_model`` directory that ``path`` names or contains."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"policy path {p} does not exist")
    if not p.is_dir():
        raise UserError(f"policy path {p} is not a directory (expected a LeRobot checkpoint directory)")
    for candidate in (p, p / "pretrained_model", p / "checkpoints" / "last" / "pretrained_model"):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    checkpoints = p / "checkpoints" if (p / "checkpoints").is_dir() else p if p.name == "checkpoints" else None
    if checkpoints is not None or p.parent.name == "checkpoints":
        # A lerobot-train output whose pretrained_model is missing (an interrupted save, a partial copy).
        step = checkpoints / "last" if checkpoints is not None else p
        raise UserError(f"{p} looks like a lerobot-train output, but {step / 'pretrained_model' / CONFIG_FILE} is "
                        "missing; pass a checkpoints/<step>/pretrained_model directory that has it")
    raise UserError(f"{p} is not a LeRobot checkpoint: no {CONFIG_FILE} (expected e.g. "
                    "outputs/train/<run>/checkpoints/last/pretrained_model)")


def check_checkpoint_files(ckpt: Path) -> dict[str, Any]:
    """Check that every file the checkpoint needs exists; return the parsed config.json."""
    missing = [name for name in REQUIRED_FILES if not (ckpt / name).is_file()]
    if missing:
        raise UserError(f"checkpoint {ckpt} is incomplete: missing {', '.join(missing)}")
    config = _read_json(ckpt / CONFIG_FILE)
    policy_type = config.get("type")
    if policy_type != "act":
        raise UserError(f"checkpoint {ckpt} holds a '{policy_type}' policy; pai_ros supports ACT policies only")
    for proc in (PREPROCESSOR_FILE, POSTPROCESSOR_FILE):
        steps = _read_json(ckpt / proc).get("steps", [])
        if not isinstance(steps, list) or not all(isinstance(step, dict) for step in steps):
            raise UserError(f"{ckpt / proc} is not a LeRobot processor file ('steps' must be a list of objects)")
        for step in steps:
            state_file = step.get("state_file")
            if state_file and not (ckpt / state_file).is_file():
                raise UserError(f"checkpoint {ckpt} is incomplete: {proc} needs {state_file}, which is missing")
    return config


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} does not hold a JSON object")
    return data


def resolve_device(device: str) -> str:
    """``auto`` picks CUDA when available; an unavailable device is a user error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{device}' requested but CUDA is not available here; use --device cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UserError("device 'mps' requested but MPS is not available here; use --device cpu")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise UserError(f"unknown device '{device}' (use auto, cpu, cuda, cuda:N or mps)")
    return device


def load_act_policy(path: str | Path, device: str = "auto") -> LoadedPolicy:
    """Load an ACT checkpoint for inference without touching any hub.

    The config's ImageNet backbone weights are switched off before construction (otherwise
    ACT's constructor downloads them only to overwrite them with the checkpoint's weights),
    and the weights are loaded strictly: a checkpoint that does not match its config fails.
    """
    ckpt = resolve_checkpoint_dir(path)
    check_checkpoint_files(ckpt)
    device = resolve_device(device)

    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    try:
        cfg = PreTrainedConfig.from_pretrained(ckpt, local_files_only=True)
    except Exception as exc:  # draccus raises a variety of parse errors for malformed configs
        raise UserError(f"cannot parse {ckpt / CONFIG_FILE}: {str(exc).splitlines()[0]}") from None
    cfg.pretrained_backbone_weights = None
    cfg.device = device
    try:
        policy = ACTPolicy.from_pretrained(ckpt, config=cfg, strict=True, local_files_only=True)
    except RuntimeError as exc:
        raise UserError(f"weights in {ckpt / MODEL_FILE} do not match {CONFIG_FILE}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # safetensors raises its own error type for corrupt files
        if type(exc).__name__ in ("SafetensorError", "HeaderTooLarge", "HeaderTooSmall", "InvalidHeaderDeserialization"):
            raise UserError(f"{ckpt / MODEL_FILE} is not a readable safetensors file ({exc})") from None
        raise
    policy.eval()
    try:
        pre, post = make_pre_post_processors(
            cfg, pretrained_path=str(ckpt),
            preprocessor_overrides={"device_processor": {"device": device}},
        )
    except Exception as exc:
        raise UserError(f"cannot load the processors of {ckpt}: {str(exc).splitlines()[0]}") from None
    return LoadedPolicy(path=ckpt, config=cfg, policy=policy, preprocessor=pre, postprocessor=post, device=device)
