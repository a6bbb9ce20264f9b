"""ACT checkpoints written before LeRobot 0.4: normalisation statistics inside the weights.

Up to LeRobot 0.3 an ACT policy normalised its own inputs and outputs: ``model.safetensors``
holds ``normalize_inputs.buffer_<feature>.<stat>``, ``normalize_targets.buffer_action.<stat>``
and ``unnormalize_outputs.buffer_action.<stat>`` beside the network, and there are no
``policy_*processor*`` files. LeRobot 0.4 moved normalisation into processor pipelines and
ships ``lerobot.processor.migrate_policy_normalization`` to rewrite such checkpoints on disk.

pai_ros does the same migration in memory (the user's directory is only read) with that
module's own functions: ``extract_normalization_stats`` for the statistics,
``remove_normalization_layers`` and ``clean_state_dict`` for the weights, and LeRobot's
processor factory for the pipelines. Two choices differ from the script's ``main``, both
where the script loses information without a word, and neither changes anything for the
usual feature names (``observation.state``, ``observation.images.<cam>``, ``action``):

* the config is parsed by LeRobot's own config parser, which keeps the feature types and
  ``normalization_mapping`` the checkpoint recorded (the script re-guesses types from key names,
  so ``observation.environment_state`` would become robot state and its weights be dropped);
* statistics are matched to the config's feature names by their buffer names
  (``key.replace(".", "_")``): the extractor turns every ``_`` back into ``.``, which misnames
  features such as ``observation.images.cam_high``, whose statistics would then be ignored.

The weights are loaded strictly, and every normalised feature must have finite statistics:
a checkpoint that fails either is refused, never run with a silent default.
Only ``model.safetensors`` is read (safetensors, no pickle).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from pai_ros.errors import UserError
from pai_ros.policy.errors import weights_mismatch

# The buffer-name prefixes LeRobot < 0.4 gave ACT's normalisation modules in the state dict.
LEGACY_PREFIXES = ("normalize_inputs.", "normalize_targets.", "unnormalize_outputs.")


def legacy_normalisation_keys(model_file: Path) -> list[str]:
    """Names of the pre-0.4 normalisation tensors in ``model_file`` (reads the header only)."""
    from safetensors import safe_open

    try:
        with safe_open(str(model_file), framework="pt") as f:
            keys = list(f.keys())
    except Exception as exc:  # SafetensorError and friends: the file is not safetensors
        raise UserError(f"{model_file} is not a readable safetensors file ({exc})") from None
    return [k for k in keys if k.startswith(LEGACY_PREFIXES)]


def _feature_stats(extracted: dict[str, dict[str, Any]], features: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Statistics per config feature name, undoing the extractor's ``_`` -> ``.`` renaming."""
    out = {}
    for key in features:
        extracted_name = key.replace(".", "_").replace("_", ".")
        if extracted_name in extracted:
            out[key] = extracted[extracted_name]
    return out


def migrate_in_memory(ckpt: Path, model_file: Path, cfg: Any) -> tuple[Any, Any, Any]:
    """ACTPolicy (eval, on ``cfg.device``) and its pre/post-processors from a pre-0.4 checkpoint."""
    import torch
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.processor import migrate_policy_normalization as migration
    from safetensors.torch import load_file

    try:
        state = load_file(str(model_file))
    except Exception as exc:
        raise UserError(f"{model_file} is not a readable safetensors file ({exc})") from None
    # The migration functions report their progress with print(); keep the user's terminal clean.
    with contextlib.redirect_stdout(io.StringIO()):
        extracted = migration.extract_normalization_stats(state)
        weights = migration.clean_state_dict(migration.remove_normalization_layers(state), remove_str="._orig_mod")
    stats = _feature_stats(extracted, {**cfg.input_features, **cfg.output_features})

    policy = ACTPolicy(cfg)
    try:
        policy.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise weights_mismatch(model_file, exc) from None
    policy.to(torch.float32)  # as the migration script does before saving
    policy.to(cfg.device)
    policy.eval()
    try:
        pre, post = make_pre_post_processors(cfg, dataset_stats=stats)
    except Exception as exc:
        raise UserError(f"cannot build the processors of {ckpt} from its statistics: "
                        f"{str(exc).splitlines()[0]}") from None
    return policy, pre, post
