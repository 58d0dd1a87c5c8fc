"""Error types for every expected failure, and the one place that turns errors into JSON.

The inference core (imaging, tensors, runtime, registry) raises ``ServiceError`` subclasses that
carry an HTTP-independent ``status`` and ``code``; ``register_error_handlers`` renders them, and
Flask's own ``HTTPException`` (404, 405, 413, ...), as ``{"error": {"code": ..., "message": ...}}``,
with messages that name the path tried, the methods allowed, or the limit and its variable.
Under /v2, where the service speaks the Open Inference Protocol, every error (an unknown path and
a wrong method too) takes that protocol's form instead, ``{"error": "<message>"}``.
Anything else is a bug: it is logged with its traceback and answered with a bare JSON 500.
"""

from __future__ import annotations

import logging
import re

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from service.jsonio import json_response
from service.schemas import ErrorBody, ErrorDetail, V2Error

log = logging.getLogger(__name__)

V2_PREFIX = "/v2"


class ServiceError(Exception):
    """An expected failure with the status and machine-readable code a client should see."""

    status = 400
    code = "bad_request"
    headers: dict[str, str] = {}

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidInput(ServiceError):
    """The request's data does not fit the model (shape, type, values)."""

    status = 422
    code = "invalid_input"


class InvalidImage(ServiceError):
    """An upload that cannot be decoded as an image, or is too large to decode."""

    status = 422
    code = "invalid_image"


class NoInk(ServiceError):
    """An image with nothing drawn on it: there is no digit to classify."""

    status = 422
    code = "no_ink"


class MalformedRequest(ServiceError):
    """The body cannot be parsed at all (bad JSON, bad base64, bad .npy, empty body)."""

    status = 400
    code = "malformed_request"


class UnsupportedMediaType(ServiceError):
    status = 415
    code = "unsupported_media_type"


class TooLarge(ServiceError):
    """More images or rows than the configured limit."""

    status = 413
    code = "too_large"


class ModelNotFound(ServiceError):
    status = 404
    code = "model_not_found"


class ModelUnavailable(ServiceError):
    """The model exists in the repository but no version of it could be loaded."""

    status = 503
    code = "model_unavailable"


class NotAnImageModel(ServiceError):
    status = 422
    code = "not_an_image_model"


class NonFiniteOutput(ServiceError):
    """The model produced NaN or infinity; JSON cannot carry it and it is no answer.

    Inputs are checked to be finite float32, so this happens when values far outside the
    model's range overflow inside the graph: the input is the cause, hence a 4xx.
    """

    status = 422
    code = "non_finite_output"


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}


class NotAcceptable(ServiceError):
    status = 406
    code = "not_acceptable"


def _describe(error: HTTPException) -> str:
    """Werkzeug's sentences are generic; say what was asked, what the limit is, where to look."""
    tried = f"{request.method} {request.path}"
    if isinstance(error, NotFound):
        return f"nothing answers {tried}; {_where_to_look()}"
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        methods = [method for method in error.valid_methods if method not in ("HEAD", "OPTIONS")]
        return f"{tried} is not allowed; use {' or '.join(methods)} {request.path}"
    if isinstance(error, RequestEntityTooLarge):
        return _too_large()
    return error.description or error.name


def _where_to_look() -> str:
    # Only name documentation that this app really serves.
    rules = {rule.rule for rule in current_app.url_map.iter_rules()}
    docs = [f"GET {path}" for path in ("/docs", "/openapi.json") if path in rules]
    return "GET /models lists the models" + (f", {' and '.join(docs)} describe the API" if docs else "")


def _too_large() -> str:
    config = current_app.config
    body_limit, length = config.get("MAX_CONTENT_LENGTH"), request.content_length
    if request.mimetype == "multipart/form-data" and (length is None or body_limit is None or length <= body_limit):
        # Werkzeug raises the same error for either of the form's own limits.
        return (
            f"the form is over a limit: a non-file field may hold {config.get('MAX_FORM_MEMORY_SIZE')} bytes "
            f"(MAX_FORM_MEMORY_BYTES), a form {config.get('MAX_FORM_PARTS')} parts "
            "(MAX_IMAGES_PER_REQUEST files and a few fields)"
        )
    size = f"{length} bytes" if length is not None else "longer than that"
    return f"the request body is {size}; the limit is {body_limit} bytes (MAX_UPLOAD_BYTES)"


def _snake_case(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def speaks_v2(path: str) -> bool:
    """Whether a request path belongs to the Open Inference Protocol, whose errors have their own form."""
    return path == V2_PREFIX or path.startswith(V2_PREFIX + "/")


def error_response(status: int, code: str, message: str) -> Response:
    """The error in the form the request's protocol uses: the service's own, or V2's under /v2."""
    if speaks_v2(request.path):
        # The protocol has no codes, and its 400 is also the service's 422 ("the model cannot take this").
        return json_response(V2Error(error=message).model_dump(), 400 if status == 422 else status)
    return json_response(ErrorBody(error=ErrorDetail(code=code, message=message)).model_dump(), status)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def handle_service_error(error: ServiceError) -> Response:
        response = error_response(error.status, error.code, error.message)
        response.headers.update(error.headers)
        return response

    # Registered separately from Exception so that 404, 405 and 413 keep their status.
    @app.errorhandler(HTTPException)
    def handle_http_exception(error: HTTPException) -> Response:
        status = error.code or 500
        response = error_response(status, _snake_case(error.name), _describe(error))
        allowed = getattr(error, "valid_methods", None)
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error (logged)")
