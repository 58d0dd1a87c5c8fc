"""The MNIST recipe on images as people send them: any mode, size, background and position."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import numpy as np
import pytest
from service_fixtures import draw_digit, encode
from PIL import Image, ImageDraw, ImageFilter

from service.errors import InvalidImage, NoInk
from service.imaging import configure_pillow, decode, prepare
from service.manifest import ImageSpec

SPEC = ImageSpec(preprocessing="mnist", height=28, width=28, channels=1)


def similar(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two prepared images (1 = the same picture)."""
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return prepare(encode(draw_digit("4")), SPEC)


def test_output_follows_the_mnist_recipe(reference):
    assert reference.shape == (28, 28) and reference.dtype == np.float32
    assert reference.min() == 0.0 and reference.max() <= 1.0 and reference.max() > 0.9
    rows, cols = np.flatnonzero(reference.any(axis=1)), np.flatnonzero(reference.any(axis=0))
    # The ink is fitted in a 20x20 box: its longer side is 20 pixels.
    assert max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) == 20
    # ... and placed so that its centre of mass is at the centre (index 14, as in MNIST).
    index = np.arange(28)
    mass = reference.sum()
    assert abs((reference.sum(axis=1) * index).sum() / mass - 14) <= 0.5
    assert abs((reference.sum(axis=0) * index).sum() / mass - 14) <= 0.5


def test_a_model_ready_mnist_image_passes_through_unchanged(reference):
    mnist_style = Image.fromarray(np.round(reference * 255).astype(np.uint8), mode="L")
    expected = np.asarray(mnist_style, dtype=np.float32) / 255
    assert np.array_equal(prepare(encode(mnist_style), SPEC), expected)


def transparent_canvas() -> Image.Image:
    """Black ink on a fully transparent background, as canvas apps export."""
    ink = draw_digit("4")
    rgba = Image.new("RGBA", ink.size, (0, 0, 0, 0))
    rgba.putalpha(Image.eval(ink, lambda value: 255 - value))  # alpha = ink; colour black
    return rgba


def palette_with_transparency() -> Image.Image:
    image = draw_digit("4").convert("P")
    image.info["transparency"] = 255  # the white paper's palette index is transparent
    return image


def sixteen_bit() -> bytes:
    pixels = np.asarray(draw_digit("4"), dtype=np.uint16) * 257
    return encode(Image.fromarray(pixels))  # a 16-bit grayscale PNG, mode I;16


def photo_like() -> bytes:
    """A 3000x2400 'photo': grey uneven paper (gradient), sensor noise, dark ink, JPEG."""
    rng = np.random.default_rng(1)
    width, height = 3000, 2400
    paper = np.linspace(150, 230, width)[None, :] + np.linspace(0, 20, height)[:, None]
    drawing = np.asarray(draw_digit("4", size=1400, stroke=90).resize((1400, 1400)), dtype=np.float64) / 255
    picture = paper.copy()
    top, left = 500, 900
    region = picture[top : top + 1400, left : left + 1400]
    picture[top : top + 1400, left : left + 1400] = region * drawing + 40 * (1 - drawing)
    picture += rng.normal(0, 6, picture.shape)
    image = Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8)).convert("RGB")
    return encode(image.filter(ImageFilter.GaussianBlur(2)), "JPEG", quality=80)


def exif_rotated() -> bytes:
    """Stored on its side with EXIF orientation 6 ("rotate 90 clockwise to view")."""
    stored = draw_digit("4").rotate(90, expand=True).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(stored, "JPEG", exif=exif.tobytes(), quality=95)


def cmyk_jpeg() -> bytes:
    return encode(draw_digit("4").convert("CMYK"), "JPEG", quality=95)


def off_centre() -> Image.Image:
    canvas = Image.new("L", (900, 500), 255)
    canvas.paste(draw_digit("4", size=280), (560, 190))
    return canvas


# Each makes the file a client would upload.
VARIANTS = {
    "RGB dark ink on white": lambda: encode(draw_digit("4", mode="RGB")),
    "L light ink on black": lambda: encode(draw_digit("4", ink=255, paper=0)),
    "1-bit": lambda: encode(draw_digit("4", mode="1")),
    "LA": lambda: encode(transparent_canvas().convert("LA")),
    "RGBA transparent canvas": lambda: encode(transparent_canvas()),
    "P with transparency": lambda: encode(palette_with_transparency()),
    "GIF with transparency": lambda: encode(palette_with_transparency(), "GIF", transparency=255),
    "I;16 PNG": sixteen_bit,
    "CMYK JPEG": cmyk_jpeg,
    "EXIF rotated JPEG": exif_rotated,
    "off-centre on a wide canvas": lambda: encode(off_centre()),
    "small, thin strokes": lambda: encode(draw_digit("4", size=60, stroke=3)),
    "large, thick strokes": lambda: encode(draw_digit("4", size=2000, stroke=220)),
    "photo: gradient paper, noise, JPEG, 7 MP": photo_like,
}


@pytest.mark.parametrize("variant", VARIANTS, ids=list(VARIANTS))
def test_every_form_of_the_same_digit_prepares_alike(variant, reference):
    prepared = prepare(VARIANTS[variant](), SPEC)
    assert prepared.shape == (28, 28) and np.all(np.isfinite(prepared))
    assert similar(prepared, reference) > 0.8, variant


def test_different_digits_stay_different(reference):
    assert similar(prepare(encode(draw_digit("0")), SPEC), reference) < 0.6


@pytest.mark.parametrize(
    "blank",
    [
        Image.new("RGB", (300, 300), "white"),
        Image.new("L", (28, 28), 0),
        Image.new("RGBA", (200, 200), (0, 0, 0, 0)),
        Image.new("L", (300, 300), 128),
    ],
    ids=["white", "black 28x28", "transparent", "grey"],
)
def test_a_blank_image_has_no_ink(blank):
    with pytest.raises(NoInk, match="no ink"):
        prepare(encode(blank), SPEC)


def test_bytes_that_are_not_a_whole_image_are_invalid():
    """Bytes that are not an image, or are cut short, are InvalidImage, not a crash."""
    png = encode(draw_digit("7"))
    for data in [b"hello, not an image", png[:100], png[: len(png) // 2], b"\x89PNG\r\n\x1a\n" + b"\0" * 50]:
        with pytest.raises(InvalidImage):
            prepare(data, SPEC)


def test_damaged_files_of_every_format_fail_cleanly():
    """Truncations and flipped bytes: Pillow raises many types; each becomes InvalidImage or NoInk."""
    rng = random.Random(0)
    drawing = draw_digit("7", size=120, stroke=10, mode="RGB")
    for fmt in ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"]:
        data = encode(drawing, fmt)
        for _ in range(40):
            damaged = bytearray(data)
            if rng.random() < 0.5:
                damaged = damaged[: rng.randrange(1, len(data))]
            else:
                for _ in range(rng.randrange(1, 8)):
                    damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            try:
                prepared = prepare(bytes(damaged), SPEC)
            except (InvalidImage, NoInk):
                continue
            assert np.all(np.isfinite(prepared)), fmt


def test_images_over_the_pixel_limit_are_refused_before_decoding():
    big = encode(Image.new("L", (3000, 3000), 255))  # 9 MP, small as a file
    configure_pillow(max_image_pixels=5_000_000)
    try:
        # Above 1x the limit Pillow only warns; above 2x it raises: both are refused.
        with pytest.raises(InvalidImage, match="too many pixels"):
            prepare(big, SPEC)
        with pytest.raises(InvalidImage, match="too many pixels"):
            prepare(encode(Image.new("L", (4000, 4000), 255)), SPEC)
    finally:
        configure_pillow(max_image_pixels=50_000_000)


def thick_ring() -> Image.Image:
    """A 0 drawn with a marker a quarter as wide as the picture."""
    image = Image.new("L", (120, 120), 255)
    ImageDraw.Draw(image).ellipse([10, 10, 110, 110], outline=0, width=30)
    return image


def enlarged_thumbnail() -> Image.Image:
    """An 8x8 thumbnail of a box, enlarged 12x with bilinear smoothing (a low-resolution scan)."""
    small = Image.new("L", (8, 8), 255)
    ImageDraw.Draw(small).rectangle([2, 1, 5, 6], outline=0, width=2)
    return small.resize((96, 96), Image.Resampling.BILINEAR)


@pytest.mark.parametrize("picture", [thick_ring, enlarged_thumbnail], ids=["thick marker", "enlarged thumbnail"])
def test_strokes_wider_than_a_tenth_of_the_picture_stay_solid(picture):
    # The paper's lighting must not be estimated from inside the strokes (which hollows them).
    prepared = prepare(encode(picture()), SPEC)
    assert np.median(prepared[prepared > 0.2]) > 0.8


def test_formats_that_run_external_programs_are_not_opened():
    # An EPS file would make Pillow run Ghostscript (when installed): it is refused as unreadable.
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nnewpath 0 0 moveto 28 28 lineto stroke\n%%EOF\n"
    with pytest.raises(InvalidImage, match="not an image format we can read"):
        decode(eps)


def pillow_pool_in_a_fresh_process(environment: dict[str, str]) -> tuple[int, int]:
    """(freed buffers kept, bytes per buffer) after configure_pillow, in a process started as a worker is."""
    script = (
        "from PIL import Image; from service.imaging import configure_pillow; configure_pillow(50_000_000); "
        "print(Image.core.get_blocks_max(), Image.core.get_block_size())"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("PILLOW_")} | environment
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    kept, size = done.stdout.split()
    return int(kept), int(size)


def test_freed_image_buffers_are_pooled_within_16_mib():
    kept, size = pillow_pool_in_a_fresh_process({})
    assert kept > 0 and kept * size <= 16 * 2**20


def test_pillows_own_variable_decides_the_pool_when_set():
    assert pillow_pool_in_a_fresh_process({"PILLOW_BLOCKS_MAX": "3"})[0] == 3
    assert pillow_pool_in_a_fresh_process({"PILLOW_BLOCKS_MAX": "0"})[0] == 0
