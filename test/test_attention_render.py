"""Heatmap rendering: normalisation, per-pixel-alpha overlays, colours in RGB, combined panels.

Pure core: no ROS, small images, the whole file runs in a few seconds.
"""

from __future__ import annotations

import math
import re
import warnings

import cv2
import numpy as np
import pytest
from matplotlib import colormaps as mpl_colormaps

from pai_ros.attention.render import (
    COLORMAPS,
    Normalization,
    colormap_lut,
    combined_panel,
    episode_range,
    from_bgr,
    normalize,
    overlay,
    to_bgr,
)

H, W = 64, 80
GH, GW = 4, 5  # 16x16-pixel cells on a 64x80 image

ALL_NORMS = [
    Normalization("raw", vmax=1.0),
    Normalization("frame"),
    Normalization("episode", vmin=0.0, vmax=0.5),
    Normalization("percentile", percentile=99.0),
]


def _red() -> np.ndarray:
    image = np.zeros((H, W, 3), np.uint8)
    image[..., 0] = 255
    return image


def _textured(h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    # Mid-range values so that any blend shows up in every channel.
    return np.random.default_rng(seed).integers(40, 216, (h, w, 3), dtype=np.uint8)


def _mpl_rgb(name: str, x: float) -> np.ndarray:
    return np.asarray(mpl_colormaps[name](x)[:3]) * 255.0


# ------------------------------------------------------------------ overlay: where colour goes

@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("norm", ALL_NORMS, ids=lambda n: n.mode)
def test_zero_attention_leaves_pure_red_frame_exactly_unchanged(norm: Normalization, interpolation: str) -> None:
    image = _red()
    grid = normalize({"front": np.zeros((GH, GW), np.float32)}, norm)["front"]
    for alpha in (0.6, 1.0):
        out = overlay(image, grid, alpha=alpha, interpolation=interpolation)
        assert out.dtype == np.uint8 and out.shape == image.shape
        np.testing.assert_array_equal(out, image)
    assert (image[..., 0] == 255).all() and (image[..., 1:] == 0).all(), "input was modified"


@pytest.mark.parametrize("hw", [(64, 80), (70, 90)])
def test_nearest_hot_cell_colours_exactly_its_own_block(hw: tuple[int, int]) -> None:
    h, w = hw
    r, c = 1, 3
    grid = np.zeros((GH, GW), np.float32)
    grid[r, c] = 1.0
    image = _textured(h, w)
    out = overlay(image, grid, interpolation="nearest")
    changed = (out != image).any(axis=2)

    # Cell (r, c) covers rows r*H/gh .. (r+1)*H/gh (and the same for columns).
    rows = slice(math.ceil(r * h / GH), math.ceil((r + 1) * h / GH))
    cols = slice(math.ceil(c * w / GW), math.ceil((c + 1) * w / GW))
    assert changed[rows, cols].all()
    outside = changed.copy()
    outside[rows, cols] = False
    assert not outside.any(), "nearest interpolation leaked outside the hot cell's block"


def test_bilinear_hot_cell_peaks_inside_its_block_and_far_cells_are_untouched() -> None:
    r, c = 2, 1
    grid = np.zeros((GH, GW), np.float32)
    grid[r, c] = 1.0
    image = _textured()
    out = overlay(image, grid, interpolation="bilinear")
    change = np.abs(out.astype(np.int32) - image).sum(axis=2)

    py, px = np.unravel_index(np.argmax(change), change.shape)
    assert r * 16 <= py < (r + 1) * 16 and c * 16 <= px < (c + 1) * 16, (py, px)
    # Bilinear blends smoothly into the neighbouring cells (unlike nearest), but only as far as
    # their centres.
    assert change[r * 16:(r + 1) * 16, (c + 1) * 16].max() > 0
    assert change[r * 16 + 8, c * 16 + 8] > change[r * 16 + 8, c * 16] > 0
    assert change[:, (c + 2) * 16:].max() == 0
    assert change[: (r - 1) * 16 + 8].max() == 0


def test_blend_follows_per_pixel_alpha_formula() -> None:
    rng = np.random.default_rng(1)
    image = _textured(seed=2)
    grid = rng.random((GH, GW)).astype(np.float32)
    alpha = 0.6
    out = overlay(image, grid, alpha=alpha, colormap="magma", interpolation="nearest")

    level = np.rint(grid * 255).astype(np.intp).repeat(16, axis=0).repeat(16, axis=1)
    m = (level / 255.0)[..., None]
    colour = colormap_lut("magma")[level].astype(np.float64)
    expected = image * (1 - alpha * m) + colour * alpha * m
    assert np.abs(out - expected).max() <= 2.0


# ------------------------------------------------------------------ colours: RGB, never BGR

def test_full_attention_on_black_gives_viridis_top_colour_in_rgb_order() -> None:
    out = overlay(np.zeros((32, 40, 3), np.uint8), np.ones((3, 4), np.float32), alpha=1.0)
    top = colormap_lut("viridis")[255]
    assert (out == top).all()
    assert np.abs(out[0, 0] - _mpl_rgb("viridis", 1.0)).max() <= 1.0
    red, green, blue = (int(v) for v in out[0, 0])
    assert red > 200 and green > 200 and blue < 80, "viridis(1) is yellow: a BGR swap would make it blue"


@pytest.mark.parametrize("name", COLORMAPS)
def test_overlay_colours_match_matplotlib_for_every_colormap(name: str) -> None:
    black = np.zeros((16, 16, 3), np.uint8)
    for value in (0.0, 0.5, 1.0):
        out = overlay(black, np.full((2, 2), value, np.float32), alpha=1.0, colormap=name)
        level = round(value * 255)
        # At m = 0 nothing is blended in (per-pixel alpha); elsewhere the pixel is colour * m.
        expected = _mpl_rgb(name, level / 255) * (level / 255)
        assert np.abs(out[8, 8] - expected).max() <= 1.5, (name, value, out[8, 8], expected)


def test_colormap_lut_shape_and_cache_is_read_only() -> None:
    for name in COLORMAPS:
        lut = colormap_lut(name)
        assert lut.shape == (256, 3) and lut.dtype == np.uint8
        assert np.abs(lut[128] - _mpl_rgb(name, 128 / 255)).max() <= 1.0
        assert colormap_lut(name) is lut
        with pytest.raises(ValueError):
            lut[0, 0] = 1


def test_colorbar_runs_from_zero_at_bottom_to_one_at_top_beside_the_image() -> None:
    h, w = 160, 200
    black = np.zeros((h, w, 3), np.uint8)
    grid = np.zeros((5, 5), np.float32)
    grid[:, -1] = 1.0  # the last column of cells, which a bar drawn inside the image used to cover
    out = overlay(black, grid, colorbar=True)
    assert out.shape[0] == h and out.shape[1] > w and out.shape[1] % 2 == 0  # a strip beside it, even (H.264)
    assert np.array_equal(out[:, :w], overlay(black, grid)), "the image keeps every pixel of its overlay"
    out = out[:, w:]  # the strip alone
    lut = colormap_lut("viridis")
    top_rows = np.nonzero((out == lut[255]).all(axis=2))[0]
    bottom_rows = np.nonzero((out == lut[0]).all(axis=2))[0]
    assert top_rows.size and bottom_rows.size
    assert top_rows.mean() < h / 2 < bottom_rows.mean()
    assert np.array_equal(overlay(black, np.zeros((5, 5), np.float32)), black), "no bar unless asked"
    small = overlay(black[:40, :60], grid, colorbar=True)  # a thumbnail: a bar still, without labels
    assert small.shape[0] == 40 and 60 < small.shape[1] <= 70 and small.shape[1] % 2 == 0


# ------------------------------------------------------------------ normalisation

def test_frame_mode_scales_all_cameras_of_a_frame_together() -> None:
    maps = {"front": np.array([[0.0, 1.0], [2.0, 3.0]]), "wrist": np.array([[4.0, 2.0]])}
    out = normalize(maps, Normalization("frame"))
    assert set(out) == {"front", "wrist"}
    assert all(v.dtype == np.float32 for v in out.values())
    np.testing.assert_allclose(out["front"], [[0.0, 0.25], [0.5, 0.75]], atol=1e-6)
    np.testing.assert_allclose(out["wrist"], [[1.0, 0.5]], atol=1e-6)
    # Min-max, not 0-max: an offset does not change the picture.
    shifted = normalize({k: v + 10.0 for k, v in maps.items()}, Normalization("frame"))
    np.testing.assert_allclose(shifted["front"], out["front"], atol=1e-6)


def test_episode_mode_uses_given_range_and_clips() -> None:
    out = normalize({"a": np.array([0.0, 1.0, 2.0, 3.0, 4.0])}, Normalization("episode", vmin=1.0, vmax=3.0))
    np.testing.assert_allclose(out["a"], [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)


def test_raw_mode_is_a_fixed_scale() -> None:
    values = {"a": np.array([-1.0, 0.0, 1.0, 2.0, 4.0])}
    np.testing.assert_allclose(normalize(values, Normalization("raw", vmax=2.0))["a"],
                               [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(normalize(values, Normalization("raw", vmin=1.0, vmax=3.0))["a"],
                               [0.0, 0.0, 0.0, 0.5, 1.0], atol=1e-6)
    # A fixed scale keeps a uniform level where it is (it is not stretched to 1).
    np.testing.assert_allclose(normalize({"a": np.full(3, 0.5)}, Normalization("raw", vmax=1.0))["a"], 0.5)


def test_percentile_mode_clips_above_the_percentile() -> None:
    values = {"a": np.arange(101, dtype=np.float64).reshape(1, 101)}
    out = normalize(values, Normalization("percentile", percentile=50.0))["a"]
    np.testing.assert_allclose(out[0, :51], np.arange(51) / 50.0, atol=1e-6)
    assert (out[0, 50:] == 1.0).all()
    # Sparse attention (percentile is 0) must still show the hot token.
    sparse = np.zeros(200)
    sparse[3] = 0.2
    out = normalize({"a": sparse}, Normalization("percentile", percentile=99.0))["a"]
    assert out[3] == 1.0 and out.sum() == 1.0


@pytest.mark.parametrize("norm", ALL_NORMS, ids=lambda n: n.mode)
def test_all_zero_input_maps_to_zeros_without_warnings(norm: Normalization) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = normalize({"a": np.zeros((3, 4)), "b": np.zeros((2, 2), np.float32)}, norm)
    for key, shape in (("a", (3, 4)), ("b", (2, 2))):
        assert out[key].shape == shape and out[key].dtype == np.float32
        assert (out[key] == 0).all()


@pytest.mark.parametrize("mode", ["frame", "percentile"])
def test_constant_nonzero_input_has_no_contrast_in_relative_modes(mode: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = normalize({"a": np.full((3, 4), 0.7)}, Normalization(mode))
    assert (out["a"] == 0).all()
    assert (normalize({"a": np.full(3, 2.0)}, Normalization("episode", vmin=2.0, vmax=2.0))["a"] == 0).all()


def test_nan_and_inf_count_as_zero_and_input_is_untouched() -> None:
    raw = np.array([np.nan, 1.0, np.inf, -np.inf, 2.0], np.float32)
    before = raw.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = normalize({"a": raw}, Normalization("frame"))["a"]
    np.testing.assert_allclose(out, [0.0, 0.5, 0.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_array_equal(raw, before)
    assert np.isfinite(normalize({"a": np.full(4, np.nan)}, Normalization("percentile"))["a"]).all()


def test_invalid_normalizations_are_refused() -> None:
    with pytest.raises(ValueError, match="vmax"):
        normalize({"a": np.ones(3)}, Normalization("raw"))
    with pytest.raises(ValueError, match="episode_range"):
        Normalization("episode", vmax=1.0)
    with pytest.raises(ValueError, match="frame"):  # lists the valid modes
        Normalization("global")
    with pytest.raises(ValueError, match="percentile"):
        Normalization("percentile", percentile=0.0)


def test_episode_range_spans_all_maps_of_all_frames() -> None:
    frames = [
        {"front": np.array([[0.2, 0.5]]), "wrist": np.array([[0.3]])},
        {"front": np.array([[0.1, np.nan]]), "wrist": np.array([[0.9]])},
    ]
    assert episode_range(iter(frames)) == pytest.approx((0.0, 0.9))  # NaN counts as 0
    assert episode_range([{"a": np.array([0.4, 0.6])}]) == pytest.approx((0.4, 0.6))
    with pytest.raises(ValueError):
        episode_range([])


# ------------------------------------------------------------------ combined panel

def _panel_inputs() -> dict[str, np.ndarray]:
    return {"front": _textured(480, 640, seed=3), "wrist": _textured(240, 320, seed=4)}


def test_combined_panel_tiles_share_the_tallest_height() -> None:
    overlays = _panel_inputs()
    panel = combined_panel(overlays, {})
    assert panel.dtype == np.uint8
    assert panel.shape == (480, 640 + 640, 3)
    # Away from the label, tiles are the (resized) overlays themselves.
    np.testing.assert_array_equal(panel[240:480, :640], overlays["front"][240:])
    wrist_big = cv2.resize(overlays["wrist"], (640, 480), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(panel[240:480, 640:], wrist_big[240:])

    assert combined_panel(overlays, {}, height=240).shape == (240, 320 + 320, 3)


def test_combined_panel_dimensions_are_even() -> None:
    panel = combined_panel({"front": _textured(63, 81)}, {})
    assert panel.shape == (64, 82, 3)
    for shares, title in (({"latent": 0.5, "front": 0.5}, None), ({}, "t"), ({"latent": 1.0}, "episode 3")):
        panel = combined_panel({"front": _textured(480, 640), "wrist": _textured(240, 321)}, shares,
                               height=241, title=title)
        # Tiles 321 + 322 (widths rounded at height 241) = 643 columns, padded to 644.
        assert panel.shape[1] == 644 and panel.shape[0] % 2 == 0, panel.shape


def test_combined_panel_labels_change_pixels_and_inputs_are_untouched() -> None:
    overlays = _panel_inputs()
    before = {k: v.copy() for k, v in overlays.items()}
    panel = combined_panel(overlays, {})
    assert (panel[:40, :120] != overlays["front"][:40, :120]).any(), "no camera label drawn"
    other = combined_panel({"wrist_cam_long_name": overlays["front"], "wrist": overlays["wrist"]}, {})
    assert (other[:40, :640] != panel[:40, :640]).any(), "label does not depend on the camera name"
    for key in overlays:
        np.testing.assert_array_equal(overlays[key], before[key])
    titled = combined_panel(overlays, {}, title="episode 0, frame 12")
    assert titled.shape[0] > 480 and titled.shape[1] == 1280
    assert (titled[: titled.shape[0] - 480] != titled[0, 0]).any(), "title text missing"


def test_share_strip_draws_one_distinct_bar_per_token_type_with_length_by_share() -> None:
    overlays = _panel_inputs()
    shares = {"latent": 0.1, "state": 0.05, "env_state": 0.05, "front": 0.6, "wrist": 0.2}
    panel = combined_panel(overlays, shares)
    assert panel.shape[1] == 1280 and panel.shape[0] > 480
    strip = panel[480:]

    # Text, background and the empty track are grey; the only saturated colours are the bars.
    values, counts = np.unique(strip.reshape(-1, 3), axis=0, return_counts=True)
    grey = (values.max(axis=1) - values.min(axis=1)) == 0
    bars = [tuple(int(v) for v in colour) for colour in values[~grey & (counts >= 20)]]
    assert len(bars) == len(shares), f"expected one distinct colour per token type, got {bars}"
    masks = [(strip == np.array(colour, np.uint8)).all(axis=2) for colour in bars]
    masks.sort(key=lambda mask: np.nonzero(mask)[0].mean())  # top to bottom = order of the keys
    lengths = dict(zip(shares, (int(mask.sum(axis=1).max()) for mask in masks)))
    assert lengths["front"] > lengths["wrist"] > lengths["latent"] > lengths["state"] > 0
    assert lengths["front"] == pytest.approx(3 * lengths["wrist"], rel=0.05)
    assert lengths["state"] == pytest.approx(lengths["env_state"], abs=1)


def test_share_strip_writes_labels_and_percentages() -> None:
    overlays = _panel_inputs()
    a = combined_panel(overlays, {"latent": 0.25, "front": 0.75})[480:]
    b = combined_panel(overlays, {"latent": 0.75, "front": 0.25})[480:]
    c = combined_panel(overlays, {"state": 0.25, "front": 0.75})[480:]
    right, left = slice(1280 - 100, 1280), slice(0, 40)  # percentage column, label column
    assert (a[:, right] > 200).all(axis=2).any() and (a[:, left] > 200).all(axis=2).any(), "no white text"
    assert not np.array_equal(a[:, right], b[:, right]), "percentage text does not follow the shares"
    assert not np.array_equal(a[:, left], c[:, left]), "label text does not follow the keys"


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize(("image", "grid", "pattern"), [
    (np.zeros((H, W), np.uint8), np.zeros((GH, GW)), r"image .*\(H, W, 3\).*\(64, 80\)"),
    (np.zeros((H, W, 3), np.float32), np.zeros((GH, GW)), r"uint8.*float32"),
    (np.zeros((H, W, 4), np.uint8), np.zeros((GH, GW)), r"\(64, 80, 4\)"),
    (np.zeros((H, W, 3), np.uint8), np.zeros((1, GH, GW)), r"grid .*2-D.*\(1, 4, 5\)"),
])
def test_bad_input_is_refused_with_a_one_line_message(image: np.ndarray, grid: np.ndarray, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern) as info:
        overlay(image, grid)
    assert "\n" not in str(info.value)


def test_bad_options_are_refused() -> None:
    image, grid = _red(), np.zeros((GH, GW))
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, grid, alpha=1.5)
    with pytest.raises(ValueError, match="bilinear"):
        overlay(image, grid, interpolation="cubic")
    with pytest.raises(ValueError, match="at least one"):
        combined_panel({}, {})
    with pytest.raises(ValueError, match="'wrist'"):
        combined_panel({"front": image, "wrist": image[..., 0]}, {})


def test_unknown_colormap_lists_valid_names() -> None:
    for call in (lambda: colormap_lut("parula"), lambda: overlay(_red(), np.zeros((GH, GW)), colormap="parula")):
        with pytest.raises(ValueError, match="parula") as info:
            call()
        for name in COLORMAPS:
            assert re.search(rf"\b{name}\b", str(info.value)), name


# ------------------------------------------------------------------ I/O edges

def test_bgr_conversion_roundtrips_through_opencv_io(tmp_path) -> None:
    image = _red()
    assert tuple(to_bgr(image)[0, 0]) == (0, 0, 255)
    np.testing.assert_array_equal(from_bgr(to_bgr(image)), image)
    path = str(tmp_path / "red.png")
    assert cv2.imwrite(path, to_bgr(image))
    np.testing.assert_array_equal(from_bgr(cv2.imread(path)), image)


def test_the_contact_sheet_names_each_camera_in_its_own_part() -> None:
    """Side-by-side heatmaps without names left the reader to guess which camera is which."""
    import numpy as np

    from pai_ros.demo.outputs import _name_cameras

    row = np.zeros((64, 80 + 120, 3), np.uint8)
    _name_cameras(row, [("front", 80), ("wrist", 120)])
    text = row.max(axis=2) > 0
    assert text[48:, 2:40].any() and text[48:, 82:120].any()  # bottom-left of each camera's part
    assert not text[:40].any() and not text[:, 60:80].any()  # nowhere else
