"""The comparison point for bench/serve.py: a plain Flask + PyTorch (eager) server for mnist_mlp.

It is what a first version of this service would look like: the MLP as a torch module,
``request.get_json()`` -> tensor -> forward -> JSON, no input validation, no metrics.  The
weights are read from the ONNX initializers of the served model, so both servers compute the
same function (bench/serve.py checks that they agree before timing).  It answers the routes
and bodies the benchmark sends, with the service's response shapes:

    POST /predict                    one image file (the service's MNIST recipe, service.imaging)
    POST /models/mnist_mlp/predict   {"inputs": [...]} or an .npy body (float32, or uint8 pixels)

Run by bench/serve.py as ``gunicorn --chdir bench "serve_torch_baseline:create_app()"`` with
MODEL_REPOSITORY and TORCH_THREADS (torch threads per worker, default 1) in the environment.
Not for production.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import onnx
import torch
from flask import Flask, jsonify, request
from onnx import numpy_helper
from torch import nn

from service import imaging
from service.manifest import MANIFEST_FILENAME, MODEL_FILENAME, read_manifest
from service.repository import version_numbers

MODEL = "mnist_mlp"


class EagerMLP(nn.Module):
    """(pixels - mean) / std, flatten, Linear + ReLU for each hidden layer, Linear, softmax."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, layers: list[nn.Linear]) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.layers = nn.ModuleList(layers)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = ((pixels - self.mean) / self.std).flatten(1)
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return torch.softmax(self.layers[-1](x), dim=1)


def mlp_from_onnx(path: Path) -> EagerMLP:
    """Rebuild the exported MLP from its graph's initializers; refuses any other graph shape."""
    graph = onnx.load(str(path)).graph
    ops = [node.op_type for node in graph.node]
    hidden = (len(ops) - 5) // 2
    expected = ["Sub", "Div", "Reshape"] + ["Gemm", "Relu"] * hidden + ["Gemm", "Softmax"]
    if ops != expected:
        raise ValueError(f"{path}: not the MLP graph this baseline rebuilds ({expected}); it has {ops}")
    weights = {tensor.name: torch.from_numpy(numpy_helper.to_array(tensor).copy()) for tensor in graph.initializer}
    layers = []
    for node in graph.node:
        if node.op_type != "Gemm":
            continue
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if attributes.get("transA", 0) != 0 or attributes.get("transB", 0) != 1:
            raise ValueError(f"{path}: Gemm {node.name} is not x @ W.T + b")
        weight, bias = weights[node.input[1]], weights[node.input[2]]
        layer = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)
        layers.append(layer)
    sub, div = graph.node[0], graph.node[1]
    return EagerMLP(weights[sub.input[1]], weights[div.input[1]], layers).eval()


def newest_version(repository: Path) -> Path:
    versions = version_numbers(repository / MODEL)
    if not versions:
        raise FileNotFoundError(f"no version of {MODEL} in {repository}")
    return repository / MODEL / str(versions[-1])


def create_app() -> Flask:
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
    version_dir = newest_version(Path(os.environ.get("MODEL_REPOSITORY", "models")))
    manifest = read_manifest(version_dir / MANIFEST_FILENAME)
    version = manifest.version
    image_spec = manifest.inputs[0].image
    labels = manifest.outputs[0].labels
    model = mlp_from_onnx(version_dir / MODEL_FILENAME)
    app = Flask(__name__)

    def forward(pixels: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(pixels)).numpy()

    @app.post("/predict")
    def predict_image():
        pixels = imaging.prepare(request.get_data(), image_spec)
        row = forward(pixels[np.newaxis, np.newaxis])[0]
        best = int(np.argmax(row))
        return jsonify(
            {"label": labels[best], "probability": float(row[best]),
             "probabilities": dict(zip(labels, row.tolist())), "model": MODEL, "version": version}
        )

    @app.post(f"/models/{MODEL}/predict")
    def predict_batch():
        if request.mimetype == "application/x-npy":
            array = np.load(io.BytesIO(request.get_data()), allow_pickle=False)
            pixels = array.astype(np.float32) / 255 if array.dtype == np.uint8 else array
        else:
            pixels = np.asarray(request.get_json()["inputs"], dtype=np.float32)
        return jsonify({"model": MODEL, "version": version, "outputs": forward(pixels).tolist()})

    @app.get("/readyz")
    def ready():
        return jsonify({"ready": True})

    return app
