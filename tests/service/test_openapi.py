"""GET /openapi.json: a valid OpenAPI 3.1 document of every route, that real responses conform to."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from service_fixtures import IMAGE_MODEL, TABULAR_MODEL, draw_digit, encode, write_version

from service.api.openapi import OPERATIONS

PNG = encode(draw_digit("7"))
B64 = base64.b64encode(PNG).decode()


V2_ROWS = {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1.0, 2.0, 3.0]}
V2_JSON = {"inputs": [V2_ROWS]}
_V2_HEADER = json.dumps({
    "inputs": [V2_ROWS | {"data": None, "parameters": {"binary_data_size": 12}}],
    "parameters": {"binary_data_output": True},
}).encode()
V2_BINARY = _V2_HEADER + np.array([1, 2, 3], np.float32).tobytes()
V2_FRAMED = {"Inference-Header-Content-Length": str(len(_V2_HEADER))}


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def path_of(rule: str) -> str:
    """A Flask rule as an OpenAPI path: /models/<name> -> /models/{name}, <path:filename> -> {filename}."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule)


def routes(app) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route the app answers, as a client sees them."""
    return {
        (method.lower(), path_of(rule.rule)) for rule in app.url_map.iter_rules() for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def described(document) -> set[tuple[str, str]]:
    return {(method, path) for path, item in document["paths"].items() for method in item}


def pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def conforms(document: dict, method: str, path: str, response) -> None:
    """The response's status and media type are documented for the operation, and its body fits the schema."""
    responses = document["paths"][path][method]["responses"]
    assert str(response.status_code) in responses, f"{method} {path} answered an undocumented {response.status_code}"
    documented = responses[str(response.status_code)]
    location = ["paths", path, method, "responses", str(response.status_code)]
    if "$ref" in documented:
        location = documented["$ref"].removeprefix("#/").split("/")
        documented = document["components"]["responses"][location[-1]]
    assert response.mimetype in documented["content"], f"{response.mimetype} is not documented for {method} {path}"
    if response.mimetype == "application/json":
        registry = Registry().with_resource("urn:api", Resource.from_contents(document, DRAFT202012))
        schema = {"$ref": "urn:api#/" + pointer(*location, "content", response.mimetype, "schema")}
        Draft202012Validator(schema, registry=registry).validate(response.get_json())


@pytest.fixture
def admin_app(make_app):
    return make_app(admin_token="secret")


def test_the_document_is_valid_openapi_3_1(admin_app):
    response = admin_app.test_client().get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    document = response.get_json()
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on any error, against the 3.1 meta-schema and the spec's rules


@pytest.mark.parametrize("admin_token", [None, "secret"])
def test_every_route_is_described_and_nothing_else(make_app, admin_token):
    app = make_app(admin_token=admin_token)
    document = app.test_client().get("/openapi.json").get_json()
    assert described(document) == routes(app)
    assert (("post", "/admin/refresh") in described(document)) == (admin_token is not None)


def test_every_entry_of_the_table_is_a_route(admin_app):
    assert {(op.method.lower(), path_of(op.rule)) for op in OPERATIONS} <= routes(admin_app)


def test_request_bodies_are_the_models_the_views_validate_with(admin_app):
    document = admin_app.test_client().get("/openapi.json").get_json()
    predict = document["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(predict) == {"image/*", "application/octet-stream", "multipart/form-data", "application/json"}
    assert predict["application/json"]["schema"] == {"$ref": "#/components/schemas/ImagesJson"}
    numbers = document["paths"]["/models/{name}/predict"]["post"]
    assert set(numbers["requestBody"]["content"]) == {"application/json", "application/x-npy"}
    assert set(numbers["responses"]["200"]["content"]) == {"application/json", "application/x-npy"}
    assert document["components"]["schemas"]["ImagesJson"]["additionalProperties"] is False
    infer = document["paths"]["/v2/models/{name}/infer"]["post"]
    assert infer["requestBody"]["content"] == {
        "application/json": {"schema": {"$ref": "#/components/schemas/V2InferenceRequest"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    }
    assert set(infer["responses"]["200"]["content"]) == {"application/json", "application/octet-stream"}
    assert infer["responses"]["400"] == {"$ref": "#/components/responses/v2_error400"}


# (method, path in the document, URL, request kwargs): successes and failures of every operation.
EXCHANGES = [
    ("post", "/predict", "/predict", {"data": PNG, "content_type": "image/png"}),
    ("post", "/predict", "/predict", {"data": {"a": (io.BytesIO(PNG), "a.png"), "b": (io.BytesIO(PNG), "b.png")}}),
    ("post", "/predict", "/predict", {"json": {"image": B64, "images": [B64]}}),
    ("post", "/predict", "/predict", {"json": {"images": B64}}),
    ("post", "/predict", "/predict", {"data": b"not an image", "content_type": "image/png"}),
    ("post", "/predict", "/predict?model=nope", {"data": PNG, "content_type": "image/png"}),
    ("post", "/predict", "/predict", {"data": "x", "content_type": "text/plain"}),
    ("post", "/predict", "/predict", {"json": {"images": [B64] * 65}}),
    ("get", "/models", "/models", {}),
    ("get", "/models/{name}", f"/models/{IMAGE_MODEL}", {}),
    ("get", "/models/{name}", "/models/nope", {}),
    ("post", "/models/{name}/predict", f"/models/{TABULAR_MODEL}/predict", {"json": {"inputs": [[1, 2, 3]]}}),
    ("post", "/models/{name}/predict", f"/models/{TABULAR_MODEL}/predict", {"json": {"inputs": [1, 2, 3]}}),
    ("post", "/models/{name}/predict", f"/models/{TABULAR_MODEL}/predict",
     {"data": npy(np.ones((2, 3), np.float32)), "content_type": "application/x-npy",
      "headers": {"Accept": "application/x-npy"}}),
    ("post", "/models/{name}/predict", f"/models/{TABULAR_MODEL}/predict", {"json": {"inputs": [[1, 2]]}}),
    ("post", "/models/{name}/predict", f"/models/{TABULAR_MODEL}/predict", {"data": "{", "content_type": "application/json"}),
    ("get", "/healthz", "/healthz", {}),
    ("get", "/readyz", "/readyz", {}),
    ("get", "/metrics", "/metrics", {}),
    ("post", "/admin/refresh", "/admin/refresh", {"headers": {"Authorization": "Bearer secret"}}),
    ("post", "/admin/refresh", "/admin/refresh", {"headers": {"Authorization": "Bearer wrong"}}),
    ("get", "/openapi.json", "/openapi.json", {}),
    ("get", "/docs", "/docs", {}),
    ("get", "/docs/{asset}", "/docs/swagger-ui.css", {}),
    ("get", "/docs/{asset}", "/docs/nothing.js", {}),
    ("get", "/", "/", {}),
    ("get", "/static/{filename}", "/static/page.js", {}),
    ("get", "/static/{filename}", "/static/nothing.js", {}),
    ("post", "/predict", "/predict?include=input,explanation", {"data": PNG, "content_type": "image/png"}),
    ("post", "/predict", "/predict", {"json": {"image": B64, "include": "input"}}),
    ("post", "/predict", "/predict", {"json": {"image": B64, "include": {"input": True}}}),
    # The Open Inference Protocol, with its own error form.
    ("get", "/v2/health/live", "/v2/health/live", {}),
    ("get", "/v2/health/ready", "/v2/health/ready", {}),
    ("get", "/v2", "/v2", {}),
    ("get", "/v2", "/v2/", {}),
    ("get", "/v2/models/{name}", f"/v2/models/{TABULAR_MODEL}", {}),
    ("get", "/v2/models/{name}", "/v2/models/nope", {}),
    ("get", "/v2/models/{name}/versions/{version}", f"/v2/models/{IMAGE_MODEL}/versions/1", {}),
    ("get", "/v2/models/{name}/versions/{version}", f"/v2/models/{IMAGE_MODEL}/versions/2", {}),
    ("get", "/v2/models/{name}/ready", f"/v2/models/{TABULAR_MODEL}/ready", {}),
    ("get", "/v2/models/{name}/ready", "/v2/models/nope/ready", {}),
    ("get", "/v2/models/{name}/versions/{version}/ready", f"/v2/models/{TABULAR_MODEL}/versions/1/ready", {}),
    ("get", "/v2/models/{name}/versions/{version}/ready", f"/v2/models/{TABULAR_MODEL}/versions/0/ready", {}),
    ("post", "/v2/models/{name}/infer", f"/v2/models/{TABULAR_MODEL}/infer", {"json": V2_JSON | {"id": "a"}}),
    ("post", "/v2/models/{name}/infer", f"/v2/models/{TABULAR_MODEL}/infer", {"data": V2_BINARY, "headers": V2_FRAMED}),
    ("post", "/v2/models/{name}/infer", f"/v2/models/{TABULAR_MODEL}/infer", {"json": {"inputs": "x"}}),
    ("post", "/v2/models/{name}/infer", f"/v2/models/{TABULAR_MODEL}/infer",
     {"json": V2_JSON, "headers": {"Content-Encoding": "gzip"}}),
    ("post", "/v2/models/{name}/infer", f"/v2/models/{TABULAR_MODEL}/infer",
     {"json": {"inputs": [V2_ROWS | {"shape": [1025, 3], "data": [0.5] * 3075}]}}),  # over MAX_BATCH_SIZE
    ("post", "/v2/models/{name}/versions/{version}/infer", f"/v2/models/{TABULAR_MODEL}/versions/1/infer",
     {"data": V2_BINARY, "headers": V2_FRAMED}),
    ("post", "/v2/models/{name}/versions/{version}/infer", f"/v2/models/{TABULAR_MODEL}/versions/9/infer",
     {"json": V2_JSON}),
]


def test_real_responses_conform_to_the_document(admin_app):
    client = admin_app.test_client()
    document = client.get("/openapi.json").get_json()
    statuses = set()
    for method, path, url, kwargs in EXCHANGES:
        response = getattr(client, method)(url, **kwargs)
        conforms(document, method, path, response)
        statuses.add(response.status_code)
    assert statuses >= {200, 400, 401, 404, 413, 415, 422}
    assert {(method, path) for method, path, *_ in EXCHANGES} == described(document)


def test_models_without_a_loadable_version_conform_too(make_app, repository):
    write_version(repository, "broken", 1, b"not an onnx graph")
    client = make_app().test_client()
    document = client.get("/openapi.json").get_json()
    detail = client.get("/models/broken")
    assert detail.get_json()["served_version"] is None and detail.get_json()["load_errors"]
    conforms(document, "get", "/models/{name}", detail)
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    conforms(document, "get", "/readyz", not_ready)
    conforms(document, "post", "/predict", client.post("/predict?model=broken", data=PNG, content_type="image/png"))
    for method, path, url, status in (
        ("get", "/v2/health/ready", "/v2/health/ready", 400),
        ("get", "/v2/models/{name}", "/v2/models/broken", 503),
        ("get", "/v2/models/{name}/ready", "/v2/models/broken/ready", 400),
        ("post", "/v2/models/{name}/infer", "/v2/models/broken/infer", 503),
    ):
        response = getattr(client, method)(url, json=V2_JSON)
        assert response.status_code == status
        conforms(document, method, path, response)


def test_a_response_field_the_document_does_not_describe_cannot_be_sent(client, monkeypatch):
    import service.api.predict

    def with_an_extra_field(model, uploads):
        return [{"label": "7", "probability": 1.0, "probabilities": {"7": 1.0}, "model": "m", "version": 1,
                 "undocumented": True}]

    monkeypatch.setattr(service.api.predict, "classify_images", with_an_extra_field)
    assert client.post("/predict", data=PNG, content_type="image/png").status_code == 500
