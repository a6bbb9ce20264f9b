"""Integrated gradients for ACT's camera images (offline: it needs backward passes).

Attribution of a scalar ``F`` of the predicted actions to every input pixel (Sundararajan et
al. 2017): ``(x - x') * mean_k dF/dx (x' + a_k (x - x'))`` along a straight path from a
baseline image ``x'`` to the input ``x`` (all cameras move together; the state is held at its
value, so only images are attributed). ``F`` is the selected queries' predicted actions
projected on the direction in which they differ from the baseline's, in normalised action
units, so the attributions add up (completeness) to how far the image moves the action away
from what the policy would do on the baseline.

Per-pixel attributions (absolute, summed over colour channels) are also summed into the
encoder's token cells, giving grids that compare directly with the attention methods.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from pai_ros.policy.observation import Observation
from pai_ros.policy.runner import PolicyRunner
from pai_ros.require import require

BASELINES = ("black", "blur", "mean")


@dataclass(frozen=True)
class IGConfig:
    steps: int = 20
    # A blurred copy keeps the scene's coarse layout and removes its edges, so attributions go to
    # the sharp structure the action depends on; measured on the demo (bench_attention_accuracy)
    # it localises the target far better than a black image, which credits every bright region.
    baseline: str = "blur"
    batch_size: int = 10

    def __post_init__(self) -> None:
        require("integrated gradients steps", self.steps, at_least=1, error=ValueError)
        if self.baseline not in BASELINES:
            raise ValueError(f"unknown baseline '{self.baseline}' (choose from {', '.join(BASELINES)})")


@dataclass
class IGResult:
    pixel_maps: dict[str, np.ndarray]  # camera -> (H, W) |attribution| summed over channels
    grids: dict[str, np.ndarray]  # camera -> (grid_h, grid_w) pixel maps summed per token cell
    shares: dict[str, float]  # camera -> fraction of total |attribution|
    delta: float  # F(x) - F(baseline)
    attribution_sum: float  # signed sum of attributions (completeness: close to delta)


def baseline_image(img: torch.Tensor, kind: str) -> torch.Tensor:
    """Baseline for a CHW float image in [0, 1]."""
    if kind == "black":
        return torch.zeros_like(img)
    if kind == "mean":
        return img.mean(dim=(1, 2), keepdim=True).expand_as(img).clone()
    np_img = img.permute(1, 2, 0).cpu().numpy()
    k = max(3, (min(np_img.shape[:2]) // 8) | 1)
    blurred = cv2.GaussianBlur(np_img, (k, k), 0)
    return torch.from_numpy(blurred).permute(2, 0, 1).to(img.device)


def cell_bounds(size: int, cells: int) -> np.ndarray:
    """Pixel edges ``(cells + 1,)`` of ``cells`` token cells along an image side of ``size`` pixels."""
    return np.round(np.linspace(0, size, cells + 1)).astype(int)


def cell_sums(pixel_map: np.ndarray, grid_h: int, grid_w: int) -> np.ndarray:
    """Sum a (H, W) map over the pixel blocks of a (grid_h, grid_w) token grid."""
    h, w = pixel_map.shape
    rows, cols = cell_bounds(h, grid_h)[:-1], cell_bounds(w, grid_w)[:-1]
    return np.add.reduceat(np.add.reduceat(pixel_map, rows, axis=0), cols, axis=1)


def integrated_gradients(runner: PolicyRunner, obs: Observation, queries: slice,
                         config: IGConfig = IGConfig()) -> IGResult:
    """Attribute the selected queries' actions to the camera images of ``obs``."""
    loaded, spec = runner.loaded, runner.spec
    policy = loaded.policy
    raw = spec.to_batch(obs, runner.device)  # validated, unbatched, images in [0, 1]
    cam_keys = [spec.cameras[name][0] for name in spec.cameras]
    inputs = {k: raw[k] for k in cam_keys}
    baselines = {k: baseline_image(v, config.baseline) for k, v in inputs.items()}

    def predict(images: dict[str, torch.Tensor], n: int) -> torch.Tensor:
        batch = {k: v.unsqueeze(0).expand(n, *v.shape) for k, v in raw.items() if k not in images}
        batch.update(images)
        batch = loaded.preprocessor(batch)
        if spec.state_dim is None:
            batch["observation.state"] = torch.zeros(n, 0, device=runner.device)
        # predict_action_chunk is wrapped in no_grad; this is its body, with gradients.
        batch["observation.images"] = [batch[k] for k in cam_keys]
        return policy.model(batch)[0][:, queries]  # (n, q, action_dim), normalised

    with torch.no_grad():
        runner.capture.reset()
        at_input = predict({k: v.unsqueeze(0) for k, v in inputs.items()}, 1)[0]
        layout = runner.capture.collect().layout
        at_base = predict({k: v.unsqueeze(0) for k, v in baselines.items()}, 1)[0]
    direction = at_input - at_base
    direction = direction / direction.norm().clamp_min(1e-12)

    alphas = (torch.arange(config.steps, dtype=torch.float32, device=runner.device) + 0.5) / config.steps
    grads = {k: torch.zeros_like(v) for k, v in inputs.items()}
    for start in range(0, config.steps, config.batch_size):
        a = alphas[start:start + config.batch_size]
        n = len(a)
        path = {k: (baselines[k] + a.view(-1, 1, 1, 1) * (inputs[k] - baselines[k])).requires_grad_(True)
                for k in cam_keys}
        with torch.enable_grad():
            out = predict(path, n)
            f = (out * direction).sum()
            g = torch.autograd.grad(f, [path[k] for k in cam_keys])
        for k, gk in zip(cam_keys, g):
            grads[k] += gk.sum(dim=0)
    runner.capture.reset()

    pixel_maps, grids, totals, signed = {}, {}, {}, 0.0
    for name, (key, _, _) in spec.cameras.items():
        attr = (inputs[key] - baselines[key]) * grads[key] / config.steps  # (3, H, W)
        signed += float(attr.sum())
        pm = attr.abs().sum(dim=0).detach().cpu().numpy().astype(np.float32)
        cam = layout.camera(name)
        pixel_maps[name] = pm
        grids[name] = cell_sums(pm, cam.grid_h, cam.grid_w).astype(np.float32)
        totals[name] = float(pm.sum())
    total = sum(totals.values()) or 1.0
    delta = float(((at_input - at_base) * direction).sum())
    return IGResult(pixel_maps, grids, {k: v / total for k, v in totals.items()}, delta, signed)
