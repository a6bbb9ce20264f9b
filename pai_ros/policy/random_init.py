"""Random-init ACT checkpoints, built in seconds, for tests and examples.

They are saved exactly as a trained one would be (``save_pretrained`` for the policy and its
processors), so everything that loads real checkpoints can be tested on them.
"""

from __future__ import annotations

from pathlib import Path

import torch


def save_random_act(
    out_dir: str | Path,
    cameras: dict[str, tuple[int, int]],
    state_dim: int | None = 3,
    action_dim: int = 3,
    *,
    env_state_dim: int | None = None,
    chunk_size: int = 10,
    n_action_steps: int = 10,
    dim_model: int = 32,
    n_heads: int = 2,
    n_encoder_layers: int = 2,
    temporal_ensemble_coeff: float | None = None,
    replace_final_stride_with_dilation: bool = False,
    vision_backbone: str = "resnet18",
    use_vae: bool = True,
    seed: int = 0,
    **overrides: object,
) -> Path:
    """Build a small random ACT for ``cameras`` (name -> (H, W)) and save it to ``out_dir``.

    ``overrides`` set any other ``ACTConfig`` field (e.g. the default-size model for benchmarks).
    """
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    torch.manual_seed(seed)
    inputs: dict[str, PolicyFeature] = {}
    stats: dict[str, dict[str, torch.Tensor]] = {}
    if state_dim:
        inputs["observation.state"] = PolicyFeature(type=FeatureType.STATE, shape=(state_dim,))
        stats["observation.state"] = {"mean": torch.zeros(state_dim), "std": torch.ones(state_dim),
                                      "min": -torch.ones(state_dim), "max": torch.ones(state_dim)}
    if env_state_dim:
        inputs["observation.environment_state"] = PolicyFeature(type=FeatureType.ENV, shape=(env_state_dim,))
        stats["observation.environment_state"] = {"mean": torch.zeros(env_state_dim), "std": torch.ones(env_state_dim),
                                                  "min": -torch.ones(env_state_dim), "max": torch.ones(env_state_dim)}
    for name, (h, w) in cameras.items():
        key = f"observation.images.{name}"
        inputs[key] = PolicyFeature(type=FeatureType.VISUAL, shape=(3, h, w))
        stats[key] = {"mean": torch.full((3, 1, 1), 0.5), "std": torch.full((3, 1, 1), 0.25),
                      "min": torch.zeros(3, 1, 1), "max": torch.ones(3, 1, 1)}
    outputs = {"action": PolicyFeature(type=FeatureType.ACTION, shape=(action_dim,))}
    stats["action"] = {"mean": torch.zeros(action_dim), "std": torch.ones(action_dim),
                       "min": -torch.ones(action_dim), "max": torch.ones(action_dim)}

    cfg = ACTConfig(
        input_features=inputs, output_features=outputs, device="cpu",
        chunk_size=chunk_size, n_action_steps=n_action_steps,
        dim_model=dim_model, n_heads=n_heads, dim_feedforward=4 * dim_model,
        n_encoder_layers=n_encoder_layers, n_vae_encoder_layers=1, latent_dim=8,
        vision_backbone=vision_backbone, pretrained_backbone_weights=None,
        replace_final_stride_with_dilation=replace_final_stride_with_dilation,
        temporal_ensemble_coeff=temporal_ensemble_coeff, use_vae=use_vae,
    )
    for name, value in overrides.items():
        if not hasattr(cfg, name):
            raise TypeError(f"ACTConfig has no field '{name}'")
        setattr(cfg, name, value)
    policy = ACTPolicy(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(out)
    pre, post = make_pre_post_processors(cfg, dataset_stats=stats)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    return out
