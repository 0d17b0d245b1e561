"""Query images as people make them (drawn dark on light, resized, photographed, on a transparent
sheet) read as the drawing the model learnt. References: the shipped 8 x 8 query through the old
pipeline (no ink isolation), hand-made variants of it, and S against a shipped example."""
import os

import numpy as np
import pytest
from PIL import Image

from vpkl.runtime.bundle import Bundle
from vpkl.runtime.detect import detect
from vpkl.runtime.images import ImageConfig, isolate_ink, read_image
from vpkl.runtime.queries import enrol

from conftest import ASSETS, EXAMPLES

SEVEN = os.path.join(EXAMPLES, "queries", "seven_test00.png")
EX4 = os.path.join(EXAMPLES, "example_4.wav")          # "three seven eight"


@pytest.fixture(scope="module")
def bundle():
    return Bundle.load(os.path.join(ASSETS, "digits"), threads=1)


def old_pipeline(cfg: ImageConfig) -> ImageConfig:
    d = cfg.to_dict()
    d["drawing"] = False
    return ImageConfig.from_dict(d)


def test_shipped_queries_are_read_as_before(bundle):
    """The 8 x 8 training-style digits already are bright ink on black: ink isolation leaves them
    exactly as the pipeline without it read them."""
    folder = os.path.join(EXAMPLES, "queries")
    for f in sorted(os.listdir(folder)):
        new = read_image(os.path.join(folder, f), bundle.image)
        old = read_image(os.path.join(folder, f), old_pipeline(bundle.image))
        assert np.array_equal(new, old), f


def test_dark_on_light_is_the_same_drawing(bundle, tmp_path):
    x = np.asarray(Image.open(SEVEN))
    Image.fromarray(255 - x).save(tmp_path / "seven_dark.png")
    assert np.array_equal(read_image(tmp_path / "seven_dark.png", bundle.image), read_image(SEVEN, bundle.image))


def test_dark_strokes_on_a_transparent_sheet(bundle, tmp_path):
    """Black strokes whose only ground is transparency (white or black under it): the drawing."""
    x = np.asarray(Image.open(SEVEN)).astype(np.uint8)
    for under in (0, 255):
        rgba = np.zeros((8, 8, 4), np.uint8)
        rgba[..., :3] = under
        rgba[..., 3] = x                        # the ink is where it is opaque; it is black
        rgba[x > 0, :3] = 0
        Image.fromarray(rgba, "RGBA").save(tmp_path / f"seven_rgba{under}.png")
        got = read_image(tmp_path / f"seven_rgba{under}.png", bundle.image)
        want = read_image(SEVEN, bundle.image)
        assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.95


def test_resized_and_offset_in_a_large_canvas(bundle, tmp_path):
    big = Image.open(SEVEN).resize((80, 80), Image.BILINEAR)
    canvas = Image.new("L", (300, 220), 0)
    canvas.paste(big, (190, 30))
    canvas.save(tmp_path / "seven_big.png")
    got = read_image(tmp_path / "seven_big.png", bundle.image)
    assert np.corrcoef(got.ravel(), read_image(SEVEN, bundle.image).ravel())[0, 1] > 0.85
    s = [detect(bundle, EX4, enrol(bundle, {"seven": [p]}))[0] for p in (SEVEN, tmp_path / "seven_big.png")]
    assert s[1].detected and abs(s[1].score - s[0].score) < 0.08 and abs(s[1].frame - s[0].frame) <= 2


def test_photographed_digit_scores_like_the_drawing(bundle, tmp_path):
    """Dark ink on tinted paper under a lighting gradient, noisy, blurred, JPEG: S against a spoken
    "seven" within 0.08 of the shipped query's, and still detected."""
    from vpkl.training.query_styles import render
    x = np.asarray(Image.open(SEVEN))
    render(x, "photo", np.random.default_rng(3)).save(tmp_path / "seven_photo.jpg")
    s = {}
    for name, path in (("shipped", SEVEN), ("photo", str(tmp_path / "seven_photo.jpg"))):
        r = detect(bundle, EX4, enrol(bundle, {"seven": [path]}))[0]
        s[name] = r
    assert s["photo"].detected and abs(s["photo"].score - s["shipped"].score) < 0.08
    assert abs(s["photo"].frame - s["shipped"].frame) <= 2


def test_isolate_ink_by_hand():
    """A dark 10 x 20 bar on light paper with a brightness gradient: found, inverted, cropped square."""
    h, w = 120, 160
    light = np.linspace(150, 250, w)[None, :].repeat(h, axis=0)
    img = light.copy()
    img[40:60, 70:80] = 20                               # the ink: 20 rows x 10 columns
    out = np.asarray(isolate_ink(Image.fromarray(img.astype(np.uint8), "L"), margin=0.0))
    assert out.shape == (20, 20)                          # square on the bar's longer side
    assert out[:, 5:15].min() > 200 and out[:, :5].max() == 0 and out[:, 15:].max() == 0
    blank = np.asarray(isolate_ink(Image.fromarray(np.full((40, 40), 200, np.uint8)), 0.0))
    assert blank.max() == 0                               # no ink: nothing invented


def test_palette_png_with_a_transparent_ground(bundle, tmp_path):
    """A bright-on-black digit saved as a palette PNG whose black is the transparent index read as
    dark strokes on white (S 0.445 for a spoken seven): it is the same drawing."""
    Image.open(SEVEN).convert("P").save(tmp_path / "seven_p.png", transparency=0)
    assert Image.open(tmp_path / "seven_p.png").info.get("transparency") == 0
    got = read_image(tmp_path / "seven_p.png", bundle.image)
    assert np.corrcoef(got.ravel(), read_image(SEVEN, bundle.image).ravel())[0, 1] > 0.95


def test_huge_drawing_is_reduced_first(bundle, tmp_path):
    """A 6000 x 6000 drawing is box-reduced before the float steps (13000 x 13000 took 4.8 GB) and
    reads as the same drawing as its small original."""
    Image.open(SEVEN).resize((6000, 6000), Image.BILINEAR).save(tmp_path / "seven_huge.png")
    s = [detect(bundle, EX4, enrol(bundle, {"seven": [p]}))[0] for p in (SEVEN, tmp_path / "seven_huge.png")]
    # still the spoken seven, found where it is said; S lower (0.67 against 0.77): the shipped model
    # learnt only 8 x 8 digits and is sensitive to the framing of large ones (README: query images)
    assert s[1].detected and abs(s[1].score - s[0].score) < 0.12 and abs(s[1].frame - s[0].frame) <= 2


def test_dark_ink_with_grey_edges_on_a_transparent_sheet(bundle, tmp_path):
    """Dark strokes with anti-aliased grey edges, the white around them transparent, were laid on
    black and missed (S 0.548): they are the drawing (S of the opaque version)."""
    dark = Image.fromarray(255 - np.asarray(Image.open(SEVEN)), "L").resize((64, 64), Image.BILINEAR)
    rgba = np.dstack([np.repeat(np.asarray(dark)[..., None], 3, axis=2), np.where(np.asarray(dark) == 255, 0, 255)])
    Image.fromarray(rgba.astype(np.uint8), "RGBA").save(tmp_path / "seven_sheet.png")
    dark.save(tmp_path / "seven_opaque.png")
    s = [detect(bundle, EX4, enrol(bundle, {"seven": [p]}))[0] for p in (tmp_path / "seven_opaque.png",
                                                                         tmp_path / "seven_sheet.png")]
    assert s[1].detected and abs(s[1].score - s[0].score) < 0.02
