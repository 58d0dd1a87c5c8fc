"""The API described: GET /openapi.json (OpenAPI 3.1) and GET /docs (Swagger UI, offline).

The document is built from the pydantic models in ``service.schemas`` (the same ones the views
validate requests and render responses with) and from ``OPERATIONS`` below: one entry per route
and method, saying what goes in and what comes out with which status.  Only the routes this app
really has are described (the admin endpoint exists only with ADMIN_TOKEN), and
tests/service/test_openapi.py fails when a route has no entry.  To describe a new endpoint, add
one ``Operation``: its method, its Flask rule exactly as registered, a summary, its responses by
status (``json(Model)`` or a media type), the statuses it answers with an error body (the
service's own, or the Open Inference Protocol's under /v2: ``ErrorForm``), and its request body
by media type; path parameters come from the rule itself.

/docs is Swagger UI from the swagger-ui-bundle-v2 package, served by the service itself: no CDN,
and a Content-Security-Policy that lets the page load nothing from anywhere else.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any, Union

from flask import Blueprint, Flask, Response, current_app, send_from_directory
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import NotFound
from werkzeug.routing import Rule

from service import schemas, v2_binary
from service.api import EXTENSION
from service.jsonio import json_response

blueprint = Blueprint("openapi", __name__)

# A body: a model (described once under components/schemas), a tuple of models (exactly one of
# them), or a plain JSON schema (binary and text bodies).
Schema = Union[type[BaseModel], tuple[type[BaseModel], ...], dict]
Content = Mapping[str, Schema]  # media type -> body

JSON = "application/json"
NPY = "application/x-npy"
BINARY = {"type": "string", "format": "binary"}
TEXT = {"type": "string"}


def json(schema: Schema) -> Content:
    return {JSON: schema}


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: there are two
class ErrorForm:
    """An error body (service.errors picks it by path) and what each status means with it."""

    body: type[BaseModel]
    name: str  # components/responses/<name><status>
    meanings: Mapping[int, str]


SERVICE_ERRORS = ErrorForm(
    schemas.ErrorBody,
    "error",
    {
        400: "The body cannot be parsed: bad JSON, bad base64, bad .npy, an empty body",
        401: "A missing or wrong bearer token",
        404: "No such model, or no such path",
        406: "The answer cannot be given in the media type asked for",
        413: "The body, the number of images or the batch is over the limit",
        415: "A content type this endpoint does not take",
        422: "Data that does not fit: wrong shape or type, NaN, not an image, a truncated image, a decompression "
        "bomb, a blank picture, an image sent to a model that does not take images",
        503: "The model has no loadable version",
    },
)
V2_ERRORS = ErrorForm(
    schemas.V2Error,
    "v2_error",
    {
        400: "A request the model cannot take (bad JSON or binary framing, an unknown input or output, a wrong "
        "shape or datatype, NaN); from a readiness endpoint: not ready, and why",
        404: "No such model, no such version being served, or no such path under /v2",
        413: "The body or the batch is over the limit",
        415: "A compressed body (Content-Encoding)",
        503: "The model has no loadable version",
    },
)


@dataclass(frozen=True)
class Operation:
    method: str
    rule: str  # the Flask rule as registered, e.g. "/models/<name>/predict"
    summary: str
    responses: Mapping[int, Content]  # status -> media type -> body
    errors: tuple[int, ...] = ()  # statuses answered with an error body
    error_form: ErrorForm = SERVICE_ERRORS
    request: Content | None = None
    query: Mapping[str, str] = field(default_factory=dict)  # optional string parameters -> description
    path: Mapping[str, str] = field(default_factory=dict)  # path parameter -> description
    headers: Mapping[str, str] = field(default_factory=dict)  # optional integer request headers -> description
    response_headers: Mapping[str, str] = field(default_factory=dict)  # sent with some 200s -> description
    description: str = ""
    bearer: bool = False


MODEL_NAME = {"name": "a model name, as GET /models lists them"}
# The files of the Swagger UI bundle the page uses, with their media types.
ASSETS = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript", "favicon-32x32.png": "image/png"}

V2_MODEL = MODEL_NAME | {"version": "the served version's number (GET /v2/models/{name} gives it); any other is a 404"}


def v2_model_operations(model: str) -> list[Operation]:
    """A model's V2 metadata, readiness and inference, under ``model`` (with or without a version)."""
    return [
        Operation(
            "GET", model, "V2 model metadata: inputs and outputs with their datatypes and shapes", path=V2_MODEL,
            responses={200: json(schemas.V2ModelMetadata)}, errors=(404, 503), error_form=V2_ERRORS,
        ),
        Operation(
            "GET", f"{model}/ready", "V2 model readiness: 200 when the model has a loaded version, else 400",
            path=V2_MODEL, responses={200: json(schemas.V2ModelReady)}, errors=(400, 404), error_form=V2_ERRORS,
        ),
        Operation(
            "POST", f"{model}/infer", "V2 inference: tensors in, tensors out, as JSON or binary", path=V2_MODEL,
            description="JSON tensors (`name`, `shape` with the batch axis, `datatype` FP32 or UINT8 pixels for an "
            "image input, row-major `data`), or the binary tensor data extension: the same JSON as a header, then "
            "the tensors' raw little-endian bytes (`parameters.binary_data_size` each), with "
            f"`{v2_binary.HEADER_LENGTH}` giving the header's length. The body is read whatever its Content-Type. "
            "Outputs asked for as binary (`parameters.binary_data_output`, an output's `parameters.binary_data`) "
            "answer `application/octet-stream`, framed the same way.",
            request={JSON: schemas.V2InferenceRequest, "application/octet-stream": BINARY},
            headers={v2_binary.HEADER_LENGTH: "the length of the JSON header at the start of a binary body"},
            responses={200: {JSON: schemas.V2InferenceResponse, "application/octet-stream": BINARY}},
            response_headers={v2_binary.HEADER_LENGTH: "with a binary answer: the length of its JSON header"},
            errors=(400, 404, 413, 415, 503), error_form=V2_ERRORS,
        ),
    ]


OPERATIONS = [
    Operation(
        "POST", "/predict", "Digits from pictures",
        description="One picture answers one result; several answer `{\"results\": [...]}` in request order. "
        "Photos and drawings of any size, mode and orientation are prepared the way MNIST was made.",
        request={
            "image/*": BINARY, "application/octet-stream": BINARY,
            "multipart/form-data": schemas.ImageForm, JSON: schemas.ImagesJson,
        },
        query={
            "model": "the image model to ask (default: the configured one)",
            "include": "input, explanation or both (comma-separated or repeated): added to every result",
        },
        responses={200: json((schemas.ImageResult, schemas.ImageResults))},
        errors=(400, 404, 413, 415, 422, 503),
    ),
    Operation(
        "GET", "/models", "Every model: served version, versions on disk, execution provider, load errors",
        responses={200: json(schemas.ModelList)},
    ),
    Operation(
        "GET", "/models/<name>", "One model: the summary, its signature, its manifest", path=MODEL_NAME,
        responses={200: json(schemas.ModelDetail)}, errors=(404,),
    ),
    Operation(
        "POST", "/models/<name>/predict", "Any model, with numbers", path=MODEL_NAME,
        description="JSON `{\"inputs\": ...}`, or one input as a `.npy` array (float32, or uint8 pixels "
        "0..255 for image inputs). `Accept: application/x-npy` answers a single output as `.npy`.",
        request={JSON: schemas.NumbersRequest, NPY: BINARY},
        responses={200: {JSON: schemas.NumbersResponse, NPY: BINARY}},
        errors=(400, 404, 406, 413, 415, 422, 503),
    ),
    Operation("GET", "/healthz", "Liveness: 200 while the worker answers", responses={200: json(schemas.Liveness)}),
    Operation(
        "GET", "/readyz", "Readiness: 200 when every model has a loaded version",
        responses={200: json(schemas.Readiness), 503: json(schemas.Readiness)},
    ),
    Operation("GET", "/metrics", "Prometheus metrics, summed over all workers", responses={200: {"text/plain": TEXT}}),
    Operation(
        "POST", "/admin/refresh", "Rescan the model repository now", bearer=True,
        description="Exists only when the service has an ADMIN_TOKEN.",
        responses={200: json(schemas.Refreshed)}, errors=(401,),
    ),
    Operation("GET", "/", "The drawing page: draw a digit, see the answer", responses={200: {"text/html": TEXT}}),
    Operation(
        "GET", "/static/<path:filename>", "The drawing page's script and stylesheet",
        path={"filename": "page.js or page.css"},
        responses={200: {"text/javascript": TEXT, "text/css": TEXT, "text/html": TEXT}}, errors=(404,),
    ),
    Operation("GET", "/openapi.json", "This document", responses={200: json({"type": "object"})}),
    Operation("GET", "/docs", "This document as a page (Swagger UI)", responses={200: {"text/html": TEXT}}),
    Operation(
        "GET", "/docs/<asset>", "The page's files", path={"asset": "a file of the page"},
        responses={200: {media: BINARY if media.startswith("image/") else TEXT for media in ASSETS.values()}},
        errors=(404,),
    ),
    # --- the Open Inference Protocol (service/api/v2.py) ---
    Operation("GET", "/v2/health/live", "V2 liveness: 200 while the worker answers",
              responses={200: json(schemas.V2ServerLive)}),
    Operation(
        "GET", "/v2/health/ready", "V2 readiness: 200 when every model has a loaded version, else 400",
        responses={200: json(schemas.V2ServerReady)}, errors=(400,), error_form=V2_ERRORS,
    ),
    Operation(
        "GET", "/v2", "V2 server metadata: name, version, the extensions supported",
        description="`/v2/` answers the same.", responses={200: json(schemas.V2ServerMetadata)},
    ),
    *v2_model_operations("/v2/models/<name>"),
    *v2_model_operations("/v2/models/<name>/versions/<version>"),
]
def document(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of the routes ``app`` has, built once per app."""
    state = app.extensions[EXTENSION]
    if "openapi" not in state:
        state["openapi"] = _build(app)
    return state["openapi"]


def _build(app: Flask) -> dict[str, Any]:
    routes = {(method, rule.rule): rule for rule in app.url_map.iter_rules() for method in rule.methods or ()}
    operations = [operation for operation in OPERATIONS if (operation.method, operation.rule) in routes]
    references, definitions = _schemas(operations)
    paths: dict[str, dict] = {}
    for operation in operations:
        rule = routes[(operation.method, operation.rule)]
        paths.setdefault(_path(operation.rule), {})[operation.method.lower()] = _operation(operation, rule, references)
    limits = app.extensions[EXTENSION]["config"]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "digit-serving",
            "version": version("digit-serving"),
            "description": "Handwritten digits from pictures (`POST /predict`) and any model of the repository "
            "with numbers (`POST /models/{name}/predict`), or with the Open Inference Protocol (KServe V2, under "
            "`/v2`). Errors are `{\"error\": {\"code\", \"message\"}}`, and under `/v2` the protocol's "
            "`{\"error\": \"...\"}`. "
            f"Limits of this instance: bodies up to {limits.max_upload_bytes} bytes, {limits.max_images_per_request} "
            f"images per request, {limits.max_batch_size} rows per batch, {limits.max_image_pixels} pixels per image. "
            "Every response carries `X-Request-ID` (the caller's, if it sent one).",
        },
        "paths": paths,
        "components": {
            "schemas": definitions,
            "responses": {
                f"{form.name}{status}": {
                    "description": form.meanings[status],
                    "headers": {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}},
                    "content": {JSON: {"schema": references[(form.body, "serialization")]}},
                }
                for form, status in sorted(
                    {(operation.error_form, status) for operation in operations for status in operation.errors},
                    key=lambda pair: (pair[0].name, pair[1]),
                )
            },
            "headers": {"X-Request-ID": {"description": "the request's id, as in the logs", "schema": TEXT}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "ADMIN_TOKEN"}},
        },
    }


def _schemas(operations: list[Operation]) -> tuple[dict, dict]:
    """Every model used, as a $ref each, and their definitions (requests as validated, responses as rendered)."""
    used: set[tuple[type[BaseModel], str]] = {(schemas.ErrorBody, "serialization")}
    for operation in operations:
        if operation.errors:
            used.add((operation.error_form.body, "serialization"))
        bodies = [(body, "validation") for body in (operation.request or {}).values()]
        bodies += [(body, "serialization") for content in operation.responses.values() for body in content.values()]
        for body, mode in bodies:
            used.update((model, mode) for model in (body if isinstance(body, tuple) else (body,)) if isinstance(model, type))
    ordered = sorted(used, key=lambda key: (key[0].__name__, key[1]))
    references, definitions = models_json_schema(ordered, ref_template="#/components/schemas/{model}")
    return references, definitions.get("$defs", {})


def _path(rule: str) -> str:
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule)


def _operation(operation: Operation, rule: Rule, references: dict) -> dict[str, Any]:
    def schema(body: Schema, mode: str) -> dict:
        if isinstance(body, tuple):
            return {"oneOf": [references[(model, mode)] for model in body]}
        return references[(body, mode)] if isinstance(body, type) else body

    def content(bodies: Content, mode: str) -> dict:
        return {media: {"schema": schema(body, mode)} for media, body in bodies.items()}

    headers = {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}}
    responses = {
        str(status): {
            "description": operation.summary,
            "headers": headers | ({name: {"description": text, "schema": {"type": "integer"}}
                                   for name, text in operation.response_headers.items()} if status == 200 else {}),
            "content": content(bodies, "serialization"),
        }
        for status, bodies in operation.responses.items()
    }
    errors = operation.error_form.name
    responses.update({str(status): {"$ref": f"#/components/responses/{errors}{status}"} for status in operation.errors})
    parameters = [
        {"name": name, "in": "path", "required": True, "description": operation.path.get(name, ""),
         "schema": {"type": "integer"} if converter == "int" else TEXT}
        for converter, name in re.findall(r"<(?:([^<>:]+):)?([^<>]+)>", operation.rule)
    ] + [{"name": name, "in": "query", "required": False, "description": text, "schema": TEXT}
         for name, text in operation.query.items()
    ] + [{"name": name, "in": "header", "required": False, "description": text,
          "schema": {"type": "integer", "minimum": 1}}
         for name, text in operation.headers.items()]
    described: dict[str, Any] = {
        "operationId": re.sub(r"[^a-z0-9]+", "_", f"{operation.method} {_path(operation.rule)}".lower()).strip("_"),
        "summary": operation.summary,
        "tags": [rule.endpoint.partition(".")[0]],
        "responses": dict(sorted(responses.items())),
    }
    if operation.description:
        described["description"] = operation.description
    if parameters:
        described["parameters"] = parameters
    if operation.request:
        described["requestBody"] = {"required": True, "content": content(operation.request, "validation")}
    if operation.bearer:
        described["security"] = [{"bearer": []}]
    return described


# --- the routes ---

# The one script on the page; its hash in the Content-Security-Policy lets only it run inline.
_START = 'SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui", validatorUrl: null, deepLinking: true});'
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    f"script-src 'self' 'sha256-{base64.b64encode(hashlib.sha256(_START.encode()).digest()).decode()}'"
)
# Relative links, so that the page also works behind a proxy that serves the API under a prefix.
_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>digit-serving API</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script>{_START}</script>
</body>
</html>
"""


@blueprint.get("/openapi.json")
def openapi_document():
    return json_response(document(current_app))


@blueprint.get("/docs")
def docs_page():
    return Response(_PAGE, mimetype="text/html", headers={"Content-Security-Policy": _CSP})


@blueprint.get("/docs/<asset>")
def docs_asset(asset: str):
    if asset not in ASSETS:
        raise NotFound(f"/docs/{asset} is not a file of the documentation page")
    return send_from_directory(swagger_ui_path, asset, mimetype=ASSETS[asset])
