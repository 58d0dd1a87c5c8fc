"""Client data -> float32 arrays checked against a model's input signature.

JSON numbers arrive as nested Python lists that may hold anything: null, strings, booleans,
objects, ragged rows, numbers too large for float32.  ``from_json`` walks them once and names
the first offending position; ``from_npy`` reads the compact binary form, and ``from_array`` is
its dtype rule (float32, or uint8 pixels for image inputs) for any protocol's binary arrays.
``fit_to_spec`` then checks the shape against the manifest (batch axis -1 free, the other axes
fixed), the pixel values of an image input against its declared range, and adds the batch axis to
a single unbatched sample.  Nothing here knows HTTP.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from itertools import chain

import numpy as np

from service.errors import InvalidInput, MalformedRequest, TooLarge
from service.manifest import ImageSpec, TensorSpec

FLOAT32_MAX = float(np.finfo(np.float32).max)
# No model here has more axes than this; deeper nesting is an error, not a recursion crash.
MAX_DIMENSIONS = 8


def from_json(value: object, where: str = "inputs") -> np.ndarray:
    """A rectangular nested list of finite numbers -> float32 array; InvalidInput otherwise."""
    array = _plain_numbers(value)
    if array is None:  # something is off: walk the value to name the first offending position
        shape = _shape_of(value, where, depth=0)
        array = np.array(value, dtype=np.float64) if shape else np.array(float(value), dtype=np.float64)
    return _finite_float32(array, where)


_PLAIN_NUMBER_TYPES = {int, float}


def _plain_numbers(value: object) -> np.ndarray | None:
    """The common case in one numpy call: a rectangular list of ints and floats; None for anything else.

    A 64-image batch is 50,000 numbers, and walking them with ``_shape_of`` costs more than
    parsing the JSON.  numpy alone is not enough, since it quietly turns booleans, numeric
    strings and null into numbers, so the leaves' types are checked here too.
    """
    if not isinstance(value, list):
        return None
    try:
        array = np.array(value, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        return None
    if array.size == 0 or array.ndim > MAX_DIMENSIONS:
        return None
    rows = [value]
    for _ in range(array.ndim - 1):
        rows = [item for row in rows for item in row]
    # The leaves' types, collected in C (a generator over 784 leaves costs more than the inference).
    if set(map(type, chain.from_iterable(rows))) <= _PLAIN_NUMBER_TYPES:
        return array
    return None


def _shape_of(value: object, where: str, depth: int) -> tuple[int, ...]:
    """The shape of a nested list, checking every leaf is a number and every row the same length."""
    if depth > MAX_DIMENSIONS:
        raise InvalidInput(f"{where} is nested more than {MAX_DIMENSIONS} levels deep")
    if isinstance(value, bool) or value is None or isinstance(value, (str, dict)):
        raise InvalidInput(f"{where} is {_kind(value)}; expected a number or a list of numbers")
    if isinstance(value, (int, float)):
        if isinstance(value, int) and abs(value) > FLOAT32_MAX:
            raise InvalidInput(f"{where} = {value} is too large for float32")
        return ()
    if not isinstance(value, list):
        raise InvalidInput(f"{where} is {_kind(value)}; expected a number or a list of numbers")
    if not value:
        raise InvalidInput(f"{where} is an empty list")
    shapes = [_shape_of(item, f"{where}[{index}]", depth + 1) for index, item in enumerate(value)]
    for index, item_shape in enumerate(shapes):
        if item_shape != shapes[0]:
            raise InvalidInput(
                f"{where} is ragged: {where}[0] has shape {list(shapes[0])} "
                f"but {where}[{index}] has shape {list(item_shape)}"
            )
    return (len(value), *shapes[0])


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


NPY_MAGIC = b"\x93NUMPY"
# What people send by mistake, recognised by its first bytes, and what to do instead.
_OTHER_FORMATS = [
    (b"\x89PNG", "a PNG image; send pictures to POST /predict"),
    (b"\xff\xd8\xff", "a JPEG image; send pictures to POST /predict"),
    (b"GIF8", "a GIF image; send pictures to POST /predict"),
    (b"PK\x03\x04", "a zip archive (an .npz?); send a single array saved with numpy.save"),
    (b"{", 'JSON; send it with Content-Type: application/json as {"inputs": ...}'),
]


def from_npy(data: bytes, image: ImageSpec | None) -> np.ndarray:
    """A .npy file (float32, or uint8 pixels 0..255 for image inputs) -> float32 array.

    Only the .npy format is read, never a pickle: numpy.load would try to unpickle anything
    that is not .npy, and its error message suggests doing so.
    """
    if not data:
        raise MalformedRequest("the request body is empty; expected a .npy array")
    if not data.startswith(NPY_MAGIC):
        looks_like = next((what for magic, what in _OTHER_FORMATS if data.lstrip().startswith(magic)), None)
        raise MalformedRequest(
            "the body is not a .npy array (the format numpy.save writes)"
            + (f"; it looks like {looks_like}" if looks_like else "")
        )
    try:
        array = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise InvalidInput(
                "the .npy array holds Python objects, which are never unpickled here; "
                "send float32 (or uint8 pixels for image inputs)"
            ) from None
        raise MalformedRequest(f"the body is a damaged .npy array: {exc}") from None
    # MemoryError: a header that claims a huge shape makes numpy allocate it before reading.
    except (OSError, EOFError, TypeError, MemoryError) as exc:
        raise MalformedRequest(f"the body is a damaged .npy array: {exc}") from None
    return from_array(array, image)


def from_array(array: np.ndarray, image: ImageSpec | None, where: str = "the array") -> np.ndarray:
    """A binary array (float32, or uint8 pixels 0..255 for image inputs) -> checked float32."""
    if array.dtype == np.uint8:
        if image is None:
            raise InvalidInput(f"{where}: uint8 is accepted only for image inputs (pixels 0..255)")
        return scale_pixels(array.astype(np.float32) / 255.0, image)
    if array.dtype != np.float32:
        raise InvalidInput(f"{where} has dtype {array.dtype}; send float32 (or uint8 pixels for image inputs)")
    if array.size == 0:
        raise InvalidInput(f"{where} is empty (shape {list(array.shape)})")
    return _finite_float32(array, where)


def scale_pixels(unit: np.ndarray, image: ImageSpec) -> np.ndarray:
    """Pixels in [0, 1] (from uint8 or the imaging recipe) -> the input's declared value range."""
    low, high = image.value_range
    if (low, high) == (0.0, 1.0):
        return unit
    return (low + unit * (high - low)).astype(np.float32)


def _finite_float32(array: np.ndarray, where: str) -> np.ndarray:
    # One reduction in the common case: the largest magnitude is NaN (max propagates it), infinite
    # or above FLOAT32_MAX only when something is off; then find out which, for the message.
    if array.size and not np.abs(array).max() <= FLOAT32_MAX:
        if not np.isfinite(array).all():
            raise InvalidInput(f"{where} contains NaN or infinity")
        raise InvalidInput(f"{where} contains a value too large for float32 (|x| > {FLOAT32_MAX:.3g})")
    return np.ascontiguousarray(array, dtype=np.float32)


@dataclass(frozen=True)
class Batch:
    array: np.ndarray
    # True when the client sent one sample without the batch axis: answer without it too.
    unbatched: bool


def fit_to_spec(array: np.ndarray, spec: TensorSpec, max_batch_size: int, allow_unbatched: bool = True) -> Batch:
    """Check ``array`` against the input's shape; a single sample may omit the batch axis if allowed."""
    sample_shape = spec.shape[1:]
    received = list(array.shape)
    unbatched = allow_unbatched and array.ndim == len(sample_shape)
    if unbatched:
        array = array[np.newaxis]
    if array.ndim != len(spec.shape) or any(
        expected != -1 and actual != expected for actual, expected in zip(array.shape[1:], sample_shape)
    ):
        hint = "; the batch axis may be left out for one sample" if allow_unbatched else ""
        raise InvalidInput(f"input {spec.name!r} must have shape {spec.shape} (-1 = any size{hint}), got {received}")
    if array.shape[0] == 0:
        raise InvalidInput(f"input {spec.name!r} has an empty batch")
    if array.shape[0] > max_batch_size:
        raise TooLarge(f"{array.shape[0]} samples in one request; the limit is {max_batch_size}")
    if spec.image is not None:
        _check_value_range(array, spec.name, spec.image)
    return Batch(array, unbatched)


# Float32 rounding of values computed by the client (e.g. x / 255) may land a hair outside.
_RANGE_SLACK = 1e-6


def _check_value_range(array: np.ndarray, name: str, image: ImageSpec) -> None:
    """Pixels outside the declared range give an answer without meaning: refuse them."""
    low, high = image.value_range
    slack = _RANGE_SLACK * (high - low)
    smallest, largest = float(array.min()), float(array.max())
    if smallest >= low - slack and largest <= high + slack:
        return
    hint = ""
    if (low, high) == (0.0, 1.0) and largest > 1.0 and smallest >= 0.0 and largest <= 255.0:
        hint = "; these look like 0..255 pixels: divide them by 255, or send them as a uint8 .npy array"
    raise InvalidInput(
        f"input {name!r} takes pixel values in [{low:g}, {high:g}] (see GET /models/<name>), "
        f"got values from {smallest:g} to {largest:g}{hint}"
    )


def images_to_batch(images: list[np.ndarray], spec: TensorSpec) -> np.ndarray:
    """Prepared [h, w] images in [0, 1] -> the input's batch shape (e.g. [N, 1, 28, 28] or [N, 784])
    and value range."""
    stacked = np.stack(images).astype(np.float32)
    if spec.image is not None:
        stacked = scale_pixels(stacked, spec.image)
    return stacked.reshape((len(images), *spec.shape[1:]))
