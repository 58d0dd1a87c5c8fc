"""Reading request bodies: JSON with or without a JSON content type, base64 images."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from flask import request

from service.errors import InvalidInput, MalformedRequest, UnsupportedMediaType


def is_json_request() -> bool:
    """JSON content type, or none at all (tritonclient and curl -d scripts send none)."""
    mimetype = request.mimetype
    return mimetype == "application/json" or mimetype.endswith("+json") or mimetype == ""


def _refuse_constant(name: str) -> Any:
    raise InvalidInput(f"{name} is not a number JSON allows; send finite numbers")


def json_body() -> Any:
    data = request.get_data()  # raises 413 when over MAX_CONTENT_LENGTH, before reading
    if not data.strip():
        raise MalformedRequest("the request body is empty; expected a JSON object")
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}") from None


def json_object(allowed: set[str]) -> dict[str, Any]:
    payload = json_body()
    if not isinstance(payload, dict):
        raise InvalidInput(f"the JSON body must be an object with keys {sorted(allowed)}")
    unknown = set(payload) - allowed
    if unknown:
        raise InvalidInput(f"unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    return payload


def decode_base64(text: Any, where: str) -> bytes:
    """A base64 string, optionally a data URL ("data:image/png;base64,...") -> bytes."""
    if not isinstance(text, str):
        raise InvalidInput(f"{where} must be a base64 string, not {type(text).__name__}")
    if text.startswith("data:"):
        header, comma, text = text.partition(",")
        if not comma or not header.endswith(";base64"):
            raise MalformedRequest(f"{where} is a data URL without base64 data")
    text = "".join(text.split())
    text += "=" * (-len(text) % 4)
    url_safe = "-" in text or "_" in text
    try:
        data = base64.b64decode(text, altchars=b"-_" if url_safe else None, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedRequest(f"{where} is not valid base64: {exc}") from None
    if not data:
        raise MalformedRequest(f"{where} is empty")
    return data


def unsupported(accepted: list[str]) -> UnsupportedMediaType:
    hint = ""
    if request.mimetype == "application/x-www-form-urlencoded" and "application/json" in accepted:
        hint = " (what curl -d sends: add -H 'Content-Type: application/json')"
    return UnsupportedMediaType(
        f"Content-Type {request.mimetype!r} is not accepted here{hint}; use one of {', '.join(accepted)}"
    )
