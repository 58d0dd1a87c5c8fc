"""Bad input of every kind gets a JSON 4xx that names the problem: never a 500, never a crash."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from service_fixtures import IMAGE_MODEL, TABULAR_MODEL, draw_digit, encode
from PIL import Image

PNG = encode(draw_digit("7"))
B64 = base64.b64encode(PNG).decode()
LINEAR = f"/models/{TABULAR_MODEL}/predict"
DIGITS = f"/models/{IMAGE_MODEL}/predict"


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npy_claiming(shape: tuple[int, ...]) -> bytes:
    """A .npy header claiming ``shape``, followed by almost no data."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}".encode().ljust(117) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(12)


def float_image(value: float) -> bytes:
    """A 32-bit float TIFF with one stroke of ``value``."""
    pixels = np.zeros((32, 32), np.float32)
    pixels[8:24, 14:18] = value
    return encode(Image.fromarray(pixels, "F"), "TIFF")


def bomb() -> bytes:
    """A tiny PNG that decodes to 400 megapixels."""
    return encode(Image.new("1", (20_000, 20_000), 1), optimize=True)


# (description, method, url, request kwargs (or a function making them, for open files), status,
#  error code, words the message must contain)
CASES = [
    # /models/<name>/predict: JSON numbers
    ("wrong shape", "post", LINEAR, {"json": {"inputs": [[1, 2]]}}, 422, "invalid_input", "shape [-1, 3]"),
    ("wrong rank", "post", LINEAR, {"json": {"inputs": [[[1, 2, 3]]]}}, 422, "invalid_input", "shape"),
    ("string", "post", LINEAR, {"json": {"inputs": [[1, "2", 3]]}}, 422, "invalid_input", "inputs[0][1] is a string"),
    ("boolean", "post", LINEAR, {"json": {"inputs": [[1, True, 3]]}}, 422, "invalid_input", "boolean"),
    ("null", "post", LINEAR, {"json": {"inputs": [[1, None, 3]]}}, 422, "invalid_input", "null"),
    ("null inputs", "post", LINEAR, {"json": {"inputs": None}}, 422, "invalid_input", "null"),
    ("nested object", "post", LINEAR, {"json": {"inputs": [[1, {"a": 2}, 3]]}}, 422, "invalid_input", "an object"),
    ("bare number", "post", LINEAR, {"json": {"inputs": 3}}, 422, "invalid_input", "shape"),
    ("ragged", "post", LINEAR, {"json": {"inputs": [[1, 2, 3], [1, 2]]}}, 422, "invalid_input", "ragged"),
    ("empty list", "post", LINEAR, {"json": {"inputs": []}}, 422, "invalid_input", "empty"),
    ("empty rows", "post", LINEAR, {"json": {"inputs": [[]]}}, 422, "invalid_input", "empty"),
    ("NaN token", "post", LINEAR, {"data": '{"inputs": [[NaN, 1, 2]]}', "content_type": "application/json"},
     422, "invalid_input", "NaN"),
    ("Infinity token", "post", LINEAR, {"data": '{"inputs": [[Infinity, 1, 2]]}'}, 422, "invalid_input", "Infinity"),
    ("1e308 overflows float32", "post", LINEAR, {"json": {"inputs": [[1e308, 1, 2]]}}, 422, "invalid_input", "float32"),
    ("huge integer", "post", LINEAR, {"json": {"inputs": [[10**400, 1, 2]]}}, 422, "invalid_input", "too large"),
    ("output overflows", "post", LINEAR, {"json": {"inputs": [[3e38, 3e38, -3e38]]}}, 422, "non_finite_output",
     "NaN or infinity"),
    ("deep nesting", "post", LINEAR, {"data": '{"inputs": ' + "[" * 5000 + "]" * 5000 + "}"}, 400, None, ""),
    ("missing inputs", "post", LINEAR, {"json": {"input": [[1, 2, 3]]}}, 422, "invalid_input", "unknown keys"),
    ("list body", "post", LINEAR, {"json": [[1, 2, 3]]}, 422, "invalid_input", "object"),
    ("not JSON", "post", LINEAR, {"data": "{inputs: oops", "content_type": "application/json"}, 400,
     "malformed_request", "not valid JSON"),
    ("empty body", "post", LINEAR, {"data": b"", "content_type": "application/json"}, 400, "malformed_request",
     "empty"),
    ("unsupported type", "post", LINEAR, {"data": "x=1", "content_type": "text/plain"}, 415,
     "unsupported_media_type", "text/plain"),
    ("curl -d without a JSON type", "post", LINEAR,
     {"data": '{"inputs": [[1, 2, 3]]}', "content_type": "application/x-www-form-urlencoded"}, 415,
     "unsupported_media_type", "what curl -d sends: add -H 'Content-Type: application/json'"),
    ("too many rows", "post", LINEAR, {"json": {"inputs": [[1, 2, 3]] * 1025}}, 413, "too_large", "1025"),
    # /models/<name>/predict: .npy
    ("npy float64", "post", LINEAR, {"data": npy(np.ones((2, 3))), "content_type": "application/x-npy"}, 422,
     "invalid_input", "float64"),
    ("npy uint8 for numbers", "post", LINEAR,
     {"data": npy(np.ones((2, 3), np.uint8)), "content_type": "application/x-npy"}, 422, "invalid_input", "uint8"),
    ("npy with NaN", "post", LINEAR,
     {"data": npy(np.array([[np.nan, 1, 2]], np.float32)), "content_type": "application/x-npy"}, 422,
     "invalid_input", "NaN"),
    ("npy object array", "post", LINEAR,
     {"data": npy(np.array([[1, "a", None]], dtype=object)), "content_type": "application/x-npy"}, 422,
     "invalid_input", "never unpickled"),
    ("npy garbage", "post", LINEAR, {"data": b"\x93NUMPY garbage", "content_type": "application/x-npy"}, 400,
     "malformed_request", ".npy"),
    ("npy truncated", "post", LINEAR,
     {"data": npy(np.ones((100, 3), np.float32))[:200], "content_type": "application/x-npy"}, 400,
     "malformed_request", ".npy"),
    ("PNG sent as npy", "post", DIGITS, {"data": PNG, "content_type": "application/x-npy"}, 400,
     "malformed_request", "not a .npy array (the format numpy.save writes); it looks like a PNG image; "
     "send pictures to POST /predict"),
    ("text sent as npy", "post", LINEAR, {"data": b"1,2,3", "content_type": "application/x-npy"}, 400,
     "malformed_request", "not a .npy array"),
    ("JSON sent as npy", "post", LINEAR, {"data": b'{"inputs": [[1, 2, 3]]}', "content_type": "application/x-npy"},
     400, "malformed_request", "it looks like JSON"),
    ("float pixels 0..255", "post", DIGITS,
     {"data": npy(np.full((1, 1, 28, 28), 255, np.float32)), "content_type": "application/x-npy"}, 422,
     "invalid_input", "takes pixel values in [0, 1] (see GET /models/<name>), got values from 255 to 255; "
     "these look like 0..255 pixels: divide them by 255, or send them as a uint8 .npy array"),
    ("JSON pixels 0..255", "post", DIGITS, {"json": {"inputs": np.full((1, 28, 28), 200).tolist()}}, 422,
     "invalid_input", "divide them by 255"),
    ("negative pixels", "post", DIGITS, {"json": {"inputs": np.full((1, 28, 28), -0.5).tolist()}}, 422,
     "invalid_input", "got values from -0.5 to -0.5"),
    ("unacceptable Accept", "post", LINEAR, {"json": {"inputs": [[1, 2, 3]]}, "headers": {"Accept": "text/csv"}},
     406, "not_acceptable", "Accept: text/csv allows neither answer this endpoint gives: application/json or "
     "application/x-npy"),
    ("npy claiming 12 TB", "post", LINEAR, {"data": npy_claiming((10**12, 3)), "content_type": "application/x-npy"},
     400, "malformed_request", ".npy"),
    ("npy wrong shape", "post", DIGITS,
     {"data": npy(np.ones((2, 28, 28), np.uint8)), "content_type": "application/x-npy"}, 422, "invalid_input", "shape"),
    # /predict
    ("not an image", "post", "/predict", {"data": b"hello there", "content_type": "image/png"}, 422,
     "invalid_image", "not an image"),
    ("truncated image", "post", "/predict", {"data": PNG[: len(PNG) // 2], "content_type": "image/png"}, 422,
     "invalid_image", "truncated"),
    ("decompression bomb", "post", "/predict", {"data": bomb(), "content_type": "image/png"}, 422, "invalid_image",
     "too many pixels"),
    ("float image with NaN", "post", "/predict", {"data": float_image(float("nan")), "content_type": "image/tiff"},
     422, "invalid_image", "NaN"),
    ("float image with infinity", "post", "/predict", {"data": float_image(float("inf")), "content_type": "image/tiff"},
     422, "invalid_image", "infinite"),
    ("blank image", "post", "/predict", {"data": encode(Image.new("RGB", (64, 64), "white")),
                                          "content_type": "image/png"}, 422, "no_ink", "no ink"),
    ("empty raw body", "post", "/predict", {"data": b"", "content_type": "image/png"}, 400, "malformed_request",
     "empty"),
    ("empty JSON", "post", "/predict", {"json": {}}, 400, "malformed_request", '"image"'),
    ("bad base64", "post", "/predict", {"json": {"image": "%%%not base64"}}, 400, "malformed_request", "base64"),
    ("base64 of junk", "post", "/predict", {"json": {"image": base64.b64encode(b"junk").decode()}}, 422,
     "invalid_image", "image \"image\""),
    ("image not a string", "post", "/predict", {"json": {"image": 12}}, 422, "invalid_input", "base64 string"),
    ("images not a list", "post", "/predict", {"json": {"images": B64}}, 400, "malformed_request", "list"),
    ("second image broken", "post", "/predict", {"json": {"images": [B64, base64.b64encode(b"x").decode()]}}, 422,
     "invalid_image", "images[1]"),
    ("form without files", "post", "/predict", {"data": {"model": IMAGE_MODEL}, "content_type": "multipart/form-data"},
     400, "malformed_request", "no files"),
    ("urlencoded form", "post", "/predict", {"data": {"a": "b"}}, 415, "unsupported_media_type", "x-www-form"),
    ("too many images", "post", "/predict", {"json": {"images": [B64] * 65}}, 413, "too_large", "65 images"),
    ("too many files", "post", "/predict",
     lambda: {"data": {"f": [(io.BytesIO(PNG), f"{i}.png") for i in range(65)]}},
     413, None, ""),
    ("unknown model", "post", "/predict?model=nope", {"data": PNG, "content_type": "image/png"}, 404,
     "model_not_found", "nope"),
    ("unknown model, numbers", "post", "/models/nope/predict", {"json": {"inputs": [1]}}, 404, "model_not_found",
     "nope"),
    ("unknown model, info", "get", "/models/nope", {}, 404, "model_not_found", "nope"),
    # generic HTTP
    ("wrong method", "get", "/predict", {}, 405, "method_not_allowed", "GET /predict is not allowed; use POST /predict"),
    ("wrong method 2", "put", "/models", {}, 405, "method_not_allowed", "PUT /models is not allowed; use GET /models"),
    ("unknown path", "get", "/nothing", {}, 404, "not_found", "nothing answers GET /nothing; GET /models lists the models"),
    ("body over the limit", "post", "/predict", {"data": b"x" * (20 * 1024 * 1024 + 1), "content_type": "image/png"},
     413, "request_entity_too_large",
     "the request body is 20971521 bytes; the limit is 20971520 bytes (MAX_UPLOAD_BYTES)"),
]


def send(client, method, url, kwargs):
    return getattr(client, method)(url, **(kwargs() if callable(kwargs) else kwargs))


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_bad_input_gets_a_json_4xx_naming_the_problem(client, case):
    _, method, url, kwargs, status, code, words = case
    response = send(client, method, url, kwargs)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert set(error) == {"code", "message"}
    if code is not None:
        assert error["code"] == code
    assert words.lower() in error["message"].lower()


def test_the_worker_still_answers_after_all_of_that(client):
    for _, method, url, kwargs, *_ in CASES:
        send(client, method, url, kwargs)
    assert client.post("/predict", data=PNG, content_type="image/png").status_code == 200


def test_form_fields_over_the_memory_limit_are_413_naming_the_limit(make_app):
    client = make_app(max_form_memory_bytes=1024).test_client()
    response = client.post("/predict", data={"model": "x" * 5000, "f": (io.BytesIO(PNG), "a.png")})
    assert response.status_code == 413
    assert "a non-file field may hold 1024 bytes (MAX_FORM_MEMORY_BYTES)" in response.get_json()["error"]["message"]


def test_a_405_lists_the_allowed_methods_in_the_allow_header(client):
    response = client.get("/predict")
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}


def test_an_unexpected_exception_is_a_json_500_without_traceback(app, client, monkeypatch):
    def explode(*_args, **_kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr("service.inference.imaging.prepare", explode)
    response = client.post("/predict", data=PNG, content_type="image/png")
    assert response.status_code == 500
    assert response.get_json() == {"error": {"code": "internal_error", "message": "internal server error (logged)"}}
    assert "secret" not in response.get_data(as_text=True)


def test_responses_never_contain_nan(client):
    """Every JSON body above parses under a strict parser that refuses NaN and Infinity."""

    def strict(text: str):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in a response"))

    for _, method, url, kwargs, *_ in CASES:
        strict(send(client, method, url, kwargs).get_data(as_text=True))
