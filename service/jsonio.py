"""JSON responses, rendered by orjson: always valid JSON, never the tokens NaN or Infinity.

orjson writes null for a float that is NaN or infinite; the core refuses non-finite model
outputs before they get here (service.runtime), so a null in an answer is never a number lost.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE


def dumps(payload: Any) -> bytes:
    return orjson.dumps(payload, option=_OPTIONS)


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(dumps(payload), status=status, mimetype="application/json")
