"""Write the example pictures and request bodies in examples/ (run from the repository root).

    .venv/bin/python examples/make_examples.py

Everything is drawn here from pen strokes, with numpy and Pillow only: no downloaded data, no
fonts, the same files every time (a fixed random seed).  The pictures imitate what people send:

  canvas-2.png       a digit drawn in a browser canvas: black ink on a transparent background
  photo-3.jpg        a phone photo of a digit written with a ballpoint pen: uneven light, noise,
                     a slight tilt, stored sideways with an EXIF orientation tag, as phones do
  scan-4.png         a scanned pencil digit: 8-bit grayscale, paper grain, a small skew
  not-a-digit.png    a drawing that holds no digit (a smiley face)

and the numeric bodies: ``<model>.json`` ({"inputs": ...}) for each committed model, and
``digits.npy``, the three digit pictures prepared as the service prepares them (uint8 [3, 1, 28, 28]).
"""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from service.imaging import prepare  # noqa: E402  (the service's own recipe, for digits.npy)
from service.manifest import ImageSpec  # noqa: E402

# Pen strokes in a unit box (x right, y down), as a person writes them; smoothed into curves.
STROKES = {
    "2": [[(0.22, 0.30), (0.35, 0.12), (0.60, 0.08), (0.80, 0.22), (0.76, 0.42), (0.45, 0.70), (0.18, 0.92),
           (0.50, 0.90), (0.86, 0.91)]],
    "3": [[(0.20, 0.18), (0.45, 0.06), (0.74, 0.12), (0.76, 0.32), (0.48, 0.47), (0.78, 0.60), (0.80, 0.82),
           (0.52, 0.95), (0.18, 0.86)]],
    "4": [[(0.62, 0.06), (0.40, 0.38), (0.14, 0.66), (0.50, 0.66), (0.88, 0.64)], [(0.66, 0.36), (0.64, 0.96)]],
}
SMILEY = {
    "face": [[(0.5 + 0.45 * math.cos(a), 0.5 + 0.45 * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 40)]],
    "eyes": [[(0.35, 0.36), (0.35, 0.40)], [(0.65, 0.36), (0.65, 0.40)]],
    "smile": [[(0.28, 0.60), (0.40, 0.72), (0.60, 0.72), (0.72, 0.60)]],
}


def smooth(points: list[tuple[float, float]], per_segment: int = 24) -> np.ndarray:
    """A Catmull-Rom curve through ``points``: the path a pen takes through them."""
    p = np.asarray(points, dtype=float)
    if len(p) < 3:
        return np.linspace(p[0], p[-1], per_segment)
    padded = np.vstack([p[0], p, p[-1]])
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    curve = []
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1 : i + 3]
        curve.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                            + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3))
    curve.append(p[-1:])
    return np.vstack(curve)


def resample(path: np.ndarray, step: float) -> np.ndarray:
    """Points every ``step`` pixels along ``path``, so that the pen's dabs join into a line."""
    lengths = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
    at = np.arange(0.0, lengths[-1] + step, step).clip(max=lengths[-1])
    return np.column_stack([np.interp(at, lengths, path[:, 0]), np.interp(at, lengths, path[:, 1])])


def ink_layer(strokes, size: tuple[int, int], box: tuple[float, float, float, float], width: float,
              rng: np.random.Generator, jitter: float = 0.01, angle: float = 0.0, pressure: float = 0.0) -> np.ndarray:
    """Coverage in [0, 1] of pen strokes drawn into ``box`` (left, top, right, bottom in pixels).

    Drawn 4x larger and scaled down, for anti-aliased edges; ``pressure`` varies the line width
    along each stroke, ``jitter`` moves every point a little, ``angle`` tilts the whole writing.
    """
    scale = 4
    canvas = Image.new("L", (size[0] * scale, size[1] * scale), 0)
    pen = ImageDraw.Draw(canvas)
    left, top, right, bottom = box
    centre = np.array([(left + right) / 2, (top + bottom) / 2])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    for stroke in strokes:
        points = np.asarray(stroke) + rng.normal(0, jitter, size=(len(stroke), 2))
        path = smooth([tuple(point) for point in points])
        pixels = np.column_stack([left + path[:, 0] * (right - left), top + path[:, 1] * (bottom - top)])
        pixels = resample((pixels - centre) @ rotation.T + centre, step=width / 6)
        phase = rng.uniform(0, math.pi)
        step_angle = 2 * math.pi / max(1, len(pixels) / 3)  # pressure rises and falls about 3 times a stroke
        for index, (x, y) in enumerate(pixels):
            radius = width / 2 * (1 + pressure * math.sin(phase + index * step_angle)) * scale
            pen.ellipse([x * scale - radius, y * scale - radius, x * scale + radius, y * scale + radius], fill=255)
    small = canvas.resize(size, Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def canvas_drawing(rng: np.random.Generator) -> Image.Image:
    """A browser canvas export: 280x280 RGBA, black ink, transparent wherever nothing was drawn."""
    coverage = ink_layer(STROKES["2"], (280, 280), (60, 40, 220, 240), width=18, rng=rng)
    rgba = np.zeros((280, 280, 4), dtype=np.uint8)
    rgba[..., 3] = np.round(coverage * 255).astype(np.uint8)
    return Image.fromarray(rgba, "RGBA")


def phone_photo(rng: np.random.Generator) -> tuple[Image.Image, Image.Exif]:
    """A ballpoint digit on paper under a desk lamp, as a phone stores it: sideways plus EXIF rotation."""
    width, height = 768, 1024
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    # Light falling off from the top left, a soft vignette, and the shadow of the phone on one side.
    light = 1.02 - 0.22 * (x / width) * 0.6 - 0.18 * (y / height)
    light *= 1 - 0.25 * (((x - width / 2) / width) ** 2 + ((y - height / 2) / height) ** 2)
    light *= 1 - 0.12 / (1 + np.exp(-(x - 0.85 * width) / 25))
    paper = np.array([236, 231, 219], dtype=np.float32) * light[..., None]
    coverage = ink_layer(STROKES["3"], (width, height), (220, 300, 560, 760), width=15, rng=rng,
                         angle=math.radians(-6), pressure=0.25)
    ink = np.array([34, 44, 112], dtype=np.float32) * light[..., None]
    strength = 0.92 * coverage[..., None]
    photo = paper * (1 - strength) + ink * strength
    photo += rng.normal(0, 3.0, size=photo.shape)
    image = Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8), "RGB").filter(ImageFilter.GaussianBlur(0.8))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was held upright, the sensor stored the picture sideways
    return image.transpose(Image.Transpose.ROTATE_90), exif


def scanned_page(rng: np.random.Generator) -> Image.Image:
    """A pencil digit scanned in grayscale: slightly grey paper with grain, grainy strokes, a 2-degree skew."""
    width, height = 420, 480
    paper = 243 + rng.normal(0, 1.5, size=(height, width))
    coverage = ink_layer(STROKES["4"], (width, height), (120, 100, 300, 360), width=8, rng=rng,
                         angle=math.radians(2), pressure=0.15)
    grain = rng.uniform(0.55, 1.0, size=coverage.shape)
    page = paper - coverage * grain * 150
    return Image.fromarray(np.clip(page, 0, 255).astype(np.uint8), "L")


def smiley(rng: np.random.Generator) -> Image.Image:
    """Something that is not a digit: a smiley face in marker, on white, 400x400 RGB."""
    strokes = [stroke for part in SMILEY.values() for stroke in part]
    coverage = ink_layer(strokes, (400, 400), (60, 60, 340, 340), width=14, rng=rng, jitter=0.004)
    rgb = 255 - coverage[..., None] * np.array([235, 200, 40], dtype=np.float32)  # dark blue marker
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


# The numeric bodies: inputs each model was trained on, so the answers can be checked by eye.
NUMERIC_INPUTS = {
    "linear_system": [[1, 3, 2, -1], [5, 2, 1, -2], [0, 1, 2, 4], [1, 1, -1, -3]],  # A; A x = b
    "sales_regression": [[70.0, 0.1, 0.043], [90.0, 0.8, 0.064], [100.0, 0.4, 0.037]],  # income, price, tax (K)
    "sigmoid_mlp": [[1, 1, 1, 1]],
    "linear_projection": [[1, 2, 4]],
    "relu_2layer": [[1, 2, 4]],
    "cubic_approximator": [[round(float(x), 4) for x in np.linspace(-1, 1, 20)]],
}


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def make_examples(folder: Path) -> list[Path]:
    """Write every example file into ``folder``; returns their paths."""
    rng = np.random.default_rng(13)
    photo, exif = phone_photo(rng)
    files = {
        "canvas-2.png": encoded(canvas_drawing(rng), "PNG", optimize=True),
        "photo-3.jpg": encoded(photo, "JPEG", quality=85, exif=exif.tobytes()),
        "scan-4.png": encoded(scanned_page(rng), "PNG", optimize=True),
        "not-a-digit.png": encoded(smiley(rng), "PNG", optimize=True),
    }
    mnist = ImageSpec(preprocessing="mnist", height=28, width=28, channels=1)
    prepared = [prepare(files[name], mnist) for name in ("canvas-2.png", "photo-3.jpg", "scan-4.png")]
    pixels = np.round(np.stack(prepared)[:, np.newaxis] * 255).astype(np.uint8)
    buffer = io.BytesIO()
    np.save(buffer, pixels, allow_pickle=False)
    files["digits.npy"] = buffer.getvalue()
    bodies = {"mnist_mlp": np.round(prepared[0][np.newaxis, np.newaxis], 3).tolist(), **NUMERIC_INPUTS}
    for model, inputs in bodies.items():
        files[f"{model}.json"] = (json.dumps({"inputs": inputs}, separators=(",", ":")) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in files]


if __name__ == "__main__":
    for path in make_examples(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(f"{path.stat().st_size:>8,} bytes  {path}")
