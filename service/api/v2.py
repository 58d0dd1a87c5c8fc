"""The Open Inference Protocol (KServe V2, HTTP/REST) with the binary tensor data extension.

GET  /v2/health/live                               200 while the worker answers
GET  /v2/health/ready                              200 when every model has a loaded version and the worker is not draining, else 400
GET  /v2                                           server metadata: name, version, extensions
GET  /v2/models/<name>[/versions/<v>]              model metadata: inputs and outputs, FP32, -1 = any size
GET  /v2/models/<name>[/versions/<v>]/ready        200 when the model has a loaded version, else 400
POST /v2/models/<name>[/versions/<v>]/infer        tensors in, tensors out (JSON or binary)

A thin layer over ``inference.predict``, like POST /models/<name>/predict: the same registry,
the same input checks (``tensors``), the same limits.  Only the served version answers under its
number (the newest valid one, Triton's default policy too); any other is a 404 naming it.
Inputs are FP32, or UINT8 pixels 0..255 for an image input (the rule of the .npy bodies).
The body is read raw whatever its Content-Type, since tritonclient sends none.  The JSON (or
the JSON header of a binary body) is validated with ``schemas.V2InferenceRequest``, and answers
are rendered with the V2 models of ``service.schemas``: the ones GET /openapi.json describes.
Errors take the protocol's form, ``{"error": "<message>"}`` (``service.errors`` renders every
error under /v2 so): 400 for a request the model cannot take, 404 an unknown model or version,
413 over a limit, 415 a compressed body, 503 a model with no loadable version.  The health
endpoints answer "false" with 400, as the protocol says (a 4xx) and Triton does.
"""

from __future__ import annotations

import json
import math
from importlib import metadata

import numpy as np
from flask import Blueprint, Response, g, request
from pydantic import ValidationError

from service import lifecycle, v2_binary
from service.api import bodies, config, registry
from service.errors import InvalidInput, MalformedRequest, ModelNotFound, ModelUnavailable, UnsupportedMediaType
from service.inference import predict
from service.manifest import TensorSpec
from service.runtime import LoadedModel
from service.schemas import (
    V2BinaryData,
    V2Error,
    V2InferenceRequest,
    V2InferenceResponse,
    V2InputTensor,
    V2ModelMetadata,
    V2ModelReady,
    V2OutputTensor,
    V2RequestedOutput,
    V2ServerLive,
    V2ServerMetadata,
    V2ServerReady,
    V2TensorMetadata,
)
from service.tensors import MAX_DIMENSIONS, fit_to_spec, from_array, from_json

blueprint = Blueprint("v2", __name__)

SERVER_NAME = "digit-serving"
PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["binary_tensor_data"]
# Manifest dtype -> V2 datatype, for metadata and outputs.
DATATYPE_OF = {"float32": "FP32"}
# What an input may be sent as (schemas.V2InputDatatype): UINT8 only for image inputs (``tensors.from_array``).
INPUT_DATATYPES = {"FP32": np.dtype("<f4"), "UINT8": np.dtype("u1")}


def _not_ready(message: str) -> Response:
    return bodies.render(V2Error(error=message), 400)


# --- health and metadata ---


@blueprint.get("/v2/health/live")
def server_live():
    return bodies.render(V2ServerLive(live=True))


@blueprint.get("/v2/health/ready")
def server_ready():
    # As /readyz: a draining worker says "send no more" at once (KServe probes this path).
    if lifecycle.draining():
        return _not_ready("not ready: draining, the server is shutting down")
    missing = registry().not_ready()
    if missing:
        return _not_ready("not ready: " + "; ".join(f"{name}: {reason}" for name, reason in missing.items()))
    return bodies.render(V2ServerReady(ready=True))


# strict_slashes=False: /v2/ answers too, without a redirect.
@blueprint.get("/v2", strict_slashes=False)
def server_metadata():
    return bodies.render(V2ServerMetadata(name=SERVER_NAME, version=_server_version(), extensions=EXTENSIONS))


def _server_version() -> str:
    try:
        return metadata.version(SERVER_NAME)
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


@blueprint.get("/v2/models/<name>", defaults={"version": None})
@blueprint.get("/v2/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None):
    model = _served(name, version)
    return bodies.render(
        V2ModelMetadata(
            name=model.name,
            versions=[str(model.number)],
            platform=PLATFORM,
            inputs=[_tensor_metadata(spec) for spec in model.manifest.inputs],
            outputs=[_tensor_metadata(spec) for spec in model.manifest.outputs],
        )
    )


def _tensor_metadata(spec: TensorSpec) -> V2TensorMetadata:
    return V2TensorMetadata(name=spec.name, datatype=DATATYPE_OF[spec.dtype], shape=spec.shape)


@blueprint.get("/v2/models/<name>/ready", defaults={"version": None})
@blueprint.get("/v2/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None):
    try:
        model = _served(name, version)
    except ModelUnavailable as error:
        return _not_ready(error.message)
    return bodies.render(V2ModelReady(name=model.name, ready=True))


def _served(name: str, version: str | None) -> LoadedModel:
    """The served version of the model; 404 for an unknown model or any other version."""
    model = registry().get(name)
    if version is not None and version != str(model.number):
        raise ModelNotFound(
            f"model {name!r} has no version {version!r} being served; the served version is {model.number} "
            "(the newest valid one); omit the version or ask for that one"
        )
    g.model, g.version = model.name, model.number
    return model


# --- inference ---


@blueprint.post("/v2/models/<name>/infer", defaults={"version": None})
@blueprint.post("/v2/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None):
    model = _served(name, version)
    infer_request, binary, framed = _read_body()
    outputs_wanted = _requested_outputs(infer_request.outputs, model, infer_request.parameters.binary_data_output)
    max_batch_size = config().max_batch_size
    batches = {
        spec.name: fit_to_spec(array, spec, max_batch_size, allow_unbatched=False)
        for spec, array in _read_inputs(infer_request.inputs, binary, framed, model)
    }
    outputs, _ = predict(model, batches)
    return _render(model, infer_request.id, outputs, outputs_wanted)


def _read_body() -> tuple[V2InferenceRequest, memoryview, bool]:
    """The inference request, the binary tensor data after it, and whether it is framed."""
    encoding = request.headers.get("Content-Encoding", "identity")
    if encoding != "identity":
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; send the body uncompressed")
    header_length = request.headers.get(v2_binary.HEADER_LENGTH)
    header, binary = v2_binary.split(request.get_data(), header_length)
    try:
        payload = bodies.parse_json(header)
    except MalformedRequest as error:
        if header_length is None:
            error.message += f" (a body with binary tensors needs the {v2_binary.HEADER_LENGTH} header)"
        raise
    try:
        infer_request = V2InferenceRequest.model_validate(payload)
    except ValidationError as exc:
        raise MalformedRequest(_problem(exc.errors(include_url=False)[0], payload)) from None
    return infer_request, binary, header_length is not None


# pydantic's words for a wrong value -> the service's, after the JSON path of the value.
_MUST = {
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "too_short": "must not be empty",
}


def _problem(error: dict, payload: object) -> str:
    """One validation error as a sentence naming where it is: input 'x': "shape[0]" must be ..."""
    location, subject = list(error["loc"]), "the inference request"
    if len(location) >= 2 and location[0] in ("inputs", "outputs"):  # name the tensor, as later errors do
        key, index, *location = location
        entry = payload[key][index]
        named = isinstance(entry, dict) and isinstance(entry.get("name"), str)
        subject = f"{key[:-1]} {entry['name']!r}" if named else f"{key}[{index}]"
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in location).lstrip(".")
    if error["type"] == "missing":
        return f'{subject} needs "{path}"'
    if error["type"] == "datatype":  # a message of service.schemas, that names the value itself
        return f"{subject}: {error['msg']}"
    wrong = _MUST.get(error["type"]) or error["msg"].replace("Input should", "must", 1)
    if error["type"] != "too_short":
        wrong += f", not {_shown(error['input'])}"
    if not path:
        return f"{subject} {wrong}"
    return f'"{path}" {wrong}' if subject == "the inference request" else f'{subject}: "{path}" {wrong}'


def _shown(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _read_inputs(
    entries: list[V2InputTensor], binary: memoryview, framed: bool, model: LoadedModel
) -> list[tuple[TensorSpec, np.ndarray]]:
    specs = {spec.name: spec for spec in model.manifest.inputs}
    binary_sizes, seen = [], set()
    for entry in entries:
        if entry.name not in specs:
            raise InvalidInput(f"model {model.name!r} has no input {entry.name!r}; its inputs are {list(specs)}")
        if entry.name in seen:
            raise MalformedRequest(f"input {entry.name!r} is given twice")
        seen.add(entry.name)
        size = _binary_size(entry)
        if size is not None:
            binary_sizes.append((entry.name, size))
    if binary_sizes and not framed:
        raise MalformedRequest(f"inputs have binary_data_size but the request has no {v2_binary.HEADER_LENGTH} header")
    blobs = v2_binary.slices(binary, binary_sizes)
    return [(specs[entry.name], _array(entry, blobs.get(entry.name), specs[entry.name])) for entry in entries]


def _binary_size(entry: V2InputTensor) -> int | None:
    if any(key.startswith("shared_memory") for key in entry.parameters.model_extra):
        raise MalformedRequest(f"input {entry.name!r}: the shared-memory extension is not supported; send the data")
    size = entry.parameters.binary_data_size
    if size is None and entry.data is None:
        raise MalformedRequest(f'input {entry.name!r} needs "data" or parameters.binary_data_size')
    if size is not None and entry.data is not None:
        raise MalformedRequest(f'input {entry.name!r} has both "data" and parameters.binary_data_size')
    return size


def _array(entry: V2InputTensor, blob: memoryview | None, spec: TensorSpec) -> np.ndarray:
    """One input tensor -> float32 in its stated shape, by the service's dtype rule."""
    where = f"input {spec.name!r}"
    shape = entry.shape
    if len(shape) > MAX_DIMENSIONS:  # numpy cannot even reshape to many more
        raise MalformedRequest(f'{where}: "shape" has {len(shape)} axes; at most {MAX_DIMENSIONS} are accepted')
    count = math.prod(shape)
    if count == 0:  # refused like any empty array; and its other axes may be too large for numpy to reshape to
        raise InvalidInput(f"{where} is empty (shape {shape})")
    if blob is not None:
        dtype = INPUT_DATATYPES[entry.datatype]
        if len(blob) != count * dtype.itemsize:
            raise InvalidInput(
                f"{where}: shape {shape} of {entry.datatype} is {count * dtype.itemsize} bytes, "
                f"binary_data_size is {len(blob)}"
            )
        array = np.frombuffer(blob, dtype=dtype).reshape(shape)
    else:
        values = from_json(entry.data, f"{where} data")
        if values.size != count:
            raise InvalidInput(f"{where}: shape {shape} holds {count} values, its data has {values.size}")
        if entry.datatype == "UINT8":
            if not np.all((values >= 0) & (values <= 255) & (values == np.round(values))):
                raise InvalidInput(f"{where}: UINT8 data must be whole numbers 0..255")
            values = values.astype(np.uint8)
        array = values.reshape(shape)
    return from_array(array, spec.image, where=where)


def _requested_outputs(
    entries: list[V2RequestedOutput] | None, model: LoadedModel, binary_default: bool
) -> list[tuple[str, bool]]:
    """(output name, as binary?) in the order asked for; every output when none is named."""
    names = [spec.name for spec in model.manifest.outputs]
    if not entries:
        return [(name, binary_default) for name in names]
    wanted: list[tuple[str, bool]] = []
    for entry in entries:
        if entry.name not in names:
            raise InvalidInput(f"model {model.name!r} has no output {entry.name!r}; its outputs are {names}")
        if any(entry.name == seen for seen, _ in wanted):
            raise MalformedRequest(f"output {entry.name!r} is asked for twice")
        extra = entry.parameters.model_extra
        lacking = [key for key in extra if key == "classification" or key.startswith("shared_memory")]
        if lacking:
            raise MalformedRequest(f"output {entry.name!r}: {lacking[0]!r} belongs to an extension this server lacks")
        binary = entry.parameters.binary_data
        wanted.append((entry.name, binary_default if binary is None else binary))
    return wanted


def _render(
    model: LoadedModel, request_id: str | None, outputs: dict[str, np.ndarray], wanted: list[tuple[str, bool]]
) -> Response:
    datatypes = {spec.name: DATATYPE_OF[spec.dtype] for spec in model.manifest.outputs}
    entries, blobs = [], []
    for name, binary in wanted:
        value = outputs[name]
        tensor = {"name": name, "datatype": datatypes[name], "shape": list(value.shape)}
        if binary:
            data = np.ascontiguousarray(value, dtype="<f4").tobytes()
            blobs.append(data)
            entries.append(V2OutputTensor(**tensor, parameters=V2BinaryData(binary_data_size=len(data))))
        else:
            entries.append(V2OutputTensor(**tensor, data=value.ravel().tolist()))
    response = V2InferenceResponse(
        model_name=model.name, model_version=str(model.number), id=request_id, outputs=entries
    )
    if not blobs:
        return bodies.render(response)
    # Outputs are checked finite by the runtime; allow_nan=False keeps it so.
    header = json.dumps(response.model_dump(), allow_nan=False, separators=(",", ":")).encode()
    body, header_length = v2_binary.join(header, blobs)
    return Response(body, mimetype="application/octet-stream", headers={v2_binary.HEADER_LENGTH: str(header_length)})
