"""Client data -> float32 arrays checked against a model's input signature.

JSON numbers arrive as nested Python lists that may hold anything: null, strings, booleans,
objects, ragged rows, numbers too large for float32.  ``from_json`` walks them once and names
the first offending position; ``from_npy`` reads the compact binary form, and ``from_array`` is
its dtype rule (float32, or uint8 pixels for image inputs) for any protocol's binary arrays.  ``fit_to_spec`` then
checks the shape against the manifest (batch axis -1 free, the other axes fixed) and adds the
batch axis to a single unbatched sample.  Nothing here knows HTTP.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from service.errors import InvalidInput, MalformedRequest, TooLarge
from service.manifest import TensorSpec

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
    if all(type(leaf) in _PLAIN_NUMBER_TYPES for row in rows for leaf in row):
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


def from_npy(data: bytes, image_input: bool) -> np.ndarray:
    """A .npy file (float32, or uint8 pixels 0..255 for image inputs) -> float32 array."""
    if not data:
        raise MalformedRequest("the request body is empty; expected a .npy array")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    # MemoryError: a header that claims a huge shape makes numpy allocate it before reading.
    except (ValueError, OSError, EOFError, TypeError, MemoryError) as exc:
        raise MalformedRequest(f"the body is not a valid .npy array: {exc}") from None
    if not isinstance(array, np.ndarray):  # np.load returns an NpzFile for .npz
        raise MalformedRequest("the body is an .npz archive; send a single .npy array")
    return from_array(array, image_input)


def from_array(array: np.ndarray, image_input: bool, where: str = "the array") -> np.ndarray:
    """A binary array (float32, or uint8 pixels 0..255 for image inputs) -> checked float32."""
    if array.dtype == np.uint8:
        if not image_input:
            raise InvalidInput(f"{where}: uint8 is accepted only for image inputs (pixels 0..255)")
        return array.astype(np.float32) / 255.0
    if array.dtype != np.float32:
        raise InvalidInput(f"{where} has dtype {array.dtype}; send float32 (or uint8 pixels for image inputs)")
    if array.size == 0:
        raise InvalidInput(f"{where} is empty (shape {list(array.shape)})")
    return _finite_float32(array, where)


def _finite_float32(array: np.ndarray, where: str) -> np.ndarray:
    if not np.all(np.isfinite(array)):
        raise InvalidInput(f"{where} contains NaN or infinity")
    if np.any(np.abs(array) > FLOAT32_MAX):
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
    return Batch(array, unbatched)


def images_to_batch(images: list[np.ndarray], spec: TensorSpec) -> np.ndarray:
    """Prepared [h, w] images -> the input's batch shape (e.g. [N, 1, 28, 28] or [N, 784])."""
    stacked = np.stack(images).astype(np.float32)
    return stacked.reshape((len(images), *spec.shape[1:]))
