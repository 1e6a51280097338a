"""This port's training augmentations (src/data/transforms.py): photometric distortion, random crop, scale jitter,
vertical flip. Images of coloured squares on a grey background: after each transform every kept box must enclose
exactly its square's pixels; boxes a crop cuts too much become padding rows; the photometric steps against a direct
NumPy / colorsys computation."""
import colorsys

import numpy as np
import pytest

from src.data.transforms import (
    BRIGHTNESS_DELTA,
    CONTRAST_RANGE,
    HUE_DELTA,
    IMAGENET_MEAN_RGB,
    IMAGENET_STD_RGB,
    SATURATION_RANGE,
    AugmentDraw,
    PhotometricDraw,
    PreprocessSettings,
    draw_augmentation,
    draw_extra,
    draw_photometric,
    photometric_distortion,
    preprocess_train,
)
from src.infra.errors import ConfigError
from src.model_utils.config import get_config

H, W = 256, 384  # the canvas
G = 8            # num_gts
GREY = (128, 128, 128)
# Far from each other, from the grey and from the black padding, also after the strongest photometric draw.
COLOURS = {1: (230, 40, 40), 2: (40, 220, 50), 3: (50, 60, 230), 4: (235, 225, 40), 5: (230, 40, 220),
           6: (40, 220, 225)}
MARGIN = 2       # px a resize may blend a square's edge into its surroundings
MATCH = 12       # max channel difference (0-255) of a pixel taken for a square's colour
INNER_MATCH = 4  # ... inside a box, away from its edges


def settings(**augment) -> PreprocessSettings:
    return PreprocessSettings(H, W, True, 0.0, 0.0, G, **augment)


def squares(height: int, width: int, boxes: dict[int, tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """A grey uint8 image with each label's square filled with its colour; annotation rows (n, 6)."""
    image = np.full((height, width, 3), GREY, np.uint8)
    for label, (x1, y1, x2, y2) in boxes.items():
        image[y1:y2, x1:x2] = COLOURS[label]
    rows = [[*box, label, 0] for label, box in boxes.items()]
    return image, np.array(rows, np.int32).reshape(-1, 6)


def random_squares(rng: np.random.Generator, height: int = 300, width: int = 420):
    """Four squares (side 60-100) at random places in the four quadrants."""
    boxes = {}
    for label, (qy, qx) in zip((1, 2, 3, 4), ((0, 0), (0, 1), (1, 0), (1, 1)), strict=True):
        side = int(rng.integers(60, 101))
        y = qy * height // 2 + int(rng.integers(0, height // 2 - side))
        x = qx * width // 2 + int(rng.integers(0, width // 2 - side))
        boxes[label] = (x, y, x + side, y + side)
    return squares(height, width, boxes)


def rgb(image_chw: np.ndarray) -> np.ndarray:
    """The network input (3, H, W) back to RGB values (H, W, 3) (0-255 for an undistorted image)."""
    return image_chw.transpose(1, 2, 0) * np.asarray(IMAGENET_STD_RGB) + np.asarray(IMAGENET_MEAN_RGB)


def colour_mask(image: np.ndarray, colour) -> np.ndarray:
    return np.abs(image - np.asarray(colour, np.float64)).max(axis=2) < MATCH


def check_boxes_enclose_their_squares(out, colours: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Every valid box lies on the canvas, its inner part is its square's colour and that colour appears nowhere
    outside it beyond MARGIN; padding rows are zero boxes, label -1, not valid. Returns {label: box}."""
    image, meta, boxes, labels, valid = out
    assert image.shape == (3, H, W) and meta.tolist() == [H, W, 1.0]
    np.testing.assert_array_equal(valid, labels >= 0)  # no crowd rows in these images
    pixels = rgb(image)
    kept = {}
    for box, label in zip(boxes, labels, strict=True):
        if label < 0:
            continue
        x1, y1, x2, y2 = box
        assert 0 <= x1 <= x2 <= W - 1 and 0 <= y1 <= y2 <= H - 1, box
        # pixels whose centres (i + 0.5) lie at least MARGIN inside the box
        inner = pixels[int(np.ceil(y1 + MARGIN - 0.5)):int(np.floor(y2 - MARGIN - 0.5)) + 1,
                       int(np.ceil(x1 + MARGIN - 0.5)):int(np.floor(x2 - MARGIN - 0.5)) + 1]
        assert inner.size, f"box {box} too small for the pixel check"
        assert (np.abs(inner - colours[label]).max(axis=2) < INNER_MATCH).all(), f"label {label}: {box}"
        ys, xs = np.nonzero(colour_mask(pixels, colours[label]))
        assert xs.min() >= x1 - MARGIN - 1 and xs.max() <= x2 + MARGIN and ys.min() >= y1 - MARGIN - 1 \
            and ys.max() <= y2 + MARGIN, f"label {label}: colour outside its box {box}"
        kept[int(label)] = box
    return kept


def check_padding_rows(out, count: int) -> None:
    _, _, boxes, labels, valid = out
    assert (labels >= 0).sum() == count
    np.testing.assert_array_equal(labels[count:], -1)
    assert not valid[count:].any()


def undistorted(labels) -> dict[int, np.ndarray]:
    return {label: np.asarray(COLOURS[label], np.float64) for label in labels}


# ---------------------------------------------------------------------------------------------------------------
# Each transform with a fixed draw, against hand-computed boxes
def test_vertical_flip_mirrors_boxes_top_bottom():
    image, annotation = squares(128, 192, {1: (40, 20, 80, 60)})
    out = preprocess_train(image, annotation, settings(vertical_flip_ratio=1.0), flip=False,
                           extra=AugmentDraw(vertical_flip=True))
    # scale min(256 / 128, 384 / 192) = 2: [80, 40, 160, 120]; y' = 256 - y - 1.
    np.testing.assert_allclose(out[2][0], [80, 135, 160, 215])
    check_boxes_enclose_their_squares(out, undistorted([1]))
    check_padding_rows(out, 1)
    both = preprocess_train(image, annotation, settings(), flip=True, extra=AugmentDraw(vertical_flip=True))
    np.testing.assert_allclose(both[2][0], [383 - 160, 135, 383 - 80, 215])
    np.testing.assert_array_equal(both[0], out[0][:, :, ::-1])


def test_random_crop_clips_kept_boxes_and_drops_the_others():
    boxes = {1: (10, 10, 50, 50),     # inside the crop
             2: (100, 60, 140, 100),  # a quarter inside: dropped (crop_min_visible 0.5)
             3: (150, 20, 190, 60),   # outside: dropped
             4: (90, 10, 130, 50)}    # three quarters inside: kept, clipped
    image, annotation = squares(128, 192, boxes)
    # The window: 0.625 of each side at the top left, 120 x 80 px, rescaled by min(256 / 80, 384 / 120) = 3.2.
    out = preprocess_train(image, annotation, settings(random_crop=0.5), flip=False,
                           extra=AugmentDraw(crop=(0.625, 0.625, 0.0, 0.0)))
    np.testing.assert_array_equal(out[3][:3], [1, 4, -1])
    np.testing.assert_allclose(out[2][:2], [[32, 32, 160, 160], [288, 32, 383, 160]], rtol=1e-6)
    np.testing.assert_array_equal(out[2][2:], 0)
    check_boxes_enclose_their_squares(out, undistorted([1, 4]))
    check_padding_rows(out, 2)


def test_crop_min_box_size_drops_thin_remnants():
    image, annotation = squares(128, 192, {1: (10, 10, 50, 50), 2: (118, 10, 158, 50)})
    draw = AugmentDraw(crop=(0.625, 0.625, 0.0, 0.0))  # square 2 keeps 2 of its 40 columns: 377.6-383 on the canvas
    out = preprocess_train(image, annotation, settings(random_crop=0.5, crop_min_visible=0.0, crop_min_box_size=7.0),
                           flip=False, extra=draw)
    np.testing.assert_array_equal(out[3][:2], [1, -1])
    kept = preprocess_train(image, annotation, settings(random_crop=0.5, crop_min_visible=0.0,
                                                        crop_min_box_size=5.0), flip=False, extra=draw)
    np.testing.assert_array_equal(kept[3][:2], [1, 2])
    np.testing.assert_allclose(kept[2][1], [377.6, 32, 383, 160], rtol=1e-6)


def test_scale_jitter_crops_what_exceeds_the_canvas():
    boxes = {1: (40, 20, 80, 60),     # inside the window
             2: (170, 100, 190, 120),  # outside it: dropped
             3: (150, 30, 180, 60),   # a third inside: dropped
             4: (120, 70, 150, 100)}  # 78 of 90 rows inside: kept, clipped
    image, annotation = squares(128, 192, boxes)
    # fit 2 x factor 1.5 = 3: 384 x 576; the window's left int(0.5 * 193) = 96, top int(0.25 * 129) = 32.
    out = preprocess_train(image, annotation, settings(scale_jitter=(0.5, 2.0)), flip=False,
                           extra=AugmentDraw(scale=1.5, offset=(0.5, 0.25)))
    np.testing.assert_array_equal(out[3][:3], [1, 4, -1])
    np.testing.assert_allclose(out[2][:2], [[24, 28, 144, 148], [264, 178, 354, 255]], rtol=1e-6)
    check_boxes_enclose_their_squares(out, undistorted([1, 4]))
    check_padding_rows(out, 2)


def test_scale_jitter_below_one_pads_and_keeps_every_box():
    image, annotation = squares(128, 192, {1: (40, 20, 80, 60), 2: (150, 80, 190, 126)})
    out = preprocess_train(image, annotation, settings(scale_jitter=(0.5, 2.0)), flip=False,
                           extra=AugmentDraw(scale=0.5))  # scale 2 x 0.5 = 1: the image as it is, top left
    np.testing.assert_allclose(out[2][:2], [[40, 20, 80, 60], [150, 80, 190, 126]])
    check_boxes_enclose_their_squares(out, undistorted([1, 2]))
    np.testing.assert_allclose(out[0][:, 128:, :], np.broadcast_to(
        (-np.asarray(IMAGENET_MEAN_RGB) / np.asarray(IMAGENET_STD_RGB))[:, None, None], (3, 128, W)), rtol=1e-5)


def test_scale_jitter_without_keep_ratio_scales_both_sides_of_the_plain_resize():
    image, annotation = squares(128, 128, {1: (40, 20, 80, 60)})
    plain = PreprocessSettings(H, W, False, 0.0, 0.0, G, scale_jitter=(0.5, 2.0))
    out = preprocess_train(image, annotation, plain, flip=False, extra=AugmentDraw(scale=0.5))
    # plain resize scales 384 / 128 = 3 and 256 / 128 = 2, x 0.5: 192 x 128 at the top left.
    np.testing.assert_allclose(out[2][0], [60, 20, 120, 60])
    check_boxes_enclose_their_squares(out, undistorted([1]))
    assert np.allclose(rgb(out[0])[128:], 0, atol=1e-3) and np.allclose(rgb(out[0])[:, 192:], 0, atol=1e-3)


def test_an_image_whose_boxes_all_drop_is_a_background_image():
    image, annotation = squares(128, 192, {1: (150, 100, 190, 126), 2: (130, 90, 150, 110)})
    out = preprocess_train(image, annotation, settings(random_crop=0.5), flip=True,
                           extra=AugmentDraw(crop=(0.5, 0.5, 0.0, 0.0)))
    assert not out[4].any() and (out[3] == -1).all()
    np.testing.assert_array_equal(out[2], np.tile([W - 1, 0, W - 1, 0], (G, 1)))  # flipped padding, as the original's


# ---------------------------------------------------------------------------------------------------------------
# Photometric distortion
def reference_photometric(image: np.ndarray, draw: PhotometricDraw) -> np.ndarray:
    """The original's steps pixel by pixel in float64 with colorsys for the HSV conversion."""
    out = image.astype(np.float64)
    if draw.brightness is not None:
        out = out + draw.brightness
    if draw.contrast is not None and draw.contrast_first:
        out = out * draw.contrast
    if draw.saturation is not None or draw.hue is not None:
        flat = out.reshape(-1, 3) / 255.0
        for i, (r, g, b) in enumerate(flat):
            h, s, v = colorsys.rgb_to_hsv(r, g, b)
            s *= draw.saturation if draw.saturation is not None else 1.0
            h = (h * 360 + (draw.hue or 0.0)) % 360 / 360
            flat[i] = colorsys.hsv_to_rgb(h, s, v)
        out = flat.reshape(out.shape) * 255.0
    if draw.contrast is not None and not draw.contrast_first:
        out = out * draw.contrast
    if draw.permutation is not None:
        out = out[..., list(draw.permutation)]
    return out


@pytest.mark.parametrize("contrast_first", [True, False])
def test_photometric_distortion_matches_a_direct_computation(contrast_first):
    image = np.random.default_rng(3).integers(60, 200, size=(6, 7, 3)).astype(np.uint8)
    draw = PhotometricDraw(brightness=-20.5, contrast=1.3, contrast_first=contrast_first, saturation=0.7,
                           hue=12.0, permutation=(2, 0, 1))
    out = photometric_distortion(image, draw)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_allclose(out, reference_photometric(image, draw), atol=0.05)


@pytest.mark.parametrize("seed", range(12))
def test_a_seeded_draw_follows_the_originals_calls_and_its_effect_matches(seed):
    draw = draw_photometric(np.random.default_rng(seed))
    rng = np.random.default_rng(seed)  # the original's calls in its order (numpy.random.randint(2) -> integers(2))
    brightness = rng.uniform(-32, 32) if rng.integers(2) else None
    mode = rng.integers(2)
    contrast = rng.uniform(0.5, 1.5) if mode == 1 and rng.integers(2) else None
    saturation = rng.uniform(0.5, 1.5) if rng.integers(2) else None
    hue = rng.uniform(-18, 18) if rng.integers(2) else None
    if mode == 0 and rng.integers(2):
        contrast = rng.uniform(0.5, 1.5)
    permutation = tuple(int(c) for c in rng.permutation(3)) if rng.integers(2) else None
    assert draw == PhotometricDraw(brightness, contrast, mode == 1, saturation, hue, permutation)
    image = np.random.default_rng(100 + seed).integers(60, 200, size=(4, 5, 3)).astype(np.uint8)
    np.testing.assert_allclose(photometric_distortion(image, draw), reference_photometric(image, draw), atol=0.05)


def test_photometric_single_steps_change_pixels_within_their_ranges():
    image = np.random.default_rng(4).integers(0, 256, size=(5, 5, 3)).astype(np.uint8)
    none = PhotometricDraw(None, None, True, None, None, None)
    np.testing.assert_array_equal(photometric_distortion(image, none), image)
    bright = photometric_distortion(image, PhotometricDraw(BRIGHTNESS_DELTA, None, True, None, None, None))
    np.testing.assert_allclose(bright - image, BRIGHTNESS_DELTA)  # no clipping, as the original
    swapped = photometric_distortion(image, PhotometricDraw(None, None, True, None, None, (1, 2, 0)))
    np.testing.assert_array_equal(swapped, image[..., [1, 2, 0]])


def test_photometric_draws_follow_the_originals_ranges_and_rates():
    rng = np.random.default_rng(0)
    draws = [draw_photometric(rng) for _ in range(4000)]
    for name, low, high in (("brightness", -BRIGHTNESS_DELTA, BRIGHTNESS_DELTA), ("contrast", *CONTRAST_RANGE),
                            ("saturation", *SATURATION_RANGE), ("hue", -HUE_DELTA, HUE_DELTA)):
        values = [getattr(d, name) for d in draws if getattr(d, name) is not None]
        assert abs(len(values) / len(draws) - 0.5) < 0.03, name
        assert low <= min(values) and max(values) <= high and max(values) - min(values) > 0.95 * (high - low), name
    assert abs(np.mean([d.contrast_first for d in draws]) - 0.5) < 0.03
    permutations = [d.permutation for d in draws if d.permutation is not None]
    assert abs(len(permutations) / len(draws) - 0.5) < 0.03 and len(set(permutations)) == 6


def test_photometric_distortion_keeps_boxes_and_shape():
    image, annotation = squares(128, 192, {1: (40, 20, 80, 60)})
    draw = PhotometricDraw(10.0, 0.8, False, 1.2, -9.0, (2, 1, 0))
    plain = preprocess_train(image, annotation, settings(), flip=False)
    out = preprocess_train(image, annotation, settings(photometric_distortion=True), flip=False,
                           extra=AugmentDraw(photometric=draw))
    for a, b in zip(plain[1:], out[1:], strict=True):
        np.testing.assert_array_equal(a, b)
    assert out[0].shape == plain[0].shape and not np.allclose(out[0], plain[0])
    # The grey background: + 10, HSV steps leave grey as it is, x 0.8.
    np.testing.assert_allclose(rgb(out[0])[200, 300], (128 + 10) * 0.8, atol=1e-3)
    check_boxes_enclose_their_squares(out, {1: photometric_distortion(np.uint8([[COLOURS[1]]]), draw)[0, 0]})


# ---------------------------------------------------------------------------------------------------------------
# Everything together, random draws
@pytest.mark.parametrize("seed", range(6))
def test_all_augmentations_together_keep_boxes_on_their_squares(seed):
    rng = np.random.default_rng(seed)
    all_on = PreprocessSettings(H, W, True, 0.5, 1.0, G, photometric_distortion=True, scale_jitter=(0.6, 1.6),
                                random_crop=0.5, crop_min_box_size=6.0, crop_min_visible=0.5,
                                vertical_flip_ratio=0.5)
    for _ in range(4):
        image, annotation = random_squares(rng)
        flip, expand = draw_augmentation(rng, all_on, *image.shape[:2])
        extra = draw_extra(rng, all_on)
        out = preprocess_train(image, annotation, all_on, flip, expand, extra)
        swatch = photometric_distortion(np.uint8([list(COLOURS.values())[:4]]), extra.photometric)[0]
        colours = dict(zip((1, 2, 3, 4), swatch.astype(np.float64), strict=True))
        kept = check_boxes_enclose_their_squares(out, colours)
        check_padding_rows(out, len(kept))
        assert list(kept) == sorted(kept)  # kept rows stay in their order
        pixels = rgb(out[0])
        for box in kept.values():  # a kept box is no thin remnant
            assert min(box[2] - box[0], box[3] - box[1]) >= all_on.crop_min_box_size
        for label in set(colours) - set(kept):  # a dropped square shows less than half of itself (or a sliver)
            side = annotation[label - 1, 2] - annotation[label - 1, 0]
            scale = full_scale(image.shape[:2], expand, extra)
            count = colour_mask(pixels, colours[label]).sum()
            assert count < all_on.crop_min_visible * (side * scale) ** 2 + 4 * side * scale * MARGIN \
                or count < (all_on.crop_min_box_size + 2 * MARGIN) * side * scale, (seed, label, count)


def full_scale(shape, expand, extra) -> float:
    """Source pixels to canvas pixels for these draws: expand, crop window, fit x jitter factor."""
    h, w = shape
    if expand is not None:
        h, w = int(h * expand.ratio), int(w * expand.ratio)
    if extra.crop is not None:
        w, h = max(1, int(w * extra.crop[0] + 0.5)), max(1, int(h * extra.crop[1] + 0.5))
    return min(H / h, W / w) * extra.scale


# ---------------------------------------------------------------------------------------------------------------
# Off by default, settings checked
def test_off_by_default_and_no_random_draws_when_off():
    cfg = get_config([])
    s = PreprocessSettings.from_config(cfg)
    assert (s.photometric_distortion, s.scale_jitter, s.random_crop, s.vertical_flip_ratio) == \
        (False, (1.0, 1.0), 0.0, 0.0)
    rng = np.random.default_rng(5)
    state = rng.bit_generator.state
    assert draw_extra(rng, s) == AugmentDraw()
    assert rng.bit_generator.state == state  # the original's draws are not shifted


@pytest.mark.parametrize("override, key", [
    ({"scale_jitter": [1.2, 0.8]}, "scale_jitter"), ({"scale_jitter": [0, 1]}, "scale_jitter"),
    ({"scale_jitter": 1.0}, "scale_jitter"), ({"random_crop": 1.5}, "random_crop"),
    ({"crop_min_visible": -0.1}, "crop_min_visible"), ({"vertical_flip_ratio": 2}, "vertical_flip_ratio"),
    ({"crop_min_box_size": -1}, "crop_min_box_size")])
def test_bad_values_name_their_key(override, key):
    cfg = get_config([], **override)
    with pytest.raises(ConfigError, match=key):
        PreprocessSettings.from_config(cfg)
