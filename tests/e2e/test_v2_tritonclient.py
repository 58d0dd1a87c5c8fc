"""The Open Inference Protocol as a Triton client meets it: tritonclient.http, unchanged, against
gunicorn serving the committed models (the same server start-up as test_gunicorn.py).

Every committed model's metadata must be its ONNX graph's, and its outputs, JSON or binary,
those of onnxruntime run directly on the .onnx file.  The MNIST test set through binary infer
must score the manifest's accuracy (slow: it needs ../shared/datasets).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import requests
from live_server import COMMITTED_MODELS, IMAGE_MODEL, Server

from service.manifest import read_manifest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from test_accuracy import MNIST_RAW, read_idx  # noqa: E402

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

MODELS = sorted(path.name for path in COMMITTED_MODELS.iterdir() if path.is_dir())
HEADER_LENGTH = "Inference-Header-Content-Length"
ACCURACY_METRIC = "test_accuracy"
# The graph is run on the very pixels training measured: only float rounding may differ.
ACCURACY_TOLERANCE = 0.001
BATCH = 500


@pytest.fixture(scope="module")
def server(live_server) -> Server:
    return live_server  # the session's gunicorn (tests/conftest.py): these tests only read


@pytest.fixture(scope="module")
def client(server) -> httpclient.InferenceServerClient:
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=30)
    yield client
    client.close()


def served_graph(client, name: str) -> tuple[dict, ort.InferenceSession]:
    metadata = client.get_model_metadata(name)
    (version,) = metadata["versions"]
    path = COMMITTED_MODELS / name / version / "model.onnx"
    return metadata, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def graph_tensors(args: list[ort.NodeArg]) -> list[dict]:
    assert all(arg.type == "tensor(float)" for arg in args)
    shape = lambda arg: [dim if isinstance(dim, int) else -1 for dim in arg.shape]  # noqa: E731
    return [{"name": arg.name, "datatype": "FP32", "shape": shape(arg)} for arg in args]


def sample_inputs(session: ort.InferenceSession, rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        arg.name: rng.uniform(0, 1, size=[rows, *arg.shape[1:]]).astype(np.float32)
        for arg in session.get_inputs()
    }


def test_health_and_server_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "digit-serving" and "binary_tensor_data" in metadata["extensions"]


@pytest.mark.parametrize("name", MODELS)
def test_model_metadata_is_the_onnx_graph(client, name):
    metadata, session = served_graph(client, name)
    assert metadata["name"] == name and metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == graph_tensors(session.get_inputs())
    assert metadata["outputs"] == graph_tensors(session.get_outputs())
    assert client.is_model_ready(name) and client.is_model_ready(name, metadata["versions"][0])


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("name", MODELS)
def test_infer_equals_onnxruntime(client, name, binary):
    _, session = served_graph(client, name)
    feeds = sample_inputs(session, rows=5, seed=len(name))
    inputs = []
    for input_name, array in feeds.items():
        tensor = httpclient.InferInput(input_name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    output_names = [arg.name for arg in session.get_outputs()]
    # Binary: name no outputs, so tritonclient asks for all of them as binary data.
    outputs = None if binary else [httpclient.InferRequestedOutput(n, binary_data=False) for n in output_names]
    result = client.infer(name, inputs, outputs=outputs)
    for output_name, expected in zip(output_names, session.run(None, feeds)):
        assert ("data" not in result.get_output(output_name)) == binary
        actual = result.as_numpy(output_name)
        assert actual.dtype == np.float32 and actual.shape == expected.shape
        assert np.abs(actual - expected).max() <= 1e-5


@pytest.mark.slow
@pytest.mark.skipif(not MNIST_RAW.is_dir(), reason=f"MNIST not found in {MNIST_RAW}")
def test_mnist_test_set_through_binary_infer_scores_the_manifest_accuracy(client):
    images = read_idx(MNIST_RAW / "t10k-images-idx3-ubyte")
    labels = read_idx(MNIST_RAW / "t10k-labels-idx1-ubyte")
    metadata = client.get_model_metadata(IMAGE_MODEL)
    manifest = read_manifest(COMMITTED_MODELS / IMAGE_MODEL / metadata["versions"][0] / "manifest.json")
    (pixels_input,) = metadata["inputs"]
    (probabilities,) = metadata["outputs"]
    correct = 0
    for start in range(0, len(images), BATCH):
        batch = images[start : start + BATCH].reshape(-1, *pixels_input["shape"][1:])
        tensor = httpclient.InferInput(pixels_input["name"], list(batch.shape), "UINT8")
        tensor.set_data_from_numpy(batch)
        scores = client.infer(IMAGE_MODEL, [tensor]).as_numpy(probabilities["name"])
        correct += int(np.sum(scores.argmax(axis=1) == labels[start : start + BATCH]))
    accuracy = correct / len(images)
    expected = manifest.metrics[ACCURACY_METRIC]
    print(f"\n{IMAGE_MODEL}: {accuracy:.4f} through V2 binary infer; manifest {ACCURACY_METRIC} {expected:.4f}")
    assert abs(accuracy - expected) <= ACCURACY_TOLERANCE


def raw_infer(server: Server, header: dict, binary: bytes, header_length: int | None = None) -> requests.Response:
    head = json.dumps(header).encode()
    length = len(head) if header_length is None else header_length
    return requests.post(
        f"{server.url}/v2/models/{IMAGE_MODEL}/infer", data=head + binary, headers={HEADER_LENGTH: str(length)},
        timeout=10,
    )


def test_errors_are_v2_4xx_and_the_server_carries_on(server, client):
    pixels = np.zeros((2, 1, 28, 28), dtype=np.float32)

    def infer(model=IMAGE_MODEL, version="", shape=(2, 1, 28, 28), datatype="FP32", array=pixels):
        tensor = httpclient.InferInput("pixels", list(shape), datatype)
        tensor.set_data_from_numpy(array)
        return client.infer(model, [tensor], model_version=version)

    client_cases = {
        "unknown model": (lambda: infer(model="no_such_model"), "404"),
        "unknown version": (lambda: infer(version="99"), "404"),
        "wrong shape": (lambda: infer(shape=(2, 784), array=pixels.reshape(2, 784)), "400"),
        "wrong datatype": (lambda: infer(datatype="FP64", array=pixels.astype(np.float64)), "400"),
    }
    for case, (call, status) in client_cases.items():
        with pytest.raises(InferenceServerException) as raised:
            call()
        assert raised.value.status() == status, case
        assert isinstance(raised.value.message(), str) and raised.value.message(), case

    header = {"inputs": [{"name": "pixels", "shape": [2, 1, 28, 28], "datatype": "FP32",
                          "parameters": {"binary_data_size": pixels.nbytes}}]}
    truncated = raw_infer(server, header, pixels.tobytes()[:-100])
    beyond = raw_infer(server, header, pixels.tobytes(), header_length=pixels.nbytes * 2)
    for response in (truncated, beyond):
        assert response.status_code == 400 and set(response.json()) == {"error"}, response.text

    for _ in range(4):  # both workers still answer
        assert client.is_server_ready()
        assert infer().as_numpy("probabilities").shape == (2, 10)
