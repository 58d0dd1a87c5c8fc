"""The floor for bench/compare.py: the naive app plus every feature issue 10 keeps on, each at its cheapest.

bench/naive_app.py does no more than answer.  This app answers the same routes with what the
service does on every request, written as directly as Flask allows and reusing the service's
own pieces for the work itself: a request id (echoed in X-Request-ID and bound to the log
line), one JSON log line through ``logging`` (``service.logs``), the request counter and latency
histogram and the inference histogram (``service.metrics``, multiprocess mode), the MNIST recipe
(``service.imaging.prepare``), the verdict (``service.verdict``), the result checked against its
schema (``service.schemas.ImageResult``), numbers and their shape checked by ``service.tensors``, outputs
checked to be finite.  What it leaves out is the service's structure: blueprints, the model
registry and refresh, content negotiation, ``?include=``, error handlers.

So the three servers of ``compare.py --floor`` split the gap: naive -> floor is what Flask
charges for the features themselves, floor -> service is the cost of the service's structure.
Run under gunicorn.conf.py (the service's worker) with PROMETHEUS_MULTIPROC_DIR set.  Not for
production.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
from flask import Flask, Response, request

from service import imaging, logs, metrics, tensors, verdict
from service.jsonio import json_response
from service.manifest import MANIFEST_FILENAME, MODEL_FILENAME, read_manifest
from service.repository import version_numbers
from service.schemas import ImageResult

MODEL = "mnist_mlp"
access_log = logging.getLogger("service.access")


def create_app() -> Flask:
    model_dir = Path(os.environ.get("MODEL_REPOSITORY", "models")) / MODEL
    version = version_numbers(model_dir)[-1]
    manifest = read_manifest(model_dir / str(version) / MANIFEST_FILENAME)
    spec = manifest.image_input
    labels = manifest.outputs[0].labels
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_dir / str(version) / MODEL_FILENAME), options,
                                   providers=["CPUExecutionProvider"])
    app = Flask(__name__)
    requests_done = metrics.labelled(metrics.REQUESTS, "any", MODEL, 200)
    latency = metrics.labelled(metrics.REQUEST_LATENCY, "any")
    inference_time = metrics.labelled(metrics.INFERENCE_TIME, MODEL)

    def run(pixels: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        outputs = session.run(None, {spec.name: pixels})[0]
        inference_time.observe(time.perf_counter() - started)
        if not np.isfinite(outputs).all():
            raise ValueError("non-finite output")
        return outputs

    answer = app.wsgi_app

    def with_request_id(environ, start_response):
        environ["request_id"], environ["started"] = logs.new_request_id(), time.perf_counter()
        token = logs.request_id.set(environ["request_id"])
        try:
            return answer(environ, start_response)
        finally:
            logs.request_id.reset(token)

    app.wsgi_app = with_request_id

    @app.after_request
    def bookkeeping(response: Response) -> Response:
        seconds = time.perf_counter() - request.environ["started"]
        requests_done.inc()
        latency.observe(seconds)
        response.headers["X-Request-ID"] = request.environ["request_id"]
        access_log.info("%s %s %d", request.method, request.path, response.status_code,
                        extra={"latency_ms": round(seconds * 1000, 2), "model": MODEL, "version": version})
        return response

    @app.post("/predict")
    def predict_image():
        picture = imaging.prepare(request.get_data(), spec.image)
        metrics.IMAGES_PER_REQUEST.observe(1)
        row = run(picture[np.newaxis, np.newaxis])[0]
        best = int(np.argmax(row))
        values = row.tolist()
        result = {"label": labels[best], "probability": values[best], "probabilities": dict(zip(labels, values)),
                  "model": MODEL, "version": version, **verdict.judge(row, labels, manifest.verdict)}
        return json_response(ImageResult.model_validate(result).model_dump())

    @app.post(f"/models/{MODEL}/predict")
    def predict_numbers():
        if request.mimetype == "application/x-npy":
            pixels = tensors.from_npy(request.get_data(), spec.image)
        else:
            pixels = tensors.from_json(orjson.loads(request.get_data())["inputs"])
        batch = tensors.fit_to_spec(pixels, spec, max_batch_size=1024)
        return json_response({"model": MODEL, "version": version, "outputs": run(batch.array)})

    @app.get("/healthz")
    def alive():
        return json_response({"status": "alive"})

    @app.get("/readyz")
    def ready():
        return json_response({"status": "ready"})

    return app
