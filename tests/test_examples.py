"""examples/ is what examples/make_examples.py draws: the committed files can be made again, here."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))
from make_examples import make_examples  # noqa: E402


@pytest.fixture(scope="module")
def remade(tmp_path_factory) -> dict[str, Path]:
    return {path.name: path for path in make_examples(tmp_path_factory.mktemp("examples"))}


def test_every_committed_example_is_made_by_the_script(remade):
    committed = {path.name for path in EXAMPLES.iterdir() if path.suffix in {".png", ".jpg", ".json", ".npy"}}
    assert committed == set(remade)


@pytest.mark.parametrize("name", sorted(path.name for path in EXAMPLES.glob("*.*") if path.suffix != ".py"))
def test_the_script_makes_the_committed_file_again(name, remade):
    committed, made = (EXAMPLES / name).read_bytes(), remade[name].read_bytes()
    if name.endswith((".png", ".jpg")):
        # Compared as pixels: another Pillow or zlib may encode the same picture differently.
        def pixels(data):
            return np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))), dtype=np.float32)

        assert np.abs(pixels(committed) - pixels(made)).mean() < 1.0
    else:
        assert committed == made


def test_the_photo_is_stored_sideways_with_an_exif_rotation_as_phones_do():
    photo = Image.open(EXAMPLES / "photo-3.jpg")
    assert photo.getexif()[0x0112] == 6
    assert photo.size == (1024, 768) and ImageOps.exif_transpose(photo).size == (768, 1024)


def test_the_canvas_drawing_is_transparent_where_nothing_was_drawn():
    canvas = Image.open(EXAMPLES / "canvas-2.png")
    assert canvas.mode == "RGBA" and canvas.getpixel((0, 0))[3] == 0
