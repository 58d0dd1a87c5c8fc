"""The inference core's two operations, independent of any protocol.

``classify_images``: image files -> ``imaging.prepare`` -> one batch -> the model's session ->
one result per image (label, its probability, every label's probability, model, version, and
the verdict with its reason when the manifest says how to judge: ``service.verdict``).
``predict``: named float32 arrays checked by ``tensors`` -> the session -> named outputs.
The HTTP blueprints in ``service.api`` only parse requests into these calls and render the
results; another protocol (e.g. Open Inference Protocol v2) would be a similar thin layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service import imaging, metrics, verdict
from service.errors import InvalidInput, NotAnImageModel, ServiceError
from service.manifest import TensorSpec
from service.runtime import LoadedModel
from service.tensors import Batch, images_to_batch


@dataclass(frozen=True)
class ImageUpload:
    # How the client named the image (file name, form field or position), for error messages.
    name: str
    data: bytes


def image_input_of(model: LoadedModel) -> TensorSpec:
    spec = model.manifest.image_input
    if spec is None:
        raise NotAnImageModel(
            f"model {model.name!r} does not take images (its inputs are "
            f"{[(s.name, s.shape) for s in model.manifest.inputs]}); "
            f"use POST /models/{model.name}/predict with numbers"
        )
    return spec


def classify_images(model: LoadedModel, uploads: list[ImageUpload]) -> list[dict]:
    spec = image_input_of(model)
    prepared = []
    for upload in uploads:
        try:
            prepared.append(imaging.prepare(upload.data, spec.image))
        except ServiceError as error:
            # Name the offending image: in a batch of 30 the client needs to know which one.
            error.message = f"image {upload.name}: {error.message}"
            raise
    outputs = _run(model, {spec.name: images_to_batch(prepared, spec)})
    output_spec = model.manifest.outputs[0]
    probabilities = outputs[output_spec.name].reshape(len(uploads), -1)
    labels = output_spec.labels or [str(index) for index in range(probabilities.shape[1])]
    results = []
    for row in probabilities:
        best = int(np.argmax(row))
        results.append(
            {
                "label": labels[best],
                "probability": float(row[best]),
                "probabilities": {label: float(value) for label, value in zip(labels, row)},
                "model": model.name,
                "version": model.number,
                **verdict.fields(row, labels, model.manifest.verdict),
            }
        )
    return results


def predict(model: LoadedModel, inputs: dict[str, Batch]) -> tuple[dict[str, np.ndarray], bool]:
    """Run checked inputs; returns the outputs by name and whether they are unbatched."""
    expected = [spec.name for spec in model.manifest.inputs]
    if sorted(inputs) != sorted(expected):
        raise InvalidInput(f"model {model.name!r} takes inputs {expected}, got {sorted(inputs)}")
    batches = list(inputs.values())
    if len({batch.array.shape[0] for batch in batches}) != 1:
        raise InvalidInput("all inputs must have the same batch size")
    if len({batch.unbatched for batch in batches}) != 1:
        raise InvalidInput("either every input has the batch axis or none has")
    outputs = _run(model, {name: batch.array for name, batch in inputs.items()})
    unbatched = batches[0].unbatched
    if unbatched:
        outputs = {name: value[0] for name, value in outputs.items()}
    return outputs, unbatched


def _run(model: LoadedModel, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    outputs, seconds = model.run(feeds)
    metrics.INFERENCE_TIME.labels(model=model.name).observe(seconds)
    return outputs
