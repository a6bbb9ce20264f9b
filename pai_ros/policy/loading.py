"""Load a LeRobot ACT checkpoint directory offline, with one-line errors for bad input.

A checkpoint is what ``lerobot-train`` writes into ``checkpoints/<step>/pretrained_model``:
``config.json``, ``model.safetensors`` and the pre/post-processor JSON files with their
normaliser safetensors. Only JSON and safetensors are read (no pickle). Also accepted: a
training output directory (with ``checkpoints/last/pretrained_model``), a hub id such as
``lerobot/act_aloha_sim_transfer_cube_human`` found in the local Hugging Face cache
(:mod:`pai_ros.hub`), and checkpoints written before LeRobot 0.4, whose normalisation
statistics live in ``model.safetensors`` (migrated in memory, :mod:`pai_ros.policy.legacy`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pai_ros.errors import UserError
from pai_ros.hub import is_repo_id, model_download_command, model_repo_of, resolve_model
from pai_ros.jsonfile import read_json
from pai_ros.path_args import expand_home, input_path
from pai_ros.policy.errors import weights_mismatch
from pai_ros.wording import listed

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"
REQUIRED_FILES = (CONFIG_FILE, MODEL_FILE, PREPROCESSOR_FILE, POSTPROCESSOR_FILE)
PROCESSOR_FILES = (PREPROCESSOR_FILE, POSTPROCESSOR_FILE)
# Statistics each normalisation mode needs (LeRobot 0.4's NormalizationMode values).
_NEEDED_STATS = {"MEAN_STD": ("mean", "std"), "MIN_MAX": ("min", "max"), "QUANTILES": ("q01", "q99"),
                 "QUANTILE10": ("q10", "q90")}


@dataclass
class LoadedPolicy:
    """An ACT policy ready for inference, with the processors it was trained with."""

    path: Path
    config: Any  # lerobot ACTConfig
    policy: Any  # lerobot ACTPolicy, in eval mode
    preprocessor: Any  # PolicyProcessorPipeline: rename -> batch -> device -> normalise
    postprocessor: Any  # PolicyProcessorPipeline: unnormalise -> cpu
    device: str
    migrated: bool = False  # a pre-0.4 checkpoint, migrated in memory
    # The checkpoint's own ``--rename_map`` for cameras (dataset name -> policy name, short names):
    # how a dataset it was trained on feeds it. See take_camera_rename.
    camera_rename: dict[str, str] = field(default_factory=dict)

    @property
    def camera_keys(self) -> list[str]:
        """Image feature keys in the order ACT consumes them (``observation.images.<name>``)."""
        return list(self.config.image_features)

    @property
    def camera_names(self) -> list[str]:
        return [k.rsplit(".", 1)[-1] for k in self.camera_keys]

    @cached_property
    def fingerprint(self) -> str:
        """:func:`policy_fingerprint` of the checkpoint, hashed once: a live node checks every SAE it
        reloads against it, and hashing a real checkpoint's weights again stalled its ticks."""
        return policy_fingerprint(self.path)


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """Find the ``pretrained_model`` directory that ``path`` names or contains.

    A path that does not exist but reads like a hub id (``org/name``) is looked up in the local
    Hugging Face cache; a local directory of the same name wins, as in LeRobot.
    """
    p = expand_home(path)
    if not p.exists() and is_repo_id(str(path)):
        p = resolve_model(str(path))
    if not p.exists():
        raise UserError(f"policy path {p} does not exist")
    if not p.is_dir():
        raise UserError(f"policy path {p} is not a directory (expected a LeRobot checkpoint directory)")
    # The run directory, its checkpoints/ directory, a step (or last), or pretrained_model itself.
    for candidate in (p, p / "pretrained_model", p / "last" / "pretrained_model",
                      p / "checkpoints" / "last" / "pretrained_model"):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    checkpoints = p / "checkpoints" if (p / "checkpoints").is_dir() else p if p.name == "checkpoints" else None
    if checkpoints is not None or p.parent.name == "checkpoints":
        # A lerobot-train output whose pretrained_model is missing (an interrupted save, a partial copy,
        # a copy that lost the `last` symlink).
        step = checkpoints / "last" if checkpoints is not None else p
        steps = sorted(d.name for d in checkpoints.iterdir() if (d / "pretrained_model" / CONFIG_FILE).is_file()
                       ) if checkpoints is not None else []
        found = f"; steps that have one: {', '.join(steps)}" if steps else ""
        raise UserError(f"{p} looks like a lerobot-train output, but {step / 'pretrained_model' / CONFIG_FILE} is "
                        f"missing{found}; pass a checkpoints/<step>/pretrained_model directory that has it")
    hub_id = model_repo_of(p)
    if hub_id:  # a snapshot in the hub cache: the local layout advice below would not apply
        raise UserError(f"{p}, the Hugging Face cache's copy of '{hub_id}', has no {CONFIG_FILE}: not a LeRobot "
                        "policy repository, or a download that did not finish "
                        f"(again: {model_download_command(hub_id)})")
    raise UserError(f"{p} is not a LeRobot checkpoint: no {CONFIG_FILE} (expected e.g. "
                    "outputs/train/<run>/checkpoints/last/pretrained_model)")


def describe_checkpoint(path: str | Path) -> str:
    """``path``, and where it really is when links lead elsewhere (``checkpoints/last`` -> the step)."""
    real = Path(path).resolve()
    return str(path) if real == Path(path).absolute() else f"{path} (= {real})"


def read_checkpoint_config(ckpt: Path) -> dict[str, Any]:
    """The checkpoint's parsed config.json, once every file it needs is checked to exist (one line if not).

    A checkpoint without both processor files is accepted when its ``model.safetensors`` holds
    the normalisation statistics, as every checkpoint before LeRobot 0.4 did.
    """
    missing = [name for name in REQUIRED_FILES if not (ckpt / name).is_file()]
    if missing == list(PROCESSOR_FILES):
        from pai_ros.policy.legacy import legacy_normalisation_keys

        if legacy_normalisation_keys(ckpt / MODEL_FILE):
            missing = []
        else:
            raise UserError(f"checkpoint {ckpt} is incomplete: it has neither {' nor '.join(PROCESSOR_FILES)} "
                            f"(LeRobot >= 0.4) nor normalisation statistics in {MODEL_FILE} (LeRobot < 0.4), so "
                            "its inputs and actions cannot be normalised")
    if missing:
        raise UserError(f"checkpoint {ckpt} is incomplete: missing {', '.join(missing)}")
    config = read_json(ckpt / CONFIG_FILE, "policy config", want_object=True)
    policy_type = config.get("type")
    if policy_type is None and "input_shapes" in config:
        raise UserError(f"{ckpt / CONFIG_FILE} is in the format of LeRobot before 0.1 (input_shapes, no 'type'); "
                        "pai_ros reads checkpoints of LeRobot 0.1 and later")
    if policy_type != "act":
        raise UserError(f"checkpoint {ckpt} holds a '{policy_type}' policy; pai_ros supports ACT policies only")
    for proc in PROCESSOR_FILES:
        if not (ckpt / proc).is_file():
            continue
        steps = read_json(ckpt / proc, "processor config", want_object=True).get("steps", [])
        if not isinstance(steps, list) or not all(isinstance(step, dict) for step in steps):
            raise UserError(f"{ckpt / proc} is not a LeRobot processor file ('steps' must be a list of objects)")
        for step in steps:
            state_file = step.get("state_file")
            if state_file and not (ckpt / state_file).is_file():
                raise UserError(f"checkpoint {ckpt} is incomplete: {proc} needs {state_file}, which is missing")
    return config


def policy_fingerprint(ckpt: str | Path) -> str:
    """A short hash of a checkpoint's weights: which policy made some tokens, wherever it was copied.

    An SAE records it (``pai sae collect``) so that it is never applied to another policy's tokens:
    a path tells nothing once a checkpoint is copied, and another policy of the same width reads
    as compatible by shape alone. The tensors' names and values are hashed, not the file's bytes
    nor ``config.json``: a re-saved or migrated checkpoint (normalisation buffers moved out of the
    weights) and a changed ``n_action_steps`` make the same encoder tokens.
    """
    import torch
    from safetensors import safe_open

    digest = hashlib.sha256()
    with safe_open(str(Path(ckpt) / MODEL_FILE), framework="pt") as f:
        for name in sorted(f.keys()):
            if name.startswith(("normalize_", "unnormalize_")):  # LeRobot < 0.4 kept the stats here
                continue
            tensor = f.get_tensor(name).contiguous()
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]


def is_legacy_checkpoint(ckpt: Path) -> bool:
    """No processor files: normalisation lives in the weights (checked by read_checkpoint_config)."""
    return not any((ckpt / name).is_file() for name in PROCESSOR_FILES)


def check_config_fields(ckpt: Path, config: dict[str, Any]) -> None:
    """Name config fields and values this LeRobot does not know (a newer LeRobot wrote them).

    draccus would refuse them too, but with a parse error that names neither the LeRobot that
    wrote the checkpoint nor what to do.
    """
    import dataclasses

    import lerobot
    from lerobot.configs.types import FeatureType, NormalizationMode
    from lerobot.policies.act.configuration_act import ACTConfig

    known = {f.name for f in dataclasses.fields(ACTConfig)} | {"type"}
    unknown = [k for k in config if k not in known]
    feature_types = {t.value for t in FeatureType}
    for group in ("input_features", "output_features"):
        for name, ft in (config.get(group) or {}).items():
            if isinstance(ft, dict) and ft.get("type") not in feature_types:
                unknown.append(f"{group}.{name}.type={ft.get('type')}")
    modes = {m.value for m in NormalizationMode}
    for ftype, mode in (config.get("normalization_mapping") or {}).items():
        if ftype not in feature_types or mode not in modes:
            unknown.append(f"normalization_mapping.{ftype}={mode}")
    if not unknown:
        return
    writer = writer_version(ckpt)
    by = f"; a newer LeRobot wrote it ({writer[0]}, per its {writer[1]})" if writer else ""
    version = lerobot.__version__
    # Not "upgrade LeRobot": pai_ros pins the LeRobot whose ACT internals its hooks read, and a
    # newer one in the same environment breaks it.
    if any("=" in entry for entry in unknown):
        # A feature type or normalisation this LeRobot lacks changes what the network reads or
        # predicts: no edit of config.json makes the weights mean the same.
        advice = f"train the policy again with LeRobot {version}"
    else:
        # Top-level options added since then mostly keep their old behaviour at their defaults.
        # A hub snapshot's files are links into the cache's shared blobs: an edit there changes the download.
        edit = (f"copy it (cp -rL {ckpt} DIR, a new DIR), remove those fields from DIR/{CONFIG_FILE} and use DIR as "
                "the policy path" if model_repo_of(ckpt) else f"remove those fields from {CONFIG_FILE}")
        advice = f"{edit}, or train the policy again with LeRobot {version}"
    raise UserError(f"{ckpt / CONFIG_FILE} has {', '.join(unknown)}, unknown to LeRobot {version} (installed here; "
                    f"pai_ros needs that version: its hooks read its ACT){by}: {advice}")


def writer_version(ckpt: Path) -> tuple[str, str] | None:
    """The LeRobot version a checkpoint says wrote it, and the file that says so, if any does.

    LeRobot 0.6 and later put it in the model card (README.md, "| LeRobot version | x |" or
    "- **LeRobot version:** x");
    a ``lerobot_version`` entry in the JSON files or the safetensors metadata is honoured too.
    """
    for name in (CONFIG_FILE, "train_config.json"):
        path = ckpt / name
        if path.is_file():
            try:
                value = json.loads(path.read_text(encoding="utf-8")).get("lerobot_version")
            except (ValueError, UnicodeDecodeError, AttributeError):
                value = None
            if isinstance(value, str) and value:
                return value, name
    try:
        from safetensors import safe_open

        with safe_open(str(ckpt / MODEL_FILE), framework="pt") as f:
            value = (f.metadata() or {}).get("lerobot_version")
        if value:
            return value, MODEL_FILE
    except Exception:  # unreadable weights are reported by the weight loading itself
        pass
    readme = ckpt / "README.md"
    if readme.is_file():
        # "| LeRobot version | 0.6.2 |" (a table), "- **LeRobot version:** 0.6.2" (a list), "`0.6.2`"
        match = re.search(r"LeRobot version[\s*:|`]*v?([0-9][0-9A-Za-z.+-]*)",
                          readme.read_text(encoding="utf-8", errors="replace"))
        if match:
            return match.group(1), "README.md"
    return None


def check_normalisation(ckpt: Path, *pipelines: Any) -> None:
    """Every feature a normaliser step normalises has finite statistics of the kind its mode needs.

    LeRobot's normaliser passes a feature through unchanged when its statistics are missing;
    a policy fed raw values where it expects normalised ones acts on invalid data, so refuse.
    """
    import torch

    for pipeline in pipelines:
        for step in getattr(pipeline, "steps", []):
            features, norm_map = getattr(step, "features", None), getattr(step, "norm_map", None)
            if not isinstance(features, dict) or not isinstance(norm_map, dict):
                continue
            stats = getattr(step, "stats", None) or {}
            for key, ft in features.items():
                mode = norm_map.get(ft.type)
                needed = _NEEDED_STATS.get(getattr(mode, "value", ""), ())
                have = stats.get(key) or {}
                absent = [s for s in needed if s not in have]
                if absent:
                    raise UserError(f"checkpoint {ckpt} has no normalisation statistics for {key} "
                                    f"({mode.value} needs {', '.join(absent)}); refusing to run it un-normalised")
                for s in needed:
                    if not torch.isfinite(torch.as_tensor(have[s], dtype=torch.float64)).all():
                        raise UserError(f"checkpoint {ckpt}: the '{s}' statistics of {key} are not finite "
                                        "(never computed at training time?); refusing to run it")


def check_weights_finite(ckpt: Path, policy: Any) -> None:
    """Every weight is a finite number: a training run that diverged saves NaN weights without
    complaint, and such a policy's every action is NaN (a robot would be sent NaN joint targets)."""
    import torch

    bad = [name for name, tensor in policy.state_dict().items()
           if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if bad:
        raise UserError(f"checkpoint {ckpt}: weights that are not finite (NaN or inf) in {listed(bad)} "
                        "(a training run that diverged?); refusing to run it")


def add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    """``--policy-path`` (what :func:`load_act_policy` accepts) and ``--device`` (what
    :func:`resolve_device` accepts): one wording for every command that runs a policy."""
    parser.add_argument("--policy-path", type=input_path, required=True,
                        help="ACT checkpoint dir (pretrained_model), a lerobot-train output dir, or a hub id "
                             "(ORG/NAME) already in the local Hugging Face cache")
    add_device_argument(parser)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``, as :func:`resolve_device` reads it."""
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when available, else CPU), cpu, cuda, cuda:N or mps")


# The commands take --device, the nodes a device parameter: one hint for both.
_CPU_HINT = "--device cpu, or -p device:=cpu for a node"


def resolve_device(device: str) -> str:
    """``auto`` picks CUDA when available; an unavailable device is a user error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{device}' requested but CUDA is not available here; use cpu ({_CPU_HINT})")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device 'mps' requested but MPS is not available here; use cpu ({_CPU_HINT})")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise UserError(f"unknown device '{device}' (use auto, cpu, cuda, cuda:N or mps)")
    return device


@contextlib.contextmanager
def _no_device_guess_warnings() -> Iterator[None]:
    """Without LeRobot's warnings about a config's missing device ("Device 'None' is not available.
    Switching to 'cpu'", "No accelerated backend detected"): a config written before LeRobot 0.4 has
    no device field, and the device is ``--device``'s, set right after parsing."""
    class Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            text = record.getMessage()
            return not ("is not available. Switching to" in text or "No accelerated backend detected" in text)

    drop = Drop()
    loggers = [logging.getLogger(), logging.getLogger("lerobot.configs.policies")]
    for logger in loggers:
        logger.addFilter(drop)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)


def load_act_policy(path: str | Path, device: str = "auto") -> LoadedPolicy:
    """Load an ACT checkpoint for inference without touching any hub.

    ``path`` is a checkpoint directory, a lerobot-train output directory, or a hub id found
    in the local Hugging Face cache. The config's ImageNet backbone weights are switched off
    before construction (otherwise ACT's constructor downloads them only to overwrite them
    with the checkpoint's weights), and the weights are loaded strictly: a checkpoint that
    does not match its config fails. Checkpoints from before LeRobot 0.4 are migrated in
    memory; nothing is written anywhere.
    """
    ckpt = resolve_checkpoint_dir(path)
    config = read_checkpoint_config(ckpt)
    check_config_fields(ckpt, config)
    device = resolve_device(device)
    legacy = is_legacy_checkpoint(ckpt)

    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    try:
        with _no_device_guess_warnings():
            cfg = PreTrainedConfig.from_pretrained(ckpt, local_files_only=True)
    except Exception as exc:  # draccus raises a variety of parse errors for malformed configs
        raise UserError(f"cannot parse {ckpt / CONFIG_FILE}: {str(exc).splitlines()[0]}") from None
    cfg.pretrained_backbone_weights = None
    cfg.device = device
    if legacy:
        from pai_ros.policy.legacy import migrate_in_memory

        policy, pre, post = migrate_in_memory(ckpt, ckpt / MODEL_FILE, cfg)
    else:
        try:
            # LeRobot prints "Loading weights from local directory" to stdout, where a command's results go.
            with contextlib.redirect_stdout(io.StringIO()):
                policy = ACTPolicy.from_pretrained(ckpt, config=cfg, strict=True, local_files_only=True)
        except RuntimeError as exc:
            raise weights_mismatch(ckpt / MODEL_FILE, exc) from None
        except Exception as exc:  # safetensors raises its own error type for corrupt files
            if type(exc).__name__ in ("SafetensorError", "HeaderTooLarge", "HeaderTooSmall",
                                      "InvalidHeaderDeserialization"):
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
    check_normalisation(ckpt, pre, post)
    check_weights_finite(ckpt, policy)
    return LoadedPolicy(path=ckpt, config=cfg, policy=policy, preprocessor=pre, postprocessor=post, device=device,
                        migrated=legacy, camera_rename=take_camera_rename(pre))


def take_camera_rename(pre: Any) -> dict[str, str]:
    """The cameras of the preprocessor's rename step (``lerobot-train --rename_map``), which is then emptied.

    pai_ros builds every batch with the policy's own key names, so a rename step left in place
    could only rename them again (a map that swaps two cameras would swap them back). The map is
    kept to read datasets with: a dataset the policy was trained on has the map's source names.
    """
    from lerobot.processor.rename_processor import RenameObservationsProcessorStep

    from pai_ros.data.camera_rename import cameras_of

    cameras: dict[str, str] = {}
    for step in getattr(pre, "steps", ()):
        if isinstance(step, RenameObservationsProcessorStep) and step.rename_map:
            cameras.update(cameras_of(step.rename_map))
            step.rename_map = {}
    return cameras
