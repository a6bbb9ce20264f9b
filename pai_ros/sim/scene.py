"""A synthetic table-top reaching task whose correct action depends on where a target is.

The table is the unit square in table coordinates ``(x, y)``. A red target block and
differently coloured distractor blocks lie on it; a gripper starts somewhere else and must
move to the red block and close. Two cameras see it:

* ``front``: a fixed top-down view of the whole table (``u = x * W``, ``v = y * H``);
* ``wrist``: a view centred on the gripper that shows a ``wrist_view``-wide square of the table.

The robot state and the action are ``[x, y, gripper]`` (absolute position targets, gripper
0 = open, 1 = closed). The target moves from episode to episode and appears only in the
images, so a policy that ignores the cameras cannot solve the task. The target's pixel
position in each camera is returned with every frame: it is the ground truth for checking
that attention maps point at what matters.

Images are RGB uint8, ``H x W x 3``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

RGB = tuple[int, int, int]

TABLE_RGB: RGB = (150, 138, 118)
TARGET_RGB: RGB = (225, 30, 30)
DISTRACTOR_RGBS: tuple[RGB, ...] = ((40, 70, 225), (40, 185, 60), (235, 200, 40))
GRIPPER_OPEN_RGB: RGB = (245, 245, 245)
GRIPPER_CLOSED_RGB: RGB = (20, 20, 20)

STATE_NAMES = ("x", "y", "gripper")
#: Pixel position of a target that the wrist camera does not see.
NOT_VISIBLE = (-1.0, -1.0)


@dataclass(frozen=True)
class SceneConfig:
    """Everything that shapes the rendered task (part of the demo cache key)."""

    front_hw: tuple[int, int] = (128, 160)
    wrist_hw: tuple[int, int] = (128, 160)
    block_size: float = 0.16  # side of a block, in table units
    num_distractors: int = 2
    max_step: float = 0.045  # table units per frame
    grasp_radius: float = 0.02  # the gripper closes once this close to the target centre
    wrist_view: float = 0.5  # width of the table square the wrist camera sees
    episode_length: int = 40  # frames per episode; with ``frames_after_close`` set, the most an episode has
    # None: every episode runs ``episode_length`` frames. n: it ends n frames after the gripper closes, as a
    # recorded demonstration ends after the grasp. Measured on the demo: with 40-frame episodes the gripper is
    # closed in about 70% of frames, and several trainings learned that prior ("closed" everywhere, or closing
    # early) instead of when to close.
    frames_after_close: int | None = None
    fps: int = 15
    motion_noise: float = 0.003  # std of the tracking error added to each commanded position
    pixel_noise: float = 3.0  # std of per-pixel sensor noise, in 8-bit levels


@dataclass
class Episode:
    """One episode's layout: where the blocks are and where the gripper starts."""

    target: np.ndarray  # (2,) table coordinates of the red block's centre
    distractors: np.ndarray  # (n, 2)
    start: np.ndarray  # (2,)
    distractor_colors: list[RGB] = field(default_factory=list)


def sample_episode(rng: np.random.Generator, cfg: SceneConfig) -> Episode:
    """Place the target, the distractors and the gripper without overlaps."""
    margin = cfg.block_size * 0.75
    min_gap = cfg.block_size * 1.4
    centres: list[np.ndarray] = []
    while len(centres) < 1 + cfg.num_distractors:
        c = rng.uniform(margin, 1.0 - margin, size=2)
        if all(np.linalg.norm(c - o) >= min_gap for o in centres):
            centres.append(c)
    while True:
        start = rng.uniform(0.1, 0.9, size=2)
        if np.linalg.norm(start - centres[0]) >= 0.35:
            break
    colors = [DISTRACTOR_RGBS[i] for i in rng.permutation(len(DISTRACTOR_RGBS))[: cfg.num_distractors]]
    return Episode(target=centres[0], distractors=np.array(centres[1:]).reshape(-1, 2), start=start,
                   distractor_colors=colors)


def expert_action(state: np.ndarray, target: np.ndarray, cfg: SceneConfig) -> np.ndarray:
    """The scripted expert: move straight towards the target at bounded speed, then close."""
    pos = state[:2]
    delta = target - pos
    dist = float(np.linalg.norm(delta))
    step = delta if dist <= cfg.max_step else delta / dist * cfg.max_step
    new_pos = pos + step
    closed = float(np.linalg.norm(target - new_pos) <= cfg.grasp_radius)
    return np.array([new_pos[0], new_pos[1], closed], dtype=np.float32)


def _draw_block(img: np.ndarray, centre_px: tuple[float, float], half_px: tuple[float, float], rgb: RGB) -> None:
    (u, v), (hu, hv) = centre_px, half_px
    p0 = (int(round(u - hu)), int(round(v - hv)))
    p1 = (int(round(u + hu)) - 1, int(round(v + hv)) - 1)
    cv2.rectangle(img, p0, p1, rgb, thickness=-1)


def _table(h: int, w: int) -> np.ndarray:
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[:] = TABLE_RGB
    return img


def render_front(ep: Episode, state: np.ndarray, cfg: SceneConfig) -> np.ndarray:
    """Top-down view of the whole table with the blocks and the gripper marker."""
    h, w = cfg.front_hw
    img = _table(h, w)
    half = (cfg.block_size * w / 2, cfg.block_size * h / 2)
    for centre, rgb in zip(ep.distractors, ep.distractor_colors):
        _draw_block(img, (centre[0] * w, centre[1] * h), half, rgb)
    _draw_block(img, (ep.target[0] * w, ep.target[1] * h), half, TARGET_RGB)
    gripper_rgb = GRIPPER_CLOSED_RGB if state[2] > 0.5 else GRIPPER_OPEN_RGB
    centre = (int(round(state[0] * w)), int(round(state[1] * h)))
    radius = max(2, int(round(0.035 * w)))
    cv2.circle(img, centre, radius, gripper_rgb, thickness=2, lineType=cv2.LINE_AA)
    return img


def render_wrist(ep: Episode, state: np.ndarray, cfg: SceneConfig) -> np.ndarray:
    """Close-up centred on the gripper; its two fingers close when the gripper closes."""
    h, w = cfg.wrist_hw
    img = _table(h, w)
    scale = (w / cfg.wrist_view, h / cfg.wrist_view)
    half = (cfg.block_size * scale[0] / 2, cfg.block_size * scale[1] / 2)

    def to_px(p: np.ndarray) -> tuple[float, float]:
        return ((p[0] - state[0]) * scale[0] + w / 2, (p[1] - state[1]) * scale[1] + h / 2)

    for centre, rgb in zip(ep.distractors, ep.distractor_colors):
        _draw_block(img, to_px(centre), half, rgb)
    _draw_block(img, to_px(ep.target), half, TARGET_RGB)
    gap = int(round((0.06 if state[2] > 0.5 else 0.22) * w))
    finger_w, finger_h = max(2, w // 20), h // 4
    for sign in (-1, 1):
        x0 = w // 2 + sign * gap // 2 - finger_w // 2
        cv2.rectangle(img, (x0, h - finger_h), (x0 + finger_w, h - 1), (60, 60, 60), thickness=-1)
    return img


def target_pixels(ep: Episode, state: np.ndarray, cfg: SceneConfig) -> tuple[np.ndarray, np.ndarray]:
    """The target centre in (u, v) pixels of the front and the wrist camera.

    The wrist position is ``NOT_VISIBLE`` when the centre lies outside that image.
    """
    fh, fw = cfg.front_hw
    front = np.array([ep.target[0] * fw, ep.target[1] * fh], dtype=np.float32)
    wh, ww = cfg.wrist_hw
    u = (ep.target[0] - state[0]) / cfg.wrist_view * ww + ww / 2
    v = (ep.target[1] - state[1]) / cfg.wrist_view * wh + wh / 2
    wrist = np.array([u, v] if (0 <= u < ww and 0 <= v < wh) else NOT_VISIBLE, dtype=np.float32)
    return front, wrist


def add_sensor_noise(img: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    if std <= 0:
        return img
    noisy = img.astype(np.int16) + rng.normal(0.0, std, size=img.shape).round().astype(np.int16)
    return np.clip(noisy, 0, 255).astype(np.uint8)


@dataclass
class Frame:
    """One recorded time step."""

    front: np.ndarray
    wrist: np.ndarray
    state: np.ndarray  # (3,) float32
    action: np.ndarray  # (3,) float32
    target_front_px: np.ndarray  # (2,) float32
    target_wrist_px: np.ndarray  # (2,) float32


def rollout(ep: Episode, rng: np.random.Generator, cfg: SceneConfig) -> list[Frame]:
    """Run the expert for one episode and render every step (see ``SceneConfig.frames_after_close``)."""
    state = np.array([ep.start[0], ep.start[1], 0.0], dtype=np.float32)
    frames: list[Frame] = []
    closed_at: int | None = None
    for t in range(cfg.episode_length):
        if closed_at is not None and cfg.frames_after_close is not None and t > closed_at + cfg.frames_after_close:
            break
        action = expert_action(state, ep.target, cfg)
        front_px, wrist_px = target_pixels(ep, state, cfg)
        frames.append(Frame(
            front=add_sensor_noise(render_front(ep, state, cfg), rng, cfg.pixel_noise),
            wrist=add_sensor_noise(render_wrist(ep, state, cfg), rng, cfg.pixel_noise),
            state=state.copy(), action=action,
            target_front_px=front_px, target_wrist_px=wrist_px,
        ))
        if closed_at is None and action[2] > 0.5:
            closed_at = t
        noise = rng.normal(0.0, cfg.motion_noise, size=2).astype(np.float32)
        state = np.array([*(action[:2] + noise).clip(0.0, 1.0), action[2]], dtype=np.float32)
    return frames
