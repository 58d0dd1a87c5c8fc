"""Synthetic pictures that are not digits, drawn as people would send them (dark ink on white).

Outlier exposure (Hendrycks et al. 2019) needs examples of what is not a digit, and the verdict
needs some to choose and check its thresholds on.  No digit data set other than MNIST's training
images is used anywhere in training, so these are drawn here: letters rendered from the fonts on
the machine and distorted like handwriting, other symbols, polygons, loose strokes, scribbles,
hatching, crosses, ticks, noise, textures, arrows and simple drawings (a smiley, a house, a sun, a
tree, a fish, a flower, a cloud, an envelope: ``TRAINING_KINDS``), and, for evaluation only, kinds
training never sees: words, stars, spirals, zigzags and drawings of other objects (a heart, a cup,
an umbrella, a ladder, a car, a bell: ``EVALUATION_KINDS``).

Letters a person could read as a digit (O, I, S, Z, B, G, ...) are left out: teaching the model
that an "O" is not a digit would teach it to doubt every 0.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFilter, ImageFont

CANVAS = 96
# Shapes that a reader could take for a digit are not drawn: O Q D (0), I J L T (1, 7), S (5),
# Z (2), B (8, 3), G (6), and their lowercase look-alikes.
CAPITALS = "ACEFHKMNPRUVWXY"
# Greek and Cyrillic letters, mathematical signs and other symbols, again none that reads as a digit.
SYMBOLS = "ΓΔΛΞΠΣΦΨΩαγεηκλμπρτφψωГДЖИЙЛПФЦШЩЪЫЮЯжилпфцшщыюя∑∫√≠±×÷≈∩∪⊂∈∀∃∂∇#%&@¶~=<>{}[]^"
WORD_LETTERS = "acdefhkmnprtuvwxy"
WORDS = (
    "cat",
    "dog",
    "hello",
    "yes",
    "no",
    "help",
    "name",
    "wave",
    "drum",
    "apex",
    "quack",
    "fern",
    "tax",
    "vex",
    "hymn",
    "when",
    "where",
    "cheap",
    "water",
    "mark",
    "pen",
    "ink",
    "draw",
    "mute",
)
# Fonts every Debian image has; handwriting fonts (fonts-dkg-handwriting, fonts-breip, ...) are
# used only for evaluation (see training.evaluate), never here.
TRAINING_FONT_FOLDERS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/liberation")
ALL_FONT_FOLDERS = ("/usr/share/fonts",)  # words (an evaluation kind) are written in every font found

Drawer = Callable[[ImageDraw.ImageDraw, np.random.Generator, Image.Image], None]


@cache
def font_files(folders: tuple[str, ...] = TRAINING_FONT_FOLDERS) -> tuple[str, ...]:
    """The .ttf/.otf files in ``folders`` (sorted, so the same machine draws the same set)."""
    found = sorted(str(path) for folder in folders for path in Path(folder).rglob("*.[ot]tf"))
    # Symbol and maths fonts have no ordinary letters.
    return tuple(path for path in found if "Math" not in path)


@cache
def _characters(font: str) -> frozenset[str]:
    # fontTools logs harmless complaints about some fonts' tables ("extra bytes in post.stringData").
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    return frozenset(chr(code) for code in TTFont(font, fontNumber=0, lazy=True).getBestCmap())


def _font(rng: np.random.Generator, fonts: tuple[str, ...], size: int, text: str) -> ImageFont.FreeTypeFont:
    """A random font among ``fonts`` that has every character of ``text`` (no missing-glyph boxes)."""
    usable = [font for font in fonts if set(text) <= _characters(font)]
    if not usable:
        return ImageFont.load_default(size=size)  # Pillow's own font, when a machine has none
    return ImageFont.truetype(usable[int(rng.integers(len(usable)))], size=size)


def _pen(rng: np.random.Generator) -> int:
    return int(rng.integers(3, 11))


def _points(rng: np.random.Generator, count: int, margin: float = 0.15) -> list[tuple[float, float]]:
    return [tuple(rng.uniform(margin, 1 - margin, 2) * CANVAS) for _ in range(count)]


def _smooth(points: list[tuple[float, float]], steps: int = 8) -> list[tuple[float, float]]:
    """A Catmull-Rom curve through ``points``: the path a hand takes between them."""
    padded = [points[0], *points, points[-1]]
    curve = []
    for p0, p1, p2, p3 in zip(padded, padded[1:], padded[2:], padded[3:], strict=False):
        for t in np.linspace(0, 1, steps, endpoint=False):
            curve.append(
                tuple(
                    0.5 * (2 * b + (-a + c) * t + (2 * a - 5 * b + 4 * c - d) * t**2 + (-a + 3 * b - 3 * c + d) * t**3)
                    for a, b, c, d in zip(p0, p1, p2, p3, strict=True)
                )
            )
    return [*curve, points[-1]]


def _text(draw: ImageDraw.ImageDraw, rng: np.random.Generator, text: str, fonts: tuple[str, ...]) -> None:
    size = int(rng.integers(40, 80)) if len(text) == 1 else int(rng.integers(18, 34))
    font = _font(rng, fonts, size, text)
    draw.text(
        (CANVAS / 2, CANVAS / 2),
        text,
        fill=0,
        font=font,
        anchor="mm",
        stroke_width=int(rng.integers(0, 3)),
        stroke_fill=0,
    )


def capital(draw, rng, image):
    _text(draw, rng, CAPITALS[int(rng.integers(len(CAPITALS)))], font_files())


def symbol(draw, rng, image):
    _text(draw, rng, SYMBOLS[int(rng.integers(len(SYMBOLS)))], font_files())


def polygon(draw, rng, image):
    """A triangle, a box, a pentagon ... (no circles or ellipses: those are zeros)."""
    corners = int(rng.integers(3, 6))
    centre, radius = rng.uniform(0.4, 0.6, 2) * CANVAS, rng.uniform(0.25, 0.4) * CANVAS
    turn = rng.uniform(0, 2 * math.pi)
    points = [
        (
            centre[0] + radius * rng.uniform(0.7, 1.1) * math.cos(turn + 2 * math.pi * i / corners),
            centre[1] + radius * rng.uniform(0.7, 1.1) * math.sin(turn + 2 * math.pi * i / corners),
        )
        for i in range(corners)
    ]
    if rng.random() < 0.3:
        draw.polygon(points, fill=0)
    else:
        draw.line([*points, points[0]], fill=0, width=_pen(rng), joint="curve")


def strokes(draw, rng, image):
    """Three to five straight strokes anywhere, touching or not (two can make a 7 or an L)."""
    pen = _pen(rng)
    for _ in range(int(rng.integers(3, 6))):
        draw.line(_points(rng, 2), fill=0, width=pen)


def scribble(draw, rng, image):
    draw.line(_smooth(_points(rng, int(rng.integers(7, 16)))), fill=0, width=_pen(rng), joint="curve")


def hatching(draw, rng, image):
    angle = rng.uniform(0, math.pi)
    for direction in [angle] + ([angle + rng.uniform(0.6, 2.5)] if rng.random() < 0.5 else []):
        dx, dy = math.cos(direction), math.sin(direction)
        lines, gap, pen = int(rng.integers(4, 10)), rng.uniform(6, 12), _pen(rng) // 2 + 1
        for i in range(lines):
            offset = (i - lines / 2) * gap
            cx, cy = CANVAS / 2 - dy * offset, CANVAS / 2 + dx * offset
            half = CANVAS * 0.35
            draw.line([(cx - dx * half, cy - dy * half), (cx + dx * half, cy + dy * half)], fill=0, width=pen)


def cross(draw, rng, image):
    centre = rng.uniform(0.4, 0.6, 2) * CANVAS
    angle = rng.uniform(0, math.pi / 2) if rng.random() < 0.5 else math.pi / 4 + rng.normal(0, 0.15)
    pen = _pen(rng)
    for direction in (angle, angle + math.pi / 2 + rng.normal(0, 0.2)):
        half = rng.uniform(0.25, 0.4) * CANVAS
        dx, dy = math.cos(direction) * half, math.sin(direction) * half
        draw.line([(centre[0] - dx, centre[1] - dy), (centre[0] + dx, centre[1] + dy)], fill=0, width=pen)


def tick(draw, rng, image):
    low = (rng.uniform(0.35, 0.5) * CANVAS, rng.uniform(0.7, 0.85) * CANVAS)
    start = (rng.uniform(0.15, 0.3) * CANVAS, rng.uniform(0.45, 0.6) * CANVAS)
    end = (rng.uniform(0.75, 0.9) * CANVAS, rng.uniform(0.1, 0.25) * CANVAS)
    draw.line(_smooth([start, low, end], steps=4), fill=0, width=_pen(rng), joint="curve")


def noise(draw, rng, image):
    shape = (CANVAS, CANVAS)
    choice = rng.integers(3)
    if choice == 0:
        pixels = rng.uniform(0, 255, shape)
    elif choice == 1:
        pixels = np.clip(rng.normal(128, rng.uniform(30, 90), shape), 0, 255)
    else:
        pixels = np.where(rng.random(shape) < rng.uniform(0.05, 0.5), 0, 255)
    image.paste(Image.fromarray(pixels.astype(np.uint8)))


def texture(draw, rng, image):
    choice = rng.integers(3)
    step = int(rng.integers(6, 16))
    if choice == 0:  # checkerboard
        y, x = np.mgrid[0:CANVAS, 0:CANVAS] // step
        image.paste(Image.fromarray(np.where((x + y) % 2 == 0, 0, 255).astype(np.uint8)))
    elif choice == 1:  # dots
        radius = step / 4
        for cy in range(step // 2, CANVAS, step):
            for cx in range(step // 2, CANVAS, step):
                draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=0)
    else:  # random blocks
        for _ in range(int(rng.integers(8, 30))):
            x0, y0 = rng.uniform(0, CANVAS, 2)
            draw.rectangle([x0, y0, x0 + rng.uniform(3, 20), y0 + rng.uniform(3, 20)], fill=0)


def word(draw, rng, image):
    fonts = font_files(ALL_FONT_FOLDERS)
    if rng.random() < 0.5:
        text = WORDS[int(rng.integers(len(WORDS)))]
    else:
        text = "".join(WORD_LETTERS[int(i)] for i in rng.integers(len(WORD_LETTERS), size=int(rng.integers(3, 7))))
    _text(draw, rng, text, fonts)


def star(draw, rng, image):
    points = int(rng.integers(5, 8))
    centre, outer = rng.uniform(0.45, 0.55, 2) * CANVAS, rng.uniform(0.3, 0.4) * CANVAS
    inner, turn = outer * rng.uniform(0.35, 0.5), rng.uniform(0, math.pi)
    corners = [
        (centre[0] + r * math.cos(turn + i * math.pi / points), centre[1] + r * math.sin(turn + i * math.pi / points))
        for i, r in enumerate([outer, inner] * points)
    ]
    if rng.random() < 0.5:
        draw.polygon(corners, fill=0)
    else:
        draw.line([*corners, corners[0]], fill=0, width=_pen(rng) // 2 + 2, joint="curve")


def arrow(draw, rng, image):
    angle, pen = rng.uniform(0, 2 * math.pi), _pen(rng)
    half = rng.uniform(0.3, 0.4) * CANVAS
    dx, dy = math.cos(angle), math.sin(angle)
    tail = (CANVAS / 2 - dx * half, CANVAS / 2 - dy * half)
    head = (CANVAS / 2 + dx * half, CANVAS / 2 + dy * half)
    draw.line([tail, head], fill=0, width=pen)
    barb = rng.uniform(0.3, 0.45) * half
    for side in (-1, 1):
        spread = angle + math.pi + side * rng.uniform(0.4, 0.7)
        draw.line([head, (head[0] + math.cos(spread) * barb, head[1] + math.sin(spread) * barb)], fill=0, width=pen)


def spiral(draw, rng, image):
    turns, direction = rng.uniform(2, 4), rng.choice([-1, 1])
    t = np.linspace(0, turns * 2 * math.pi, 200)
    radius = t / t[-1] * rng.uniform(0.3, 0.42) * CANVAS
    start = rng.uniform(0, 2 * math.pi)
    path = list(
        zip(
            CANVAS / 2 + radius * np.cos(start + direction * t),
            CANVAS / 2 + radius * np.sin(start + direction * t),
            strict=True,
        )
    )
    draw.line(path, fill=0, width=_pen(rng) // 2 + 2, joint="curve")


def _outline(draw: ImageDraw.ImageDraw, rng: np.random.Generator, pen: int, points: list[tuple[float, float]]) -> None:
    """A closed shape through ``points`` (fractions of the canvas), each corner a little off, as a hand draws it."""
    wobbly = [((x + rng.normal(0, 0.015)) * CANVAS, (y + rng.normal(0, 0.015)) * CANVAS) for x, y in points]
    draw.line([*wobbly, wobbly[0]], fill=0, width=pen, joint="curve")


def _box(rng: np.random.Generator, left: float, top: float, right: float, bottom: float) -> list[float]:
    """The box (fractions of the canvas) moved and resized a little; never turned inside out."""
    dx, dy = rng.normal(0, 0.015, 2)
    grow = rng.uniform(0.9, 1.1)
    cx, cy, half_w, half_h = (left + right) / 2 + dx, (top + bottom) / 2 + dy, (right - left) / 2, (bottom - top) / 2
    return [(cx - half_w * grow) * CANVAS, (cy - half_h * grow) * CANVAS, (cx + half_w * grow) * CANVAS, (cy + half_h * grow) * CANVAS]


# Simple drawings, as motifs: the training kind "drawing" uses the first group, the evaluation kind
# "object" the second, so that the figure on objects measures pictures of a kind training never saw.
def _smiley(draw, rng, pen):
    draw.ellipse(_box(rng, 0.15, 0.15, 0.85, 0.85), outline=0, width=pen)
    for x in (0.38, 0.62):
        draw.ellipse(_box(rng, x - 0.05, 0.35, x + 0.05, 0.45), fill=0)
    if rng.random() < 0.7:  # a smile: the lower half of a circle
        draw.arc(_box(rng, 0.32, 0.4, 0.68, 0.7), 20, 160, fill=0, width=pen)
    else:  # a frown: the upper half, lower down
        draw.arc(_box(rng, 0.32, 0.6, 0.68, 0.85), 200, 340, fill=0, width=pen)


def _house(draw, rng, pen):
    draw.rectangle(_box(rng, 0.25, 0.45, 0.75, 0.85), outline=0, width=pen)
    draw.line([(0.2 * CANVAS, 0.48 * CANVAS), (0.5 * CANVAS, 0.15 * CANVAS), (0.8 * CANVAS, 0.48 * CANVAS)], fill=0, width=pen)
    draw.rectangle(_box(rng, 0.44, 0.65, 0.56, 0.85), outline=0, width=pen)


def _sun(draw, rng, pen):
    c = CANVAS
    draw.ellipse(_box(rng, 0.35, 0.35, 0.65, 0.65), outline=0, width=pen)
    for k in range(int(rng.integers(6, 12))):
        a = k * 2 * math.pi / 8 + rng.normal(0, 0.1)
        inner, outer = (c / 2 + 0.2 * c * math.cos(a), c / 2 + 0.2 * c * math.sin(a)), (c / 2 + 0.4 * c * math.cos(a), c / 2 + 0.4 * c * math.sin(a))
        draw.line([inner, outer], fill=0, width=pen)


def _tree(draw, rng, pen):
    c = CANVAS
    draw.line([(0.5 * c, 0.9 * c), (0.5 * c, 0.55 * c)], fill=0, width=pen + 2)
    draw.ellipse(_box(rng, 0.25, 0.1, 0.75, 0.6), outline=0, width=pen)
    if rng.random() < 0.5:
        draw.line([(0.5 * c, 0.7 * c), (0.35 * c, 0.55 * c)], fill=0, width=pen)
    else:
        draw.line([(0.3 * c, 0.9 * c), (0.7 * c, 0.9 * c)], fill=0, width=pen)  # the ground


def _fish(draw, rng, pen):
    draw.ellipse(_box(rng, 0.15, 0.3, 0.7, 0.7), outline=0, width=pen)
    _outline(draw, rng, pen, [(0.68, 0.5), (0.88, 0.3), (0.88, 0.7)])
    draw.ellipse(_box(rng, 0.27, 0.42, 0.33, 0.48), fill=0)


def _flower(draw, rng, pen):
    c, petals = CANVAS, int(rng.integers(5, 8))
    for k in range(petals):
        a = 2 * math.pi * k / petals
        x, y = 0.5 + 0.17 * math.cos(a), 0.38 + 0.17 * math.sin(a)
        draw.ellipse(_box(rng, x - 0.09, y - 0.09, x + 0.09, y + 0.09), outline=0, width=max(2, pen // 2))
    draw.line([(0.5 * c, 0.55 * c), (0.5 * c, 0.92 * c)], fill=0, width=pen)
    draw.line([(0.5 * c, 0.75 * c), (0.66 * c, 0.66 * c)], fill=0, width=pen)


def _cloud(draw, rng, pen):
    for x, y, r in ((0.3, 0.55, 0.15), (0.5, 0.45, 0.2), (0.7, 0.55, 0.15)):
        draw.arc(_box(rng, x - r, y - r, x + r, y + r), 150, 30, fill=0, width=pen)
    draw.line([(0.15 * CANVAS, 0.68 * CANVAS), (0.85 * CANVAS, 0.68 * CANVAS)], fill=0, width=pen)


def _envelope(draw, rng, pen):
    draw.rectangle(_box(rng, 0.12, 0.28, 0.88, 0.72), outline=0, width=pen)
    draw.line([(0.12 * CANVAS, 0.28 * CANVAS), (0.5 * CANVAS, 0.55 * CANVAS), (0.88 * CANVAS, 0.28 * CANVAS)], fill=0, width=pen)


def _heart(draw, rng, pen):
    t = np.linspace(0, 2 * math.pi, 120)
    x, y = 16 * np.sin(t) ** 3, 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    path = list(zip(CANVAS / 2 + x * CANVAS / 40, CANVAS / 2 - y * CANVAS / 40, strict=True))
    if rng.random() < 0.3:
        draw.polygon(path, fill=0)
    else:
        draw.line(path, fill=0, width=pen, joint="curve")


def _cup(draw, rng, pen):
    _outline(draw, rng, pen, [(0.25, 0.25), (0.65, 0.25), (0.6, 0.8), (0.3, 0.8)])
    draw.arc(_box(rng, 0.55, 0.35, 0.82, 0.62), 270, 90, fill=0, width=pen)


def _umbrella(draw, rng, pen):
    c = CANVAS
    draw.chord(_box(rng, 0.12, 0.15, 0.88, 0.75), 180, 360, outline=0, width=pen)
    draw.line([(0.5 * c, 0.45 * c), (0.5 * c, 0.8 * c)], fill=0, width=pen)
    draw.arc(_box(rng, 0.36, 0.72, 0.5, 0.88), 0, 180, fill=0, width=pen)


def _ladder(draw, rng, pen):
    c = CANVAS
    for x in (0.32, 0.68):
        draw.line([(x * c, 0.1 * c), (x * c, 0.9 * c)], fill=0, width=pen)
    for k in range(int(rng.integers(3, 6))):
        y = 0.2 + k * 0.6 / 4
        draw.line([(0.32 * c, y * c), (0.68 * c, y * c)], fill=0, width=max(2, pen - 2))


def _car(draw, rng, pen):
    _outline(draw, rng, pen, [(0.1, 0.65), (0.1, 0.5), (0.3, 0.5), (0.4, 0.3), (0.65, 0.3), (0.75, 0.5), (0.9, 0.5), (0.9, 0.65)])
    for x in (0.28, 0.72):
        draw.ellipse(_box(rng, x - 0.08, 0.6, x + 0.08, 0.76), outline=0, width=pen)


def _bell(draw, rng, pen):
    _outline(draw, rng, pen, [(0.5, 0.15), (0.65, 0.25), (0.7, 0.6), (0.85, 0.72), (0.15, 0.72), (0.3, 0.6), (0.35, 0.25)])
    draw.ellipse(_box(rng, 0.45, 0.74, 0.55, 0.84), fill=0)


DRAWING_MOTIFS = (_smiley, _house, _sun, _tree, _fish, _flower, _cloud, _envelope)
OBJECT_MOTIFS = (_heart, _cup, _umbrella, _ladder, _car, _bell)


def drawing(draw, rng, image):
    DRAWING_MOTIFS[int(rng.integers(len(DRAWING_MOTIFS)))](draw, rng, _pen(rng) // 2 + 2)


def thing(draw, rng, image):
    OBJECT_MOTIFS[int(rng.integers(len(OBJECT_MOTIFS)))](draw, rng, _pen(rng) // 2 + 2)


def zigzag(draw, rng, image):
    """A zigzag or a wave of four to eight strokes across the picture."""
    corners = int(rng.integers(5, 10))
    height, middle = rng.uniform(0.1, 0.25), rng.uniform(0.4, 0.6)
    points = [(0.1 + 0.8 * i / (corners - 1), middle + height * (-1) ** i) for i in range(corners)]
    points = [(x * CANVAS, y * CANVAS) for x, y in points]
    draw.line(_smooth(points, steps=4) if rng.random() < 0.5 else points, fill=0, width=_pen(rng), joint="curve")


TRAINING_KINDS: dict[str, Drawer] = {
    "capital letter": capital,
    "symbol": symbol,
    "polygon": polygon,
    "strokes": strokes,
    "scribble": scribble,
    "hatching": hatching,
    "cross": cross,
    "tick": tick,
    "noise": noise,
    "texture": texture,
    "arrow": arrow,
    "drawing": drawing,
}
EVALUATION_KINDS: dict[str, Drawer] = {
    "word": word,
    "star": star,
    "spiral": spiral,
    "zigzag": zigzag,
    "object": thing,
}


def draw(kind: str, rng: np.random.Generator) -> np.ndarray:
    """One picture of ``kind``: uint8 [CANVAS, CANVAS], dark ink on white, distorted like a hand."""
    drawer = {**TRAINING_KINDS, **EVALUATION_KINDS}[kind]
    image = Image.new("L", (CANVAS, CANVAS), 255)
    drawer(ImageDraw.Draw(image), rng, image)
    return handwritten(image, rng)


def handwritten(image: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """A hand is never straight: a small rotation and slant, and now and then a soft pen."""
    angle, shear = rng.uniform(-15, 15), rng.uniform(-0.25, 0.25)
    image = image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=255)
    image = image.transform(
        image.size,
        Image.Transform.AFFINE,
        (1, shear, -shear * CANVAS / 2, 0, 1, 0),
        resample=Image.Resampling.BILINEAR,
        fillcolor=255,
    )
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    return np.asarray(image)


def pictures(kinds: list[str] | tuple[str, ...], count: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """``count`` pictures, kinds taken in turn: uint8 [count, CANVAS, CANVAS] and each one's kind."""
    rng = np.random.default_rng(seed)
    chosen = [kinds[i % len(kinds)] for i in range(count)]
    return np.stack([draw(kind, rng) for kind in chosen]), chosen
