"""Request and response bodies: JSON with or without a JSON content type, validated against and
rendered from the models of ``service.schemas``; base64 images."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, TypeVar

from flask import Response, request
from pydantic import BaseModel, ValidationError

from service.errors import InvalidInput, MalformedRequest, ServiceError, UnsupportedMediaType
from service.jsonio import json_response

Body = TypeVar("Body", bound=BaseModel)
# Errors a schema names by code (see service.schemas); any other wrong type is a malformed request.
_ERRORS_BY_CODE: dict[str, type[ServiceError]] = {error.code: error for error in (InvalidInput, MalformedRequest)}


def is_json_request() -> bool:
    """JSON content type, or none at all (tritonclient and curl -d scripts send none)."""
    mimetype = request.mimetype
    return mimetype == "application/json" or mimetype.endswith("+json") or mimetype == ""


def _refuse_constant(name: str) -> Any:
    raise InvalidInput(f"{name} is not a number JSON allows; send finite numbers")


def json_body() -> Any:
    return parse_json(request.get_data())  # get_data raises 413 when over MAX_CONTENT_LENGTH, before reading


def parse_json(data: bytes) -> Any:
    """JSON bytes -> a value; NaN and Infinity refused (they are not JSON, and not numbers to run)."""
    if not data.strip():
        raise MalformedRequest("the request body is empty; expected a JSON object")
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}") from None


def parse(schema: type[Body], payload: Any) -> Body:
    """A decoded JSON value validated against a request model; a 4xx naming the key otherwise."""
    try:
        return schema.model_validate(payload)
    except ValidationError as exc:
        raise _request_error(schema, exc.errors(include_url=False)) from None


def _request_error(schema: type[BaseModel], errors: list[dict]) -> ServiceError:
    allowed = sorted(schema.model_fields)
    unknown = sorted(str(error["loc"][0]) for error in errors if error["type"] == "extra_forbidden")
    if unknown:
        return InvalidInput(f"unknown keys {unknown}; allowed: {allowed}")
    error = errors[0]
    if not error["loc"]:
        return InvalidInput(f"the JSON body must be an object with keys {allowed}")
    key, *index = error["loc"]
    if error["type"] == "missing":
        return InvalidInput(f'the JSON body needs "{key}"')
    # As clients write it: "image" for a key, images[1] for an item of a list.
    where = f"{key}{''.join(f'[{i}]' for i in index)}" if index else f'"{key}"'
    if error["type"] in _ERRORS_BY_CODE:
        return _ERRORS_BY_CODE[error["type"]](f"{where} {error['msg']}")
    return MalformedRequest(f"{where}: {error['msg'][0].lower()}{error['msg'][1:]}")


def render(body: BaseModel, status: int = 200) -> Response:
    """A response model as JSON (json_response: never NaN)."""
    return json_response(body.model_dump(), status)


def decode_base64(text: str, where: str) -> bytes:
    """A base64 string, optionally a data URL ("data:image/png;base64,...") -> bytes."""
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
