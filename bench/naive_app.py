"""The reference for bench/compare.py: ten lines of Flask + onnxruntime, as a first version would be.

Plain ``gunicorn --workers 2 "bench.naive_app:create_app()"`` (sync workers), the same model
file, one onnxruntime thread per worker.  No validation, no request ids, no log line, no
metrics; Pillow's plain resize instead of the MNIST recipe.  It answers the routes and bodies
bench/compare.py sends, with the service's response shapes:

    POST /predict                    one image file -> label and probabilities
    POST /models/mnist_mlp/predict   {"inputs": [...]} or a .npy body (float32, or uint8 pixels)
    GET  /healthz

MODEL_REPOSITORY names the repository (default ./models); the newest mnist_mlp version is served.
Not for production.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from flask import Flask, jsonify, request
from PIL import Image

from service.manifest import MANIFEST_FILENAME, MODEL_FILENAME, read_manifest
from service.repository import version_numbers

MODEL = "mnist_mlp"


def create_app() -> Flask:
    model_dir = Path(os.environ.get("MODEL_REPOSITORY", "models")) / MODEL
    version_dir = model_dir / str(version_numbers(model_dir)[-1])
    manifest = read_manifest(version_dir / MANIFEST_FILENAME)
    labels = manifest.outputs[0].labels
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(version_dir / MODEL_FILENAME), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    app = Flask(__name__)

    def run(pixels: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: pixels})[0]

    @app.post("/predict")
    def predict_image():
        image = Image.open(io.BytesIO(request.get_data())).convert("L").resize((28, 28))
        row = run(np.asarray(image, dtype=np.float32)[np.newaxis, np.newaxis] / 255)[0]
        best = int(np.argmax(row))
        return jsonify({"label": labels[best], "probability": float(row[best]),
                        "probabilities": dict(zip(labels, row.tolist())), "model": MODEL, "version": manifest.version})

    @app.post(f"/models/{MODEL}/predict")
    def predict_numbers():
        if request.mimetype == "application/x-npy":
            array = np.load(io.BytesIO(request.get_data()), allow_pickle=False)
            pixels = array.astype(np.float32) / 255 if array.dtype == np.uint8 else array
        else:
            pixels = np.asarray(request.get_json()["inputs"], dtype=np.float32)
        return jsonify({"model": MODEL, "version": manifest.version, "outputs": run(pixels).tolist()})

    @app.get("/healthz")
    def alive():
        return jsonify({"status": "alive"})

    @app.get("/readyz")
    def ready():
        return jsonify({"status": "ready"})

    return app
