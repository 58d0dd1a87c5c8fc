"""JSON responses that are always valid JSON: NaN and Infinity are refused, never written."""

from __future__ import annotations

import json
from typing import Any

from flask import Response


def json_response(payload: Any, status: int = 200) -> Response:
    # allow_nan=False raises instead of emitting the non-JSON tokens NaN/Infinity; the core
    # checks outputs are finite first, so reaching that error is a bug and becomes a 500.
    body = json.dumps(payload, allow_nan=False, separators=(",", ":"))
    return Response(body + "\n", status=status, mimetype="application/json")
