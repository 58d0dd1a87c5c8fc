"""Uploaded image bytes -> the float array a model's image input expects (the MNIST recipe).

MNIST digits are light ink on a dark background, the ink scaled (keeping its aspect ratio,
anti-aliased) to fit a 20x20 box and placed in a 28x28 field so that its centre of mass sits at
the centre.  People send something else: phone photos and canvas drawings of any size, dark ink
on white paper, transparent backgrounds, off-centre digits.  ``prepare`` turns those into what
the model saw in training:

1. decode (any mode Pillow reads; EXIF rotation applied; transparency composited onto white);
2. grayscale in [0, 1], shrunk to at most ``WORKING_SIZE`` pixels for speed;
3. if the border pixels are on the light side, invert to light ink on a dark background;
4. subtract the paper's (possibly uneven) brightness and scale so the strongest ink is 1;
   anything below ``INK_FLOOR`` of that is paper shading or noise, not ink, and becomes 0;
5. crop to the ink, scale the longer side to 20 px (for 28x28; proportionally otherwise),
   pad to 28x28 and shift so the centre of mass is at the centre (index 14, as in MNIST).

An image that already is a model input (8-bit grayscale, exactly the target size, light ink on
a dark background, e.g. an MNIST sample) is used as is.  An image with no ink raises ``NoInk``
(a 4xx) rather than becoming an all-zero input that the model would classify anyway.
"""

from __future__ import annotations

import functools
import io
import os
import warnings
import zlib

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import InvalidImage, NoInk
from service.manifest import ImageSpec

# Large photos are shrunk to this longer side before any analysis: a digit needs far fewer
# pixels, and it keeps the cost of a 50-megapixel upload to one decode.
WORKING_SIZE = 1024
# Ink fainter than this fraction of the strongest ink is treated as paper shading or noise.
INK_FLOOR = 0.2
# The paper's lighting is fitted on a PAPER_GRID-pixel copy, in PAPER_FIT_ROUNDS rounds.
PAPER_GRID = 64
PAPER_FIT_ROUNDS = 3
# An image whose darkest and lightest pixels differ by less than this has nothing drawn on it.
MIN_CONTRAST = 0.1
# MNIST fits the digit in 20x20 within a 28x28 field.
MNIST_BOX_FRACTION = 20 / 28
# Pillow's pool of freed image buffers (see configure_pillow): at most 16 MiB kept per process.
PILLOW_BLOCK_SIZE = 1024 * 1024
PILLOW_BLOCKS_KEPT = 16

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}

# Everything Pillow is known to raise on bad, truncated or hostile input.  Decoding is lazy,
# so these can come from open(), load(), convert() or resize(), not only from open().
_DECODE_ERRORS = (
    UnidentifiedImageError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,  # raised, not warned: see configure_pillow
    SyntaxError,
    ValueError,
    TypeError,
    IndexError,
    EOFError,
    zlib.error,
    MemoryError,
    OSError,
)


def configure_pillow(max_image_pixels: int) -> None:
    """Process-wide Pillow limits: refuse images above ``max_image_pixels`` before decoding.

    Pillow warns between 1x and 2x its limit and raises above 2x; we make the warning an error
    so that the configured limit is the real one.
    """
    Image.MAX_IMAGE_PIXELS = max_image_pixels
    warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
    # Pillow hands every freed image buffer back to the C allocator, which returns large ones to
    # the kernel: the next photo's buffers are fresh pages, a page fault every 4 kB (a third of
    # the CPU time of a 3000x2000 JPEG, bench/imaging.py).  A small pool of freed buffers, at
    # most PILLOW_BLOCKS_KEPT x PILLOW_BLOCK_SIZE, avoids that.  Pillow's own environment
    # variables (PILLOW_BLOCKS_MAX, PILLOW_BLOCK_SIZE) still decide when set.
    if "PILLOW_BLOCKS_MAX" not in os.environ and "PILLOW_BLOCK_SIZE" not in os.environ:
        Image.core.set_block_size(PILLOW_BLOCK_SIZE)
        Image.core.set_blocks_max(PILLOW_BLOCKS_KEPT)


def prepare(data: bytes, spec: ImageSpec) -> np.ndarray:
    """Image file bytes -> float32 array [height, width] in [0, 1], light ink on dark."""
    return prepare_image(decode(data), spec)


def prepare_image(image: Image.Image, spec: ImageSpec) -> np.ndarray:
    """A decoded image -> float32 array [height, width] in [0, 1], light ink on dark."""
    if image.mode == "L" and image.size == (spec.width, spec.height) and "transparency" not in image.info:
        pixels = np.asarray(image)  # one conversion: Pillow copies the pixels out on each
        if _is_light_on_dark(pixels):  # already a model input, e.g. an MNIST sample
            return pixels.astype(np.float32) / 255.0
    return mnist_recipe(grayscale(image), spec)


# The raster formats people send (JPEG includes phone cameras' MPO files).  Naming them keeps
# Pillow from trying every plugin it has, some of which run external programs (EPS: Ghostscript).
RASTER_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "PPM", "ICO", "TGA", "PCX")


def decode(data: bytes) -> Image.Image:
    """Fully decoded, upright image; every decoding failure becomes InvalidImage."""
    if not data:
        raise InvalidImage("the image is empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data), formats=RASTER_FORMATS)
        # Ask JPEG for a reduced-size decode when the photo is far larger than we need.
        image.draft(image.mode, (WORKING_SIZE, WORKING_SIZE))
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # in place: otherwise a copy when upright
        return image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage(f"the image has too many pixels to decode safely: {exc}") from None
    except UnidentifiedImageError:
        raise InvalidImage("the data is not an image format we can read (PNG, JPEG, GIF, BMP, TIFF, WebP, ...)") from None
    except _DECODE_ERRORS as exc:
        raise InvalidImage(f"the image is damaged or truncated: {type(exc).__name__}: {exc}") from None


def grayscale(image: Image.Image) -> np.ndarray:
    """float32 [h, w] in [0, 1] (0 black), transparency composited onto white, at most WORKING_SIZE."""
    try:
        if image.mode in _SIXTEEN_BIT_MODES:
            values = np.asarray(image, dtype=np.float32) / 65535.0
        elif image.mode in ("I", "F"):
            # No fixed range: stretch to [0, 1] (the recipe is insensitive to contrast).
            values = np.asarray(image, dtype=np.float64)
            if not np.all(np.isfinite(values)):  # float TIFFs can hold them; they would reach the model
                raise InvalidImage("the image has pixels that are NaN or infinite")
            span = float(values.max() - values.min())
            values = ((values - values.min()) / (span or 1.0)).astype(np.float32)
        else:
            if image.mode in _ALPHA_MODES or "transparency" in image.info:
                # Canvas apps export black ink on transparent pixels; dropping alpha would make
                # the whole picture black, so paint it onto white paper first.
                rgba = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
            if image.mode not in ("RGB", "L"):  # (converting to its own mode would only copy)
                image = image.convert("RGB")
            if image.mode != "L":
                image = image.convert("L")
            values = np.asarray(image, dtype=np.float32)
            values /= 255.0
        if max(values.shape) > WORKING_SIZE:
            scale = WORKING_SIZE / max(values.shape)
            size = (max(1, round(values.shape[1] * scale)), max(1, round(values.shape[0] * scale)))
            values = np.asarray(Image.fromarray(values).resize(size, Image.Resampling.BOX))
        return values
    except _DECODE_ERRORS as exc:
        raise InvalidImage(f"the image cannot be converted: {type(exc).__name__}: {exc}") from None


def mnist_recipe(gray: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """Grayscale [0, 1] of any size -> [spec.height, spec.width], MNIST style."""
    ink = ink_map(gray)
    inked = ink > 0
    rows = np.flatnonzero(inked.any(axis=1))
    cols = np.flatnonzero(inked.any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    box = max(1, round(min(spec.height, spec.width) * MNIST_BOX_FRACTION))
    scale = box / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    digit = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS))
    digit = np.clip(digit, 0.0, 1.0)
    return _place_by_centre_of_mass(digit, spec.height, spec.width)


def ink_map(gray: np.ndarray) -> np.ndarray:
    """Light-on-dark ink in [0, 1] with the background at 0; NoInk when there is none."""
    low, high = float(gray.min()), float(gray.max())
    if high - low < MIN_CONTRAST:
        raise NoInk("no ink found: the image is blank (a single shade)")
    # Every full-size step below writes into ``ink``: a fresh array per step would cost more in
    # allocation and memory traffic than the arithmetic done in it.
    if _border_median(gray) > (low + high) / 2:  # light paper: make the ink bright, like MNIST
        ink = np.subtract(1.0, gray, dtype=np.float32)
    else:
        ink = gray.astype(np.float32)
    ink -= paper_level(ink)
    strongest = float(ink.max())
    if strongest < MIN_CONTRAST:
        raise NoInk("no ink found: nothing stands out from the background")
    ink /= strongest  # at most 1 now: no value exceeds the strongest
    np.maximum(ink, 0.0, out=ink)
    # A multiplication, not ``ink[ink < INK_FLOOR] = 0``: a masked store costs several times more.
    ink *= ink >= INK_FLOOR
    return ink


def paper_level(gray: np.ndarray) -> np.ndarray:
    """The background brightness under every pixel (ink bright, paper dark).

    Photographed paper is unevenly lit, so one background value would leave its brighter side
    looking like ink.  The lighting is a smooth surface (a quadratic in x and y) fitted to the
    paper alone, on a small copy: each round splits the pixels into paper and ink by Otsu's
    threshold on what the previous surface leaves, and refits on the paper.  A local minimum
    filter, the earlier estimate, took the inside of strokes wider than its window for paper,
    which hollowed thick, blurred and enlarged low-resolution digits.
    """
    height, width = gray.shape
    scale = PAPER_GRID / max(height, width)
    small_width, small_height = max(1, round(width * scale)), max(1, round(height * scale))
    small = Image.fromarray(gray).resize((small_width, small_height), Image.Resampling.BOX)
    values = np.asarray(small, dtype=np.float64).ravel()
    # Least squares by the normal equations (6x6; numpy's lstsq is 40x slower on this size), the
    # first round on every pixel.  Later rounds take the ink's share away from the whole grid's
    # sums, cheaper than summing the paper's: the ink is usually the smaller part.
    design, normal = _quadratic_design(small_height, small_width)
    moments = design.T @ values
    coefficients = np.linalg.solve(normal, moments)
    for _ in range(PAPER_FIT_ROUNDS - 1):
        residual = values - design @ coefficients
        ink = residual > _otsu_threshold(residual)
        chosen = np.compress(ink, design, axis=0)
        coefficients = np.linalg.solve(normal - chosen.T @ chosen, moments - chosen.T @ values[ink])
    # The surface on the small grid, scaled up bilinearly: x and y separate, so scaling up the
    # columns [1, x, x^2] and [1, y, y^2] and multiplying costs a fraction of resizing the grid.
    one, x, y, xx, xy, yy = coefficients
    weights = np.array([[one, x, xx], [y, xy, 0.0], [yy, 0.0, 0.0]])
    rows = _bilinear_powers(small_height, height)
    cols = _bilinear_powers(small_width, width)
    # einsum, not matmul: BLAS would start threads for a large image, which costs far more
    # than it saves on a busy machine.
    return np.einsum("ik,kj->ij", (rows.T @ weights).astype(np.float32), cols)


@functools.lru_cache(maxsize=64)
def _axis_powers(count: int) -> np.ndarray:
    """[count, 3]: 1, t and t^2 for ``count`` points t spread over [-1, 1] (as _quadratic_design)."""
    t = np.arange(count, dtype=np.float64) * (2.0 / max(count - 1, 1)) - 1.0
    powers = np.stack([np.ones_like(t), t, t * t], axis=-1)
    powers.setflags(write=False)
    return powers


@functools.lru_cache(maxsize=64)
def _bilinear_powers(count: int, size: int) -> np.ndarray:
    """_axis_powers(count) scaled up to ``size`` points by Pillow's bilinear resize, float32 [3, size]."""
    powers = Image.fromarray(np.ascontiguousarray(_axis_powers(count).T, dtype=np.float32))
    scaled = np.asarray(powers.resize((size, 3), Image.Resampling.BILINEAR))
    scaled.setflags(write=False)
    return scaled


# The grid's longer side is always PAPER_GRID, so its shapes are few (one per aspect ratio of
# the uploads); each table is 200 kB, so only the recent ones are kept.
@functools.lru_cache(maxsize=16)
def _quadratic_design(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows [1, x, y, x^2, xy, y^2] for every pixel of a height x width grid, x and y in [-1, 1],
    and their normal matrix with a small ridge (it keeps the fit solvable when few pixels are paper)."""
    y, x = np.meshgrid(_axis_powers(height)[:, 1], _axis_powers(width)[:, 1], indexing="ij")
    design = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1).reshape(-1, 6)
    normal = design.T @ design + 1e-6 * len(design) * np.eye(6)
    design.setflags(write=False)
    normal.setflags(write=False)
    return design, normal


def _otsu_threshold(values: np.ndarray, bins: int = 64) -> float:
    """The value that best splits ``values`` into two classes (Otsu 1979: most between-class variance)."""
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(counts)[:-1].astype(np.float64)
    above = len(values) - below
    mass_below = np.cumsum(counts * centres)[:-1]
    between = (mass_below * len(values) - below * float(np.sum(counts * centres))) ** 2 / np.maximum(below * above, 1)
    return float(edges[int(np.argmax(between)) + 1])


def _place_by_centre_of_mass(digit: np.ndarray, height: int, width: int) -> np.ndarray:
    """Paste ``digit`` into a zero field so its centre of mass lands at (height/2, width/2)."""
    mass = float(digit.sum())
    if mass <= 0:
        raise NoInk("no ink found: the ink vanished when scaled to the model's size")
    centre_row = float((digit.sum(axis=1) * np.arange(digit.shape[0])).sum()) / mass
    centre_col = float((digit.sum(axis=0) * np.arange(digit.shape[1])).sum()) / mass
    # Keep the whole digit in the field even when its mass is far from its middle.
    top = int(np.clip(round(height / 2 - centre_row), 0, height - digit.shape[0]))
    left = int(np.clip(round(width / 2 - centre_col), 0, width - digit.shape[1]))
    field = np.zeros((height, width), dtype=np.float32)
    field[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    return field


def _is_light_on_dark(pixels: np.ndarray) -> bool:
    """8-bit pixels with light ink on a dark background, as MNIST has them."""
    low, high = int(pixels.min()), int(pixels.max())
    if high - low < MIN_CONTRAST * 255:
        raise NoInk("no ink found: the image is blank (a single shade)")
    return _border_median(pixels) <= (low + high) / 2


def _border_median(pixels: np.ndarray) -> float:
    """The median of the outermost rows and columns, from a sort: np.median costs ten times more."""
    border = np.sort(np.concatenate([pixels[0, :], pixels[-1, :], pixels[:, 0], pixels[:, -1]]))
    return (float(border[(border.size - 1) // 2]) + float(border[border.size // 2])) / 2
