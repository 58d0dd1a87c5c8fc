"""The model repository over HTTP: what is served, and predictions with numbers.

GET  /models                  every model: served version, versions on disk, provider, errors
GET  /models/<name>           one model in full: signature and manifest too
POST /models/<name>/predict   {"inputs": ...} -> {"outputs": ...}; or a .npy body (see below)

Inputs: for a model with one input, ``"inputs"`` is a nested list (a batch, or one sample with
the batch axis left out, answered the same way); with several inputs, an object by input name.
Outputs mirror that: a nested list for one output, an object by output name otherwise.
``Content-Type: application/x-npy`` sends one input as a .npy array (float32, or uint8 pixels
0..255 for image inputs); ``Accept: application/x-npy`` answers a single output as .npy, and an
``Accept`` that allows neither JSON nor .npy is answered 406.
"""

from __future__ import annotations

import io

import numpy as np
from flask import Blueprint, Response, g, request

from service.api import bodies, config, registry
from service.errors import InvalidInput, NotAcceptable
from service.inference import predict
from service.registry import ModelState
from service.runtime import LoadedModel
from service.schemas import LoadError, ModelDetail, ModelList, ModelSummary, NumbersRequest, NumbersResponse
from service.tensors import fit_to_spec, from_json, from_npy

blueprint = Blueprint("models", __name__)

JSON = "application/json"
NPY = "application/x-npy"


@blueprint.get("/models")
def list_models():
    return bodies.render(ModelList(models=[_summary(state) for state in registry().states().values()]))


@blueprint.get("/models/<name>")
def describe_model(name: str):
    state = registry().state(name)
    served = state.served
    return bodies.render(
        ModelDetail(
            **dict(_summary(state)),
            requested_providers=served.requested_providers if served else None,
            providers=served.providers if served else None,
            inputs=served.manifest.inputs if served else None,
            outputs=served.manifest.outputs if served else None,
            manifest=served.manifest if served else None,
        )
    )


def _summary(state: ModelState) -> ModelSummary:
    served = state.served
    return ModelSummary(
        name=state.name,
        served_version=served.number if served else None,
        versions_on_disk=state.versions_on_disk,
        provider=served.providers[0] if served else None,
        provider_fallback=served.provider_fallback if served else None,
        accepts_images=bool(served and served.manifest.image_input),
        load_errors=[LoadError(version=failure.version, error=failure.reason) for failure in state.failures.values()],
    )


@blueprint.post("/models/<name>/predict")
def predict_numbers(name: str):
    model = registry().get(name)
    g.model, g.version = model.name, model.number
    wants_npy = _answer_type() == NPY
    if wants_npy and len(model.manifest.outputs) != 1:
        raise NotAcceptable(f"{NPY} answers carry one array; model {name!r} has several outputs")
    inputs = _read_inputs(model)
    batches = {spec.name: fit_to_spec(inputs[spec.name], spec, config().max_batch_size) for spec in model.manifest.inputs}
    outputs, _ = predict(model, batches)
    if wants_npy:
        buffer = io.BytesIO()
        np.save(buffer, next(iter(outputs.values())), allow_pickle=False)
        return Response(buffer.getvalue(), mimetype=NPY)
    return bodies.render(
        NumbersResponse(
            model=model.name,
            version=model.number,
            outputs=next(iter(outputs.values())) if len(outputs) == 1 else outputs,
        )
    )


def _read_inputs(model: LoadedModel) -> dict[str, np.ndarray]:
    specs = model.manifest.inputs
    if request.mimetype == NPY:
        if len(specs) != 1:
            raise InvalidInput(f"a {NPY} body carries one array; model {model.name!r} has {len(specs)} inputs")
        return {specs[0].name: from_npy(request.get_data(), specs[0].image)}
    if not bodies.is_json_request():
        raise bodies.unsupported([JSON, NPY])
    inputs = bodies.parse(NumbersRequest, bodies.json_body()).inputs
    if len(specs) == 1:
        return {specs[0].name: from_json(inputs, "inputs")}
    if not isinstance(inputs, dict) or set(inputs) != {spec.name for spec in specs}:
        raise InvalidInput(f'model {model.name!r} has several inputs: send "inputs" as an object with keys '
                           f"{[spec.name for spec in specs]}")
    return {spec.name: from_json(inputs[spec.name], f"inputs.{spec.name}") for spec in specs}


def _answer_type() -> str:
    """JSON, or .npy when the client prefers it; 406 when its Accept allows neither."""
    answer = request.accept_mimetypes.best_match([JSON, NPY]) if request.headers.get("Accept") else JSON
    if answer is None:
        raise NotAcceptable(
            f"Accept: {request.headers['Accept']} allows neither answer this endpoint gives: {JSON} or {NPY}"
        )
    return answer
