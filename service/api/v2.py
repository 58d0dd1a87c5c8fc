"""The Open Inference Protocol (KServe V2, HTTP/REST) with the binary tensor data extension.

GET  /v2/health/live                               200 while the worker answers
GET  /v2/health/ready                              200 when every model has a loaded version, else 400
GET  /v2                                           server metadata: name, version, extensions
GET  /v2/models/<name>[/versions/<v>]              model metadata: inputs and outputs, FP32, -1 = any size
GET  /v2/models/<name>[/versions/<v>]/ready        200 when the model has a loaded version, else 400
POST /v2/models/<name>[/versions/<v>]/infer        tensors in, tensors out (JSON or binary)

A thin layer over ``inference.predict``, like POST /models/<name>/predict: the same registry,
the same input checks (``tensors``), the same limits.  Only the served version answers under its
number (the newest valid one, Triton's default policy too); any other is a 404 naming it.
Inputs are FP32, or UINT8 pixels 0..255 for an image input (the rule of the .npy bodies).
The body is read raw whatever its Content-Type, since tritonclient sends none.  Errors take the
protocol's form, ``{"error": "<message>"}``: 400 for a request the model cannot take, 404 an
unknown model or version, 413 over a limit, 415 a compressed body, 503 a model with no loadable
version.  The health endpoints answer "false" with 400, as the protocol says (a 4xx) and
Triton does.
"""

from __future__ import annotations

import json
import math
from importlib import metadata

import numpy as np
from flask import Blueprint, Response, g, request
from werkzeug.exceptions import HTTPException

from service import v2_binary
from service.api import config, registry
from service.api.bodies import parse_json
from service.errors import (
    InvalidInput,
    MalformedRequest,
    ModelNotFound,
    ModelUnavailable,
    ServiceError,
    UnsupportedMediaType,
)
from service.inference import predict
from service.jsonio import json_response
from service.manifest import TensorSpec
from service.runtime import LoadedModel
from service.tensors import MAX_DIMENSIONS, fit_to_spec, from_array, from_json

blueprint = Blueprint("v2", __name__)

SERVER_NAME = "digit-serving"
PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["binary_tensor_data"]
# Manifest dtype -> V2 datatype, for metadata and outputs.
DATATYPE_OF = {"float32": "FP32"}
# What an input may be sent as: FP32 always; UINT8 only for image inputs (``tensors.from_array``).
INPUT_DATATYPES = {"FP32": np.dtype("<f4"), "UINT8": np.dtype("u1")}


@blueprint.errorhandler(ServiceError)
def _service_error(error: ServiceError) -> Response:
    # The service's 422 ("the model cannot take this") is the protocol's 400 bad request.
    return _error(400 if error.status == 422 else error.status, error.message)


@blueprint.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    return _error(error.code or 500, error.description or error.name)


def _error(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


# --- health and metadata ---


@blueprint.get("/v2/health/live")
def server_live():
    return json_response({"live": True})


@blueprint.get("/v2/health/ready")
def server_ready():
    missing = registry().not_ready()
    if missing:
        return _error(400, "not ready: " + "; ".join(f"{name}: {reason}" for name, reason in missing.items()))
    return json_response({"ready": True})


@blueprint.get("/v2")
@blueprint.get("/v2/")
def server_metadata():
    return json_response({"name": SERVER_NAME, "version": _server_version(), "extensions": EXTENSIONS})


def _server_version() -> str:
    try:
        return metadata.version(SERVER_NAME)
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


@blueprint.get("/v2/models/<name>", defaults={"version": None})
@blueprint.get("/v2/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None):
    model = _served(name, version)
    return json_response(
        {
            "name": model.name,
            "versions": [str(model.number)],
            "platform": PLATFORM,
            "inputs": [_tensor_metadata(spec) for spec in model.manifest.inputs],
            "outputs": [_tensor_metadata(spec) for spec in model.manifest.outputs],
        }
    )


def _tensor_metadata(spec: TensorSpec) -> dict:
    return {"name": spec.name, "datatype": DATATYPE_OF[spec.dtype], "shape": spec.shape}


@blueprint.get("/v2/models/<name>/ready", defaults={"version": None})
@blueprint.get("/v2/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None):
    try:
        model = _served(name, version)
    except ModelUnavailable as error:
        return _error(400, error.message)
    return json_response({"name": model.name, "ready": True})


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
    payload, binary, framed = _read_body()
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise MalformedRequest('"id" must be a string')
    parameters = _parameters(payload, "the request")
    outputs_wanted = _requested_outputs(payload.get("outputs"), model, _flag(parameters, "binary_data_output", False))
    max_batch_size = config().max_batch_size
    batches = {
        spec.name: fit_to_spec(array, spec, max_batch_size, allow_unbatched=False)
        for spec, array in _read_inputs(payload.get("inputs"), binary, framed, model)
    }
    outputs, _ = predict(model, batches)
    return _render(model, request_id, outputs, outputs_wanted)


def _read_body() -> tuple[dict, memoryview, bool]:
    """The inference request object, the binary tensor data after it, and whether it is framed."""
    encoding = request.headers.get("Content-Encoding", "identity")
    if encoding != "identity":
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; send the body uncompressed")
    header_length = request.headers.get(v2_binary.HEADER_LENGTH)
    header, binary = v2_binary.split(request.get_data(), header_length)
    try:
        payload = parse_json(header)
    except MalformedRequest as error:
        if header_length is None:
            error.message += f" (a body with binary tensors needs the {v2_binary.HEADER_LENGTH} header)"
        raise
    if not isinstance(payload, dict):
        raise MalformedRequest('the inference request must be a JSON object with "inputs"')
    return payload, binary, header_length is not None


def _read_inputs(
    entries: object, binary: memoryview, framed: bool, model: LoadedModel
) -> list[tuple[TensorSpec, np.ndarray]]:
    if not isinstance(entries, list) or not entries:
        raise MalformedRequest('"inputs" must be a non-empty list of tensors')
    specs = {spec.name: spec for spec in model.manifest.inputs}
    tensors, binary_sizes = [], []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise MalformedRequest(f"inputs[{index}] must be an object with a \"name\"")
        name = entry["name"]
        if name not in specs:
            raise InvalidInput(f"model {model.name!r} has no input {name!r}; its inputs are {list(specs)}")
        if any(name == seen["name"] for seen in tensors):
            raise MalformedRequest(f"input {name!r} is given twice")
        size = _binary_size(entry, name)
        if size is not None:
            binary_sizes.append((name, size))
        tensors.append(entry)
    if binary_sizes and not framed:
        raise MalformedRequest(f"inputs have binary_data_size but the request has no {v2_binary.HEADER_LENGTH} header")
    blobs = v2_binary.slices(binary, binary_sizes)
    return [(specs[entry["name"]], _array(entry, blobs.get(entry["name"]), specs[entry["name"]])) for entry in tensors]


def _binary_size(entry: dict, name: str) -> int | None:
    parameters = _parameters(entry, f"input {name!r}")
    if any(key.startswith("shared_memory") for key in parameters):
        raise MalformedRequest(f"input {name!r}: the shared-memory extension is not supported; send the data")
    size = parameters.get("binary_data_size")
    if size is None:
        if "data" not in entry:
            raise MalformedRequest(f'input {name!r} needs "data" or parameters.binary_data_size')
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise MalformedRequest(f"input {name!r}: binary_data_size must be a whole number of bytes, not {size!r}")
    if "data" in entry:
        raise MalformedRequest(f'input {name!r} has both "data" and parameters.binary_data_size')
    return size


def _array(entry: dict, blob: memoryview | None, spec: TensorSpec) -> np.ndarray:
    """One input tensor -> float32 in its stated shape, by the service's dtype rule."""
    where = f"input {spec.name!r}"
    shape, datatype = entry.get("shape"), entry.get("datatype")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMENSIONS
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise MalformedRequest(f'{where}: "shape" must be a list of whole numbers >= 0, not {shape!r}')
    if not isinstance(datatype, str) or datatype not in INPUT_DATATYPES:
        raise InvalidInput(
            f"{where}: datatype {datatype!r} is not accepted; send FP32"
            + (" (or UINT8 pixels 0..255)" if spec.image else "")
        )
    count = math.prod(shape)
    if blob is not None:
        dtype = INPUT_DATATYPES[datatype]
        if len(blob) != count * dtype.itemsize:
            raise InvalidInput(
                f"{where}: shape {shape} of {datatype} is {count * dtype.itemsize} bytes, "
                f"binary_data_size is {len(blob)}"
            )
        array = np.frombuffer(blob, dtype=dtype).reshape(shape)
    else:
        values = from_json(entry["data"], f"{where} data")
        if values.size != count:
            raise InvalidInput(f"{where}: shape {shape} holds {count} values, its data has {values.size}")
        if datatype == "UINT8":
            if not np.all((values >= 0) & (values <= 255) & (values == np.round(values))):
                raise InvalidInput(f"{where}: UINT8 data must be whole numbers 0..255")
            values = values.astype(np.uint8)
        array = values.reshape(shape)
    return from_array(array, image_input=spec.image is not None, where=where)


def _requested_outputs(entries: object, model: LoadedModel, binary_default: bool) -> list[tuple[str, bool]]:
    """(output name, as binary?) in the order asked for; every output when none is named."""
    names = [spec.name for spec in model.manifest.outputs]
    if entries is None or entries == []:
        return [(name, binary_default) for name in names]
    if not isinstance(entries, list):
        raise MalformedRequest('"outputs" must be a list of {"name": ...} objects')
    wanted: list[tuple[str, bool]] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise MalformedRequest(f"outputs[{index}] must be an object with a \"name\"")
        name = entry["name"]
        if name not in names:
            raise InvalidInput(f"model {model.name!r} has no output {name!r}; its outputs are {names}")
        if any(name == seen for seen, _ in wanted):
            raise MalformedRequest(f"output {name!r} is asked for twice")
        parameters = _parameters(entry, f"output {name!r}")
        unsupported = [key for key in parameters if key == "classification" or key.startswith("shared_memory")]
        if unsupported:
            raise MalformedRequest(f"output {name!r}: {unsupported[0]!r} belongs to an extension this server lacks")
        wanted.append((name, _flag(parameters, "binary_data", binary_default)))
    return wanted


def _parameters(entry: dict, where: str) -> dict:
    parameters = entry.get("parameters", {})
    if not isinstance(parameters, dict):
        raise MalformedRequest(f'{where}: "parameters" must be an object')
    return parameters


def _flag(parameters: dict, key: str, default: bool) -> bool:
    value = parameters.get(key, default)
    if not isinstance(value, bool):
        raise MalformedRequest(f"parameter {key!r} must be true or false, not {value!r}")
    return value


def _render(
    model: LoadedModel, request_id: str | None, outputs: dict[str, np.ndarray], wanted: list[tuple[str, bool]]
) -> Response:
    datatypes = {spec.name: DATATYPE_OF[spec.dtype] for spec in model.manifest.outputs}
    entries, blobs = [], []
    for name, binary in wanted:
        value = outputs[name]
        entry = {"name": name, "datatype": datatypes[name], "shape": list(value.shape)}
        if binary:
            data = np.ascontiguousarray(value, dtype="<f4").tobytes()
            entry["parameters"] = {"binary_data_size": len(data)}
            blobs.append(data)
        else:
            entry["data"] = value.ravel().tolist()
        entries.append(entry)
    payload = {"model_name": model.name, "model_version": str(model.number), "outputs": entries}
    if request_id is not None:
        payload["id"] = request_id
    if not blobs:
        return json_response(payload)
    # Outputs are checked finite by the runtime; allow_nan=False keeps it so.
    header = json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()
    body, header_length = v2_binary.join(header, blobs)
    return Response(body, mimetype="application/octet-stream", headers={v2_binary.HEADER_LENGTH: str(header_length)})
