"""The Open Inference Protocol (V2) endpoints through Flask's test client: every path a client
can take, and every refusal in the protocol's {"error": "..."} form.

Bodies are built by hand, the way the binary tensor data extension frames them, and binary
answers are decoded with tritonclient's own InferResult, so what passes here is what a Triton
client reads.  tests/e2e/test_v2_tritonclient.py runs the client itself against gunicorn.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from service_fixtures import IMAGE_MODEL, LINEAR_BIAS, LINEAR_WEIGHT, TABULAR_MODEL, linear_model, write_version

tritonclient_http = pytest.importorskip("tritonclient.http")

HEADER_LENGTH = "Inference-Header-Content-Length"
LINEAR_INFER = f"/v2/models/{TABULAR_MODEL}/infer"
DIGITS_INFER = f"/v2/models/{IMAGE_MODEL}/infer"
ROWS = np.array([[1.0, 2.0, 3.0], [-0.5, 0.0, 4.25]], dtype=np.float32)


def framed(header: dict, *tensors: bytes) -> tuple[bytes, dict[str, str]]:
    """A request body with binary tensors after the JSON header, and its header-length header."""
    head = json.dumps(header).encode()
    return head + b"".join(tensors), {HEADER_LENGTH: str(len(head))}


def binary_input(name: str, array: np.ndarray, datatype: str = "FP32") -> dict:
    return {"name": name, "shape": list(array.shape), "datatype": datatype,
            "parameters": {"binary_data_size": array.nbytes}}


def json_input(name: str, array: np.ndarray, datatype: str = "FP32") -> dict:
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": array.ravel().tolist()}


def decoded(response) -> "tritonclient_http.InferResult":
    assert response.status_code == 200, response.get_data(as_text=True)
    length = response.headers.get(HEADER_LENGTH)
    return tritonclient_http.InferResult.from_response_body(
        response.get_data(), header_length=int(length) if length else None
    )


def v2_error(response, status: int) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    return body["error"]


# --- health and metadata ---


def test_health_and_server_metadata(client):
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    for path in ("/v2", "/v2/"):
        server = client.get(path).get_json()
        assert server["name"] == "digit-serving" and server["version"]
        assert server["extensions"] == ["binary_tensor_data"]


def test_model_metadata_comes_from_the_manifest(client):
    expected = {
        "name": TABULAR_MODEL,
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
    }
    assert client.get(f"/v2/models/{TABULAR_MODEL}").get_json() == expected
    assert client.get(f"/v2/models/{TABULAR_MODEL}/versions/1").get_json() == expected
    image = client.get(f"/v2/models/{IMAGE_MODEL}").get_json()
    assert image["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    assert client.get(f"/v2/models/{TABULAR_MODEL}/ready").status_code == 200
    assert client.get(f"/v2/models/{TABULAR_MODEL}/versions/1/ready").status_code == 200


def test_only_the_served_version_answers(make_app, repository):
    write_version(repository, TABULAR_MODEL, 2, linear_model())
    client = make_app().test_client()
    assert client.get(f"/v2/models/{TABULAR_MODEL}").get_json()["versions"] == ["2"]
    body, headers = framed({"inputs": [binary_input("x", ROWS)]}, ROWS.tobytes())
    assert decoded(client.post(f"/v2/models/{TABULAR_MODEL}/versions/2/infer", data=body, headers=headers))
    for version in ("1", "3", "latest"):
        for path in ("", "/ready"):
            message = v2_error(client.get(f"/v2/models/{TABULAR_MODEL}/versions/{version}{path}"), 404)
            assert "served version is 2" in message
        response = client.post(f"/v2/models/{TABULAR_MODEL}/versions/{version}/infer", data=body, headers=headers)
        assert "served version is 2" in v2_error(response, 404)


def test_unknown_model_is_404(client):
    for response in (
        client.get("/v2/models/no_such_model"),
        client.get("/v2/models/no_such_model/ready"),
        client.post("/v2/models/no_such_model/infer", data=b'{"inputs": []}'),
    ):
        assert "no_such_model" in v2_error(response, 404)


def test_a_model_that_cannot_load_is_not_ready(make_app, repository):
    write_version(repository, "broken", 1, b"not an onnx graph")
    client = make_app().test_client()
    assert "broken" in v2_error(client.get("/v2/health/ready"), 400)
    assert "broken" in v2_error(client.get("/v2/models/broken/ready"), 400)
    v2_error(client.get("/v2/models/broken"), 503)
    v2_error(client.post("/v2/models/broken/infer", data=b'{"inputs": []}'), 503)
    assert client.get("/v2/health/live").status_code == 200


# --- inference ---


def test_json_request_without_content_type_gets_json_outputs(client):
    request = {"id": "request-7", "inputs": [json_input("x", ROWS)], "outputs": [{"name": "y"}]}
    response = client.post(LINEAR_INFER, data=json.dumps(request).encode())  # no Content-Type at all
    assert response.mimetype == "application/json" and HEADER_LENGTH not in response.headers
    body = response.get_json()
    assert body["model_name"] == TABULAR_MODEL and body["model_version"] == "1" and body["id"] == "request-7"
    (output,) = body["outputs"]
    assert output["name"] == "y" and output["datatype"] == "FP32" and output["shape"] == [2, 2]
    assert np.allclose(np.reshape(output["data"], (2, 2)), ROWS @ LINEAR_WEIGHT + LINEAR_BIAS, atol=1e-5)


def test_nested_json_data_is_accepted(client):
    request = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": ROWS.tolist()}]}
    result = decoded(client.post(LINEAR_INFER, data=json.dumps(request)))
    assert np.allclose(result.as_numpy("y"), ROWS @ LINEAR_WEIGHT + LINEAR_BIAS, atol=1e-5)


def test_binary_request_gets_binary_outputs_as_tritonclient_asks(client):
    # tritonclient, when no outputs are named, sets binary_data_output: every output binary.
    body, headers = framed(
        {"inputs": [binary_input("x", ROWS)], "parameters": {"binary_data_output": True}}, ROWS.tobytes()
    )
    response = client.post(LINEAR_INFER, data=body, headers=headers)
    assert response.mimetype == "application/octet-stream"
    result = decoded(response)
    assert result.get_output("y")["parameters"] == {"binary_data_size": 2 * 2 * 4}
    assert result.as_numpy("y").dtype == np.float32
    assert np.allclose(result.as_numpy("y"), ROWS @ LINEAR_WEIGHT + LINEAR_BIAS, atol=1e-5)


@pytest.mark.parametrize(
    ("parameters", "output", "binary"),
    [
        ({}, None, False),  # the protocol's default: JSON
        ({"binary_data_output": True}, {"name": "y", "parameters": {"binary_data": False}}, False),
        ({"binary_data_output": False}, {"name": "y", "parameters": {"binary_data": True}}, True),
        ({"binary_data_output": True}, {"name": "y"}, True),
    ],
)
def test_an_output_binary_flag_overrides_the_request_default(client, parameters, output, binary):
    request = {"inputs": [json_input("x", ROWS)], "parameters": parameters}
    if output:
        request["outputs"] = [output]
    result = decoded(client.post(LINEAR_INFER, data=json.dumps(request)))
    assert ("data" not in result.get_output("y")) == binary
    assert np.allclose(result.as_numpy("y"), ROWS @ LINEAR_WEIGHT + LINEAR_BIAS, atol=1e-5)


def test_uint8_pixels_are_the_fp32_pixels_times_255(client, repository):
    pixels = np.random.default_rng(0).integers(0, 256, size=(3, 1, 28, 28), dtype=np.uint8)
    as_float = pixels.astype(np.float32) / 255
    direct = ort.InferenceSession(str(repository / IMAGE_MODEL / "1" / "model.onnx")).run(None, {"pixels": as_float})[0]
    for body, headers in (
        framed({"inputs": [binary_input("pixels", pixels, "UINT8")]}, pixels.tobytes()),
        framed({"inputs": [binary_input("pixels", as_float)]}, as_float.tobytes()),
        (json.dumps({"inputs": [json_input("pixels", pixels, "UINT8")]}).encode(), {}),
    ):
        result = decoded(client.post(DIGITS_INFER, data=body, headers=headers))
        assert np.abs(result.as_numpy("probabilities") - direct).max() <= 1e-5


# --- refusals: each a 4xx in the protocol's form, naming the problem ---

NAN_ROWS = np.array([[1.0, np.nan, 3.0]], dtype=np.float32)
GOOD_HEADER = json.dumps({"inputs": [binary_input("x", ROWS)]}).encode()


def _header(**entry) -> dict:
    return {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": ROWS.ravel().tolist()} | entry]}


BAD_REQUESTS = {
    "not JSON": (b"{inputs: [}", {}, "not valid JSON"),
    "no inputs": (b'{"outputs": []}', {}, '"inputs"'),
    "unknown input": (json.dumps(_header(name="z")), {}, "has no input 'z'"),
    "input twice": (json.dumps({"inputs": _header()["inputs"] * 2}), {}, "given twice"),
    "FP64": (json.dumps(_header(datatype="FP64")), {}, "datatype 'FP64' is not accepted"),
    "datatype not a string": (json.dumps(_header(datatype=["FP32"])), {}, "datatype ['FP32'] is not accepted"),
    "BYTES": (json.dumps(_header(datatype="BYTES", data=["a"] * 6)), {}, "datatype 'BYTES'"),
    "UINT8 for a model that takes no images": (json.dumps(_header(datatype="UINT8", data=[1] * 6)), {}, "uint8"),
    "shape and data disagree": (json.dumps(_header(shape=[3, 3])), {}, "holds 9 values"),
    "shape not the model's": (json.dumps(_header(shape=[3, 2])), {}, "must have shape [-1, 3]"),
    "batch axis left out": (json.dumps(_header(shape=[6], data=[1.0] * 6)), {}, "must have shape [-1, 3]"),
    "shape not numbers": (json.dumps(_header(shape=["2", 3])), {}, '"shape[0]" must be a whole number'),
    "a string in the data": (json.dumps(_header(data=[1, 2, "3", 4, 5, 6])), {}, "a string"),
    "Infinity in JSON": (json.dumps(_header()).replace("4.25", "Infinity"), {}, "not a number JSON allows"),
    "beyond float32": (json.dumps(_header()).replace("4.25", "1e39"), {}, "too large for float32"),
    "NaN in binary": (*framed({"inputs": [binary_input("x", NAN_ROWS)]}, NAN_ROWS.tobytes()), "NaN"),
    "truncated binary body": (GOOD_HEADER + ROWS.tobytes()[:-5], {HEADER_LENGTH: str(len(GOOD_HEADER))}, "truncated"),
    "extra bytes after the tensors": (GOOD_HEADER + ROWS.tobytes() + b"\0", {HEADER_LENGTH: str(len(GOOD_HEADER))},
                                      "extra bytes"),
    "header length beyond the body": (GOOD_HEADER + ROWS.tobytes(), {HEADER_LENGTH: "100000"}, HEADER_LENGTH),
    "header length not a number": (GOOD_HEADER + ROWS.tobytes(), {HEADER_LENGTH: "12abc"}, HEADER_LENGTH),
    "binary without the header length": (GOOD_HEADER + ROWS.tobytes(), {}, "not valid JSON"),
    "binary size in a JSON body": (GOOD_HEADER, {}, f"no {HEADER_LENGTH} header"),
    "binary size not the shape's": (*framed({"inputs": [binary_input("x", ROWS) | {"shape": [1, 3]}]}, ROWS.tobytes()),
                                    "is 12 bytes, binary_data_size is 24"),
    # Found by tests/e2e/test_fuzz.py: an empty tensor whose other axes numpy cannot reshape to was a 500.
    "empty binary tensor with a huge axis": (*framed({"inputs": [binary_input("x", ROWS) | {
        "shape": [2**63, 0], "parameters": {"binary_data_size": 0}}]}), "is empty (shape [9223372036854775808, 0])"),
    "empty binary tensor": (*framed({"inputs": [binary_input("x", ROWS[:0])]}), "is empty (shape [0, 3])"),
    "binary size negative": (json.dumps(_header(parameters={"binary_data_size": -1})), {}, "binary_data_size"),
    "data and binary size": (*framed(_header(parameters={"binary_data_size": 24}), ROWS.tobytes()), "both"),
    "shared memory": (json.dumps(_header(parameters={"shared_memory_region": "r"})), {}, "shared-memory"),
    "unknown output": (json.dumps(_header() | {"outputs": [{"name": "nope"}]}), {}, "has no output 'nope'"),
    "classification output": (
        json.dumps(_header() | {"outputs": [{"name": "y", "parameters": {"classification": 2}}]}), {},
        "classification"),
    "binary_data not a boolean": (json.dumps(_header() | {"parameters": {"binary_data_output": "yes"}}), {},
                                  "true or false"),
    "id not a string": (json.dumps(_header() | {"id": 7}), {}, '"id"'),
}


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_bad_requests_are_400_naming_the_problem(client, case):
    body, headers, phrase = BAD_REQUESTS[case]
    message = v2_error(client.post(LINEAR_INFER, data=body, headers=headers), 400)
    assert phrase in message
    good, good_headers = framed({"inputs": [binary_input("x", ROWS)]}, ROWS.tobytes())
    assert decoded(client.post(LINEAR_INFER, data=good, headers=good_headers))


def test_uint8_json_data_must_be_pixels(client):
    pixels = np.zeros((1, 1, 28, 28), dtype=np.uint8)
    request = json_input("pixels", pixels, "UINT8")
    request["data"][0] = 256
    assert "0..255" in v2_error(client.post(DIGITS_INFER, data=json.dumps({"inputs": [request]})), 400)


def test_limits_are_413(make_app):
    client = make_app(max_batch_size=2, max_upload_bytes=4096).test_client()
    rows = np.ones((3, 3), dtype=np.float32)
    body, headers = framed({"inputs": [binary_input("x", rows)]}, rows.tobytes())
    assert "limit is 2" in v2_error(client.post(LINEAR_INFER, data=body, headers=headers), 413)
    v2_error(client.post(LINEAR_INFER, data=b"\0" * 5000, headers={HEADER_LENGTH: "10"}), 413)


def test_compressed_bodies_are_refused(client):
    body, headers = framed({"inputs": [binary_input("x", ROWS)]}, ROWS.tobytes())
    response = client.post(LINEAR_INFER, data=body, headers=headers | {"Content-Encoding": "gzip"})
    assert "gzip" in v2_error(response, 415)


# --- the protocol's error form for every answer under /v2, and only there ---


def test_unknown_paths_and_wrong_methods_under_v2_answer_in_the_protocols_form(client):
    for path in ("/v2/nothing", "/v2/models", "/v2/models/a/b/c", f"/v2/models/{TABULAR_MODEL}/versions"):
        v2_error(client.get(path), 404)
    for method, path in (("get", LINEAR_INFER), ("post", "/v2/health/live"), ("put", f"/v2/models/{TABULAR_MODEL}")):
        response = getattr(client, method)(path)
        v2_error(response, 405)
        assert response.headers["Allow"]
    # The service's own endpoints keep theirs.
    for response, status in ((client.get("/v2nothing"), 404), (client.get("/models/x/predict"), 405)):
        assert response.status_code == status and set(response.get_json()["error"]) == {"code", "message"}


def test_a_bug_under_v2_is_a_500_in_the_protocols_form(client, monkeypatch):
    import service.api.v2

    def broken(model, batches):
        raise RuntimeError("a bug")

    monkeypatch.setattr(service.api.v2, "predict", broken)
    body, headers = framed({"inputs": [binary_input("x", ROWS)]}, ROWS.tobytes())
    assert v2_error(client.post(LINEAR_INFER, data=body, headers=headers), 500) == "internal server error (logged)"
