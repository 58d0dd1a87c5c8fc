"""JSON responses, rendered by orjson: always valid JSON, never the tokens NaN or Infinity.

numpy arrays are written by orjson itself, float32 as the shortest text that reads back as the
same float32.  orjson writes null for a float that is NaN or infinite; the core refuses
non-finite model outputs before they get here (service.runtime), so a null in an answer is never
a number lost.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from flask import Response

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE


def dumps(payload: Any) -> bytes:
    return orjson.dumps(payload, default=_as_list, option=_OPTIONS)


def _as_list(value: Any) -> Any:
    # numpy arrays orjson does not write itself: 0-d, or not C-contiguous.
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(dumps(payload), status=status, mimetype="application/json")
