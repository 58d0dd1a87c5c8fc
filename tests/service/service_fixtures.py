"""Test helpers shared by tests/service and tests/e2e: small ONNX models built with onnx.helper,
valid manifests, versions written the way training writes them, and drawn digits.

No torch here: the service must work without it, and so must its tests.  (A module with its own
name rather than conftest.py, so that imports cannot pick up another folder's conftest.)
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image, ImageDraw

from service.manifest import MANIFEST_FILENAME, MODEL_FILENAME, Manifest, sha256_of

IMAGE_MODEL = "tiny_digits"
TABULAR_MODEL = "tiny_linear"
LINEAR_WEIGHT = np.array([[1.0, -2.0], [0.5, 3.0], [-1.0, 0.25]], dtype=np.float32)
LINEAR_BIAS = np.array([0.5, -1.0], dtype=np.float32)


def _model(nodes, inputs, outputs, initializers) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "fixture", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # what onnxruntime reads, whatever onnx writes by default
    onnx.checker.check_model(model)
    return model


def digit_classifier(seed: int = 0) -> onnx.ModelProto:
    """pixels [N,1,28,28] -> softmax over 10 labels, like the contract's mnist_mlp."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(0, 0.3, size=(784, 10)).astype(np.float32)
    bias = rng.normal(0, 0.1, size=10).astype(np.float32)
    return _model(
        [
            helper.make_node("Flatten", ["pixels"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "weight"], ["scores"]),
            helper.make_node("Add", ["scores", "bias"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")],
    )


def linear_model(weight: np.ndarray = LINEAR_WEIGHT, bias: np.ndarray = LINEAR_BIAS) -> onnx.ModelProto:
    """x [N,3] -> y = x @ weight + bias [N,2]."""
    return _model(
        [helper.make_node("MatMul", ["x", "weight"], ["xw"]), helper.make_node("Add", ["xw", "bias"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", weight.shape[1]])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")],
    )


def manifest_fields(name: str, version: int) -> dict:
    """A valid manifest for the fixture models, as a dict (without sha256)."""
    if name.startswith("tiny_digits") or name == "mnist_mlp":
        inputs = [{"name": "pixels", "dtype": "float32", "shape": [-1, 1, 28, 28], "description": "pixels in [0, 1]",
                   "image": {"preprocessing": "mnist", "height": 28, "width": 28, "channels": 1}}]
        outputs = [{"name": "probabilities", "dtype": "float32", "shape": [-1, 10], "description": "softmax",
                    "labels": [str(digit) for digit in range(10)]}]
        metrics = {"test_accuracy": 0.1}
    else:
        inputs = [{"name": "x", "dtype": "float32", "shape": [-1, 3], "description": "features"}]
        outputs = [{"name": "y", "dtype": "float32", "shape": [-1, 2], "description": "x @ W + b"}]
        metrics = {"test_mse": 0.0}
    return {
        "name": name,
        "version": version,
        "seed_notebook": "fixture",
        "description": "test fixture",
        "inputs": inputs,
        "outputs": outputs,
        "metrics": metrics,
        "bar": {"metric": next(iter(metrics)), "op": ">=", "threshold": 0.0},
        "training": {"seed": 0, "epochs": 0, "device": "cpu", "seconds": 0.0, "data": "none", "hyperparameters": {}},
        "libraries": {"onnx": onnx.__version__},
        "created": "2026-01-01T00:00:00+00:00",
    }


def write_version(
    root: Path, name: str, version: int, model: onnx.ModelProto | bytes, **manifest_overrides
) -> Path:
    """Write <root>/<name>/<version>/ atomically (temp folder + rename), as training does."""
    model_dir = Path(root) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f".tmp-{version}-{os.getpid()}"
    staging.mkdir()
    data = model if isinstance(model, bytes) else model.SerializeToString()
    (staging / MODEL_FILENAME).write_bytes(data)
    fields = manifest_fields(name, version) | {"sha256": sha256_of(staging / MODEL_FILENAME)} | manifest_overrides
    (staging / MANIFEST_FILENAME).write_text(Manifest.model_validate(fields).to_json())
    final = model_dir / str(version)
    staging.rename(final)
    return final


def registry_of(app):
    return app.extensions["serving"]["registry"]


# --- drawings of digits, in the forms people send them ---


def draw_digit(digit: str = "7", size: int = 280, stroke: int = 18, offset=(0, 0), ink=0, paper=255,
               mode: str = "L") -> Image.Image:
    """A hand-drawn-looking digit (polyline strokes) on plain paper."""
    strokes = {
        "1": [[(0.5, 0.15), (0.5, 0.85)], [(0.38, 0.28), (0.5, 0.15)]],
        "7": [[(0.25, 0.2), (0.72, 0.2), (0.42, 0.85)]],
        "0": [[(0.5, 0.15), (0.7, 0.3), (0.72, 0.65), (0.5, 0.85), (0.3, 0.65), (0.3, 0.3), (0.5, 0.15)]],
        "4": [[(0.6, 0.85), (0.6, 0.15), (0.25, 0.6), (0.75, 0.6)]],
    }[digit]
    image = Image.new("L", (size, size), paper)
    pen = ImageDraw.Draw(image)
    scale = size * 0.6
    for line in strokes:
        points = [(offset[0] + size * 0.2 + x * scale, offset[1] + size * 0.2 + y * scale) for x, y in line]
        pen.line(points, fill=ink, width=stroke, joint="curve")
    return image.convert(mode) if mode != "L" else image


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def metric_value(metrics_text: str, name: str, **labels: str) -> float:
    """One series' value in a Prometheus exposition, summed over matching samples (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )
