"""The request bodies the benchmarks send: one digit as a PNG, a batch of 64 digits as JSON, as
float32 .npy and as uint8 .npy, and a phone photo of a digit on paper (bench/overload.py).

The digits are drawn with Pillow's built-in font, so the benchmark needs no data set; the
throughput of an MLP does not depend on what the pixels show.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SIDE = 28


def drawn_digit(digit: int, size: int) -> Image.Image:
    """A dark digit on a white square, like a drawing-app export."""
    image = Image.new("L", (size, size), color=255)
    font = ImageFont.load_default(size=int(size * 0.8))
    ImageDraw.Draw(image).text((size / 2, size / 2), str(digit), fill=0, font=font, anchor="mm")
    return image


def phone_photo(width: int = 3000, height: int = 2000, quality: int = 92) -> bytes:
    """A JPEG like a phone photo of a dark "7" on unevenly lit paper, with sensor noise.

    3000x2000 at quality 92 is about 1.3 MB, the size of a real 6-megapixel photo; the noise is
    what makes it that large (a clean synthetic picture compresses to a fifth of it).
    """
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    lighting = 200 + 40 * (cols / width) - 25 * (rows / height)
    paper = Image.fromarray(np.clip(lighting, 0, 255).astype(np.uint8))
    font = ImageFont.load_default(size=int(height * 0.55))
    ImageDraw.Draw(paper).text((width / 2, height / 2), "7", fill=40, font=font, anchor="mm")
    scene = np.asarray(paper.filter(ImageFilter.GaussianBlur(3)), dtype=np.float32)
    channels = [
        Image.fromarray(np.clip(scene * tint + rng.normal(0, 5, scene.shape), 0, 255).astype(np.uint8))
        for tint in (1.0, 0.97, 0.9)
    ]
    buffer = io.BytesIO()
    Image.merge("RGB", channels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def mnist_like_batch(count: int) -> np.ndarray:
    """[count, 1, 28, 28] uint8, light ink on black like MNIST."""
    digits = [255 - np.asarray(drawn_digit(i % 10, SIDE)) for i in range(count)]
    return np.stack(digits)[:, None, :, :].astype(np.uint8)


@dataclass(frozen=True)
class Body:
    name: str
    path: str  # the service's route; the torch baseline serves the same routes
    content_type: str
    data: bytes
    images: int


def bodies(model: str, batch: int) -> list[Body]:
    """Every request the benchmark times, one per input encoding."""
    pixels = mnist_like_batch(batch)
    as_float = (pixels / np.float32(255)).astype(np.float32)
    batch_path = f"/models/{model}/predict"
    return [
        Body("png, 1", "/predict", "image/png", png_bytes(drawn_digit(7, 280)), 1),
        # What a naive client sends: every float32 value written out by json.dumps.
        Body(f"json, {batch}", batch_path, "application/json",
             json.dumps({"inputs": as_float.tolist()}).encode(), batch),
        Body(f"npy f32, {batch}", batch_path, "application/x-npy", npy_bytes(as_float), batch),
        Body(f"npy uint8, {batch}", batch_path, "application/x-npy", npy_bytes(pixels), batch),
    ]
