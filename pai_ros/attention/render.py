"""Render attention token grids as heatmap overlays on camera frames, and combined panels.

Pure core: numpy + OpenCV, no rclpy. Every image here is RGB uint8 HxWx3; conversion to the
BGR order that OpenCV's I/O functions expect happens only in :func:`to_bgr` / :func:`from_bgr`.

Raw attention numbers are stored elsewhere, untouched; turning them into [0, 1] is a
render-time choice (:class:`Normalization`), so the same recording can be viewed with a
per-frame, per-episode, fixed or robust (percentile) scale.

Speed matters because overlays are drawn live for every camera at the policy's rate, so the
per-pixel work is a handful of whole-image OpenCV calls with the blend folded into lookup
tables (see :func:`overlay`); Python only ever touches the small token grid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache

import cv2
import numpy as np

from pai_ros.require import require

COLORMAPS: tuple[str, ...] = ("viridis", "magma", "inferno", "turbo", "jet")
"""Supported colormap names; "viridis" (perceptually uniform) is the default."""

NORMALIZATION_MODES: tuple[str, ...] = ("raw", "frame", "episode", "percentile")
INTERPOLATIONS: dict[str, int] = {"bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}

_LEVELS = 255  # attention is quantised to 256 levels: one per colormap entry
_CONSTANT_EPS = 1e-12  # a value range narrower than this carries no contrast: render as zeros

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_WHITE = (255, 255, 255)
_BLACK = (0, 0, 0)
_PANEL_BG = (32, 32, 32)
_OUTLINE = (24, 24, 24)

# Fixed colours (RGB) so that a token type keeps its colour from frame to frame and run to run.
_SHARE_COLOURS: dict[str, tuple[int, int, int]] = {
    "latent": (148, 103, 189),
    "state": (255, 127, 14),
    "env_state": (214, 39, 40),
}
# Other keys (camera names) take these, in order of appearance, skipping colours already used.
_SHARE_PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (44, 160, 44), (23, 190, 207), (227, 119, 194),
    (188, 189, 34), (140, 86, 75), (127, 127, 127),
)


# ------------------------------------------------------------------ colormaps

def colormap_lut(name: str) -> np.ndarray:
    """The (256, 3) uint8 RGB lookup table of colormap ``name`` (read-only, cached).

    Entry i is the colour of normalised attention i/255.
    """
    _check_colormap(name)
    return _build_lut(name)


@cache
def _build_lut(name: str) -> np.ndarray:
    # Imported here: matplotlib costs a noticeable import time that only rendering should pay.
    from matplotlib import colormaps

    rgba = colormaps[name](np.linspace(0.0, 1.0, _LEVELS + 1))
    lut = np.clip(np.rint(rgba[:, :3] * 255.0), 0, 255).astype(np.uint8)
    lut.setflags(write=False)  # shared by every caller: nobody may edit the cache
    return lut


@lru_cache(maxsize=64)
def _blend_luts(name: str, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Lookup tables that turn the blend into two table look-ups, a multiply and an add.

    With m = i/255 and weight a*m, ``out = img*(1 - a*m) + colour(m)*a*m`` splits into
    ``img * keep[i]/255 + premul[i]`` where both tables depend only on the level i. Shaped
    (256, 1, 3) as ``cv2.applyColorMap`` wants; it copies entries without reordering, so the
    RGB tables give RGB pixels.
    """
    levels = np.arange(_LEVELS + 1, dtype=np.float64)
    weight = alpha * levels / _LEVELS
    premul = np.rint(colormap_lut(name).astype(np.float64) * weight[:, None]).astype(np.uint8)
    keep = np.rint(255.0 * (1.0 - weight)).astype(np.uint8)
    keep3 = np.repeat(keep[:, None], 3, axis=1)
    return premul.reshape(-1, 1, 3), np.ascontiguousarray(keep3.reshape(-1, 1, 3))


def _check_colormap(name: str) -> None:
    if name not in COLORMAPS:
        raise ValueError(f"unknown colormap {name!r}; valid names: {', '.join(COLORMAPS)}")


# ------------------------------------------------------------------ normalisation

@dataclass(frozen=True)
class Normalization:
    """How raw attention becomes [0, 1] for display; chosen at render time, never stored.

    Modes:
      * ``"raw"``: fixed scale, m = clip((w - vmin) / (vmax - vmin), 0, 1); vmax required,
        vmin defaults to 0. Comparable across frames and episodes.
      * ``"frame"``: min-max over the values passed in one call. Pass all cameras of a frame
        together so that their overlays share one scale and stay comparable.
      * ``"episode"``: min-max with the given vmin/vmax, typically from :func:`episode_range`.
      * ``"percentile"``: 0 .. the given percentile of the values passed, clipped above, so a
        few extreme tokens do not wash out the rest.
    """

    mode: str = "frame"
    vmin: float | None = None
    vmax: float | None = None
    percentile: float = 99.0

    def __post_init__(self) -> None:
        # Validate on construction so a bad CLI/config choice fails before any rendering.
        if self.mode not in NORMALIZATION_MODES:
            raise ValueError(f"unknown normalization mode {self.mode!r}; valid modes: {', '.join(NORMALIZATION_MODES)}")
        for field in ("vmin", "vmax"):
            value = getattr(self, field)
            if value is not None and not np.isfinite(value):
                raise ValueError(f"normalization {field} must be finite, got {value!r}")
        require("normalization percentile", self.percentile, above=0, at_most=100, error=ValueError)
        if self.mode == "raw":
            if self.vmax is None:
                raise ValueError("normalization mode 'raw' needs vmax (the top of the fixed scale)")
            if self.vmax <= (self.vmin or 0.0):
                raise ValueError(f"normalization mode 'raw' needs vmax > vmin, got vmin={self.vmin or 0.0}, vmax={self.vmax}")
        if self.mode == "episode" and (self.vmin is None or self.vmax is None):
            raise ValueError("normalization mode 'episode' needs vmin and vmax; compute them with episode_range()")


def normalize(maps: Mapping[str, np.ndarray], norm: Normalization) -> dict[str, np.ndarray]:
    """Scale attention maps to float32 [0, 1] (same keys and shapes; inputs are not modified).

    NaN and +-inf count as 0 (no attention). In the relative modes a constant input has no
    contrast to show and maps to all zeros; "raw" is an absolute scale, so zeros stay zeros
    and any other level keeps its place on the scale.
    """
    clean = {key: _finite_f32(value) for key, value in maps.items()}
    lo, hi = _value_range(list(clean.values()), norm)
    if hi - lo <= _CONSTANT_EPS:
        return {key: np.zeros_like(value) for key, value in clean.items()}
    offset, scale = np.float32(lo), np.float32(1.0 / (hi - lo))
    out: dict[str, np.ndarray] = {}
    for key, value in clean.items():
        scaled = (value - offset) * scale  # stays float32: both operands are float32
        out[key] = np.clip(scaled, 0.0, 1.0, out=scaled)
    return out


def episode_range(frames: Iterable[Mapping[str, np.ndarray]]) -> tuple[float, float]:
    """(min, max) over every map of every frame, NaN/inf counted as 0; for mode "episode"."""
    lo, hi = np.inf, -np.inf
    for maps in frames:
        for value in maps.values():
            clean = _finite_f32(value)
            if clean.size:
                lo, hi = min(lo, float(clean.min())), max(hi, float(clean.max()))
    if lo > hi:
        raise ValueError("episode_range: the frames hold no attention values")
    return lo, hi


def _finite_f32(value: np.ndarray) -> np.ndarray:
    """A float32 copy with NaN/inf replaced by 0 (a copy, so callers' raw data stays intact)."""
    return np.nan_to_num(np.array(value, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def _value_range(values: list[np.ndarray], norm: Normalization) -> tuple[float, float]:
    """The (lo, hi) that map to 0 and 1; lo == hi means "no contrast: render zeros"."""
    if norm.mode == "raw":
        return norm.vmin or 0.0, float(norm.vmax)  # type: ignore[arg-type]  # checked in __post_init__
    if norm.mode == "episode":
        return float(norm.vmin), float(norm.vmax)  # type: ignore[arg-type]
    flat = np.concatenate([value.ravel() for value in values]) if values else np.zeros(0, np.float32)
    if flat.size == 0:
        return 0.0, 0.0
    lo, hi = float(flat.min()), float(flat.max())
    if hi - lo <= _CONSTANT_EPS:
        return 0.0, 0.0
    if norm.mode == "frame":
        return lo, hi
    top = float(np.percentile(flat, norm.percentile))
    # Sparse attention can leave the percentile at 0 while a few tokens are hot: fall back to
    # the maximum rather than hiding them.
    return 0.0, top if top > 0.0 else hi


# ------------------------------------------------------------------ overlay

def overlay(image: np.ndarray, grid: np.ndarray, *, alpha: float = 0.6, colormap: str = "viridis",
            interpolation: str = "bilinear", colorbar: bool = False) -> np.ndarray:
    """Blend a normalised token grid over an RGB uint8 image; returns a new RGB uint8 image.

    The (gh, gw) grid is stretched over the image so that cell (r, c) covers rows
    r*H/gh .. (r+1)*H/gh and columns c*W/gw .. (c+1)*W/gw ("nearest" fills exactly those
    blocks; "bilinear" puts each cell's value at its block centre and blends in between).
    The blend weight is per pixel, ``out = img*(1 - alpha*m) + colour(m)*alpha*m``, so
    unattended pixels are left exactly as they were and only attention adds colour.
    ``colorbar`` adds the scale in a strip to the right of the image (the image is wider by it):
    drawn inside, it hid part of the last column of cells.
    """
    _check_image(image, "image")
    require("overlay alpha", alpha, at_least=0, at_most=1, error=ValueError)
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; valid: {', '.join(INTERPOLATIONS)}")
    _check_colormap(colormap)
    levels = _grid_levels(grid)

    h, w = image.shape[:2]
    # Quantising before upsampling keeps the per-pixel resize in uint8; bilinear on levels
    # differs from levels of bilinear by at most one level of 256.
    idx = cv2.resize(levels, (w, h), interpolation=INTERPOLATIONS[interpolation])
    premul, keep = _blend_luts(colormap, float(alpha))
    out = cv2.multiply(np.ascontiguousarray(image), cv2.applyColorMap(idx, keep), scale=1.0 / 255.0)
    cv2.add(out, cv2.applyColorMap(idx, premul), dst=out)
    if colorbar:
        return np.concatenate([out, _colorbar_strip(h, w, colormap)], axis=1)
    return out


def _grid_levels(grid: np.ndarray) -> np.ndarray:
    """The grid as uint8 levels 0..255 (NaN -> 0, values clipped to [0, 1] first)."""
    grid = np.asarray(grid)
    if grid.ndim != 2 or grid.size == 0:
        raise ValueError(f"attention grid must be a non-empty 2-D (rows, cols) array, got shape {grid.shape}")
    clean = np.clip(_finite_f32(grid), 0.0, 1.0)
    return np.rint(clean * _LEVELS).astype(np.uint8)


def _colorbar_strip(h: int, w: int, colormap: str) -> np.ndarray:
    """A dark strip ``h`` high holding a vertical colour bar (1 at the top, 0 at the bottom), labelled where
    the image (``w`` wide) is large enough for labels to be more than noise; an even width (yuv420p)."""
    bar_w, margin = max(3, w // 40), max(2, w // 80)
    labelled = h >= 120 and w >= 120
    scale = _font_scale(h) * 0.7
    label_w = cv2.getTextSize("1", _FONT, scale, 1)[0][0] + 4 if labelled else 0
    strip_w = bar_w + 2 * margin + label_w
    strip = np.full((h, strip_w + strip_w % 2, 3), _OUTLINE, np.uint8)
    bar_h = max(2, int(h * 0.6))
    x0, y0 = margin + label_w, (h - bar_h) // 2
    x1, y1 = x0 + bar_w, min(h - 1, y0 + bar_h)
    if y1 <= y0:
        return strip  # too short an image to hold a bar
    ramp = np.rint(np.linspace(_LEVELS, 0, y1 - y0)).astype(np.intp)
    strip[y0:y1, x0:x1] = colormap_lut(colormap)[ramp][:, None, :]
    if labelled:
        for text, y in (("1", y0), ("0", y1)):
            th = cv2.getTextSize(text, _FONT, scale, 1)[0][1]
            _put_outlined_text(strip, text, (margin, y + th // 2), scale)
    return strip


# ------------------------------------------------------------------ combined panel

def combined_panel(overlays: Mapping[str, np.ndarray], shares: Mapping[str, float], *,
                   height: int | None = None, title: str | None = None) -> np.ndarray:
    """All camera overlays side by side, labelled, with a token-type share bar strip below.

    Tiles are resized to a common height (``height``, or the tallest overlay) keeping their
    aspect ratio. ``shares`` maps token types (e.g. "latent", "state", "front") to their
    fraction of attention mass in [0, 1]. The result is RGB uint8 with even width and height
    (padded by one black pixel where needed) because H.264 encoders require that.
    """
    if not overlays:
        raise ValueError("combined_panel needs at least one overlay")
    for name, image in overlays.items():
        _check_image(image, f"overlay {name!r}")
    target_h = height if height is not None else max(image.shape[0] for image in overlays.values())
    require("combined_panel height", target_h, at_least=1, error=ValueError)

    scale = _font_scale(target_h)
    tiles = [_resize_to_height(image, target_h) for image in overlays.values()]
    for tile, name in zip(tiles, overlays):
        (_, th), _ = cv2.getTextSize(name, _FONT, scale, 1)
        _put_outlined_text(tile, name, (max(2, th // 2), th + max(3, th // 2)), scale)
    row = cv2.hconcat(tiles)

    parts = [row]
    if title:
        parts.insert(0, _title_strip(title, row.shape[1], scale))
    if shares:
        parts.append(_shares_strip(shares, row.shape[1], scale))
    return _pad_even(cv2.vconcat(parts))


def _resize_to_height(image: np.ndarray, target_h: int) -> np.ndarray:
    """A resized copy (always a copy: labels are drawn onto it, never onto the caller's image)."""
    h, w = image.shape[:2]
    if h == target_h:
        return np.array(image, order="C", copy=True)
    new_w = max(1, round(w * target_h / h))
    interp = cv2.INTER_AREA if target_h < h else cv2.INTER_LINEAR  # AREA avoids aliasing when shrinking
    return cv2.resize(np.ascontiguousarray(image), (new_w, target_h), interpolation=interp)


def _title_strip(title: str, width: int, scale: float) -> np.ndarray:
    (_, th), base = cv2.getTextSize(title, _FONT, scale, 1)
    pad = max(3, th // 2)
    strip = np.full((th + base + 2 * pad, width, 3), _PANEL_BG, np.uint8)
    cv2.putText(strip, title, (pad, pad + th), _FONT, scale, _WHITE, 1, cv2.LINE_AA)
    return strip


def _shares_strip(shares: Mapping[str, float], width: int, scale: float) -> np.ndarray:
    """One horizontal bar per token type: label | bar (length = share) | percentage."""
    thickness = 1
    (_, th), base = cv2.getTextSize("Ag", _FONT, scale, thickness)
    pad = max(2, th // 3)
    row_h = th + base + 2 * pad
    label_w = max(cv2.getTextSize(str(k), _FONT, scale, thickness)[0][0] for k in shares) + 2 * pad
    pct_w = cv2.getTextSize("100.0%", _FONT, scale, thickness)[0][0] + 2 * pad
    bar_max = max(1, width - label_w - pct_w - pad)

    strip = np.full((len(shares) * row_h + 2 * pad, width, 3), _PANEL_BG, np.uint8)
    for i, (key, colour) in enumerate(_share_colours(list(shares)).items()):
        value = float(shares[key])
        value = 0.0 if not np.isfinite(value) else value
        top = pad + i * row_h
        text_y = top + pad + th
        cv2.putText(strip, str(key), (pad, text_y), _FONT, scale, _WHITE, thickness, cv2.LINE_AA)
        bar_top, bar_bottom = top + pad, top + row_h - pad - 1
        # A dim track shows where 100 % would end, so short bars still read as fractions.
        cv2.rectangle(strip, (label_w, bar_top), (label_w + bar_max - 1, bar_bottom), (56, 56, 56), -1)
        length = round(min(max(value, 0.0), 1.0) * bar_max)
        if length > 0:
            cv2.rectangle(strip, (label_w, bar_top), (label_w + length - 1, bar_bottom), colour, -1)
        cv2.putText(strip, f"{100.0 * value:.1f}%", (label_w + bar_max + pad, text_y), _FONT, scale,
                    _WHITE, thickness, cv2.LINE_AA)
    return strip


def _share_colours(keys: list[str]) -> dict[str, tuple[int, int, int]]:
    """Known token types get their fixed colour; others take unused palette colours in order."""
    colours = {key: _SHARE_COLOURS[key] for key in keys if key in _SHARE_COLOURS}
    free = [c for c in _SHARE_PALETTE if c not in colours.values()]
    n_free = 0
    for key in keys:
        if key not in colours:
            colours[key] = free[n_free % len(free)]  # beyond the palette colours repeat
            n_free += 1
    return {key: colours[key] for key in keys}


def _pad_even(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return image
    return cv2.copyMakeBorder(image, 0, h % 2, 0, w % 2, cv2.BORDER_CONSTANT, value=_BLACK)


# ------------------------------------------------------------------ text and checks

def _font_scale(height: int) -> float:
    """Font scale for text on an image of this height: readable on 480 p, small on thumbnails."""
    return float(min(1.2, max(0.3, 0.6 * height / 480.0)))


def _put_outlined_text(image: np.ndarray, text: str, org: tuple[int, int], scale: float) -> None:
    """White text with a black outline: readable on any background, bright or dark."""
    thickness = 1 if scale < 0.8 else 2
    cv2.putText(image, text, org, _FONT, scale, _BLACK, thickness + 2, cv2.LINE_AA)
    cv2.putText(image, text, org, _FONT, scale, _WHITE, thickness, cv2.LINE_AA)


def _check_image(image: np.ndarray, what: str) -> None:
    if not isinstance(image, np.ndarray):
        # ValueError like every other bad-input case, so callers catch one exception type.
        raise ValueError(f"{what} must be a numpy array, got {type(image).__name__}")  # noqa: TRY004
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{what} must be an RGB image of shape (H, W, 3), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 RGB, got dtype {image.dtype} (shape {image.shape})")


# ------------------------------------------------------------------ I/O edges

def to_bgr(image: np.ndarray) -> np.ndarray:
    """RGB -> BGR copy for OpenCV I/O (cv2.imwrite, cv2.VideoWriter). Use only at I/O edges."""
    _check_image(image, "image")
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)


def from_bgr(image: np.ndarray) -> np.ndarray:
    """BGR -> RGB copy for images from OpenCV I/O (cv2.imread, VideoCapture). Use only at I/O edges."""
    _check_image(image, "image")
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2RGB)
