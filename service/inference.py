"""The inference core's two operations, independent of any protocol.

``classify_images``: image files -> ``imaging.prepare`` -> one batch -> the model's session ->
one result per image (label, its probability, every label's probability, model, version; the
verdict with its reason when the manifest says how to judge, see ``service.verdict``; on
request the prepared picture and an occlusion map, see ``service.explanation``).
``predict``: named float32 arrays checked by ``tensors`` -> the session -> named outputs.
The HTTP blueprints in ``service.api`` only parse requests into these calls and render the
results; the Open Inference Protocol (``service.api.v2``) is another such thin layer.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from service import explanation, imaging, metrics, verdict
from service.errors import InvalidInput, NotAnImageModel, ServiceError
from service.manifest import TensorSpec
from service.runtime import LoadedModel
from service.tensors import Batch, images_to_batch


# What a client may ask to add to each image result: the picture the model saw, and why it answered.
IMAGE_RESULT_OPTIONS = ("input", "explanation")


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


def classify_images(model: LoadedModel, uploads: list[ImageUpload], include: Collection[str] = ()) -> list[dict]:
    unknown = sorted(set(include) - set(IMAGE_RESULT_OPTIONS))
    if unknown:
        raise InvalidInput(f"unknown include option(s) {unknown}; allowed: {list(IMAGE_RESULT_OPTIONS)}")
    spec = image_input_of(model)
    prepared = []
    for upload in uploads:
        try:
            prepared.append(imaging.prepare(upload.data, spec.image))
        except ServiceError as error:
            # Name the offending image: in a batch of 30 the client needs to know which one.
            error.message = f"image {upload.name}: {error.message}"
            raise
    probabilities = _probabilities(model, spec, prepared)
    output_spec = model.manifest.outputs[0]
    labels = output_spec.labels or [str(index) for index in range(probabilities.shape[1])]
    results = []
    for picture, row in zip(prepared, probabilities):
        best = int(np.argmax(row))
        values = row.tolist()  # Python floats in one call, not one float() per label
        results.append(
            {
                "label": labels[best],
                "probability": values[best],
                "probabilities": dict(zip(labels, values)),
                "model": model.name,
                "version": model.number,
                **verdict.fields(row, labels, model.manifest.verdict),
            }
            | _requested_extras(model, spec, picture, best, include)
        )
    return results


def _requested_extras(
    model: LoadedModel, spec: TensorSpec, picture: np.ndarray, best: int, include: Collection[str]
) -> dict:
    extras = {}
    if "input" in include:
        extras["input"] = explanation.picture_data_url(picture)
    if "explanation" in include:
        occlusion = explanation.occlusion_map(picture, best, lambda batch: _probabilities(model, spec, batch))
        extras["explanation"] = np.round(occlusion, 4).tolist()  # 4 decimals: a map, not a measurement
    return extras


def _probabilities(model: LoadedModel, spec: TensorSpec, pictures: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Prepared pictures [n, h, w] -> the first output as [n, labels]."""
    outputs = _run(model, {spec.name: images_to_batch(pictures, spec)})
    return outputs[model.manifest.outputs[0].name].reshape(len(pictures), -1)


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
    metrics.labelled(metrics.INFERENCE_TIME, model.name).observe(seconds)
    return outputs
