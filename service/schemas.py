"""The bodies of the HTTP API as pydantic models: requests are validated with them, responses are
rendered with them, and GET /openapi.json is built from them (service/api/openapi.py), so the
three cannot drift apart.

Request models are strict and closed: an unknown key or a wrong type is an error, which
``service.api.bodies.parse`` turns into the service's own 4xx naming the key.  The Open Inference
Protocol's (``V2...``, validated by ``service.api.v2``) are strict but open, as that protocol's
clients expect: keys they add are ignored.  The numbers of a
tensor are not validated number by number here: ``SkipValidation`` keeps their schema in the
document while ``service.tensors`` checks them (shape, type, finiteness) in one numpy call, with
messages that name the offending position.  Response models are closed too, so that a field the
document does not describe cannot be sent: rendering it fails loudly in the tests instead.
Nothing here knows HTTP.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, SkipValidation
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType

from service.manifest import Manifest, TensorSpec

# A tensor in JSON: a number, or rectangular nested lists of numbers (the batch axis first).
Tensor = TypeAliasType("Tensor", Union[float, list["Tensor"]])
Tensors = Annotated[
    SkipValidation[Union[Tensor, dict[str, Tensor]]],
    Field(description="for a model with one input (or output), its tensor; with several, an object of tensors by name"),
]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestBody(_Closed):
    # Strict: JSON "1" is not the number 1, and 1 is not the string "1".
    model_config = ConfigDict(extra="forbid", strict=True)


def _text(value: object) -> object:
    # A picture that is not even a string is bad data (422), like a picture that does not decode;
    # the code names the service error that service.api.bodies.parse raises for it.
    if not isinstance(value, str):
        raise PydanticCustomError("invalid_input", "must be a base64 string, not {kind}", {"kind": type(value).__name__})
    return value


Base64Image = Annotated[
    str,
    BeforeValidator(_text),
    Field(
        description='an image file (PNG, JPEG, ...) in base64, or a data URL ("data:image/png;base64,...")',
        json_schema_extra={"contentEncoding": "base64"},
    ),
]
ModelName = Annotated[str, Field(description="the image model to ask (GET /models lists them); ?model= wins")]
Include = Annotated[
    list[str],
    BeforeValidator(lambda value: [value] if isinstance(value, str) else value, json_schema_input_type=Union[list[str], str]),
    Field(description='what to add to every result: "input" (the picture the model saw), "explanation" '
                      "(an occlusion map); a list, or one comma-separated string; ?include= adds to it"),
]


# --- POST /predict ---


class ImagesJson(RequestBody):
    """Pictures in a JSON body: "image", "images" or both (answered in that order)."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["image"]}, {"required": ["images"]}]})

    image: Base64Image | None = None
    images: list[Base64Image] | None = None
    model: ModelName | None = None
    include: Include | None = None


def _absent_by_default(schema: dict) -> None:
    schema.pop("default")  # a form field is absent or a string: there is no null to document


# Werkzeug parses the form (files and fields); this model describes it for the document.
class ImageForm(BaseModel):
    """Pictures in a multipart form: one or more files under any field names, answered in form order."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": {"type": "string", "format": "binary"}})

    image: list[bytes] = Field(default_factory=list, description="image files (any other field name works too)")
    model: ModelName | SkipJsonSchema[None] = Field(None, json_schema_extra=_absent_by_default)
    include: str | SkipJsonSchema[None] = Field(
        None, json_schema_extra=_absent_by_default, description="input, explanation or both, comma-separated"
    )


class ImageResult(_Closed):
    """What the model says about one picture."""

    label: str = Field(description="the most probable label")
    probability: float = Field(description="its probability")
    probabilities: dict[str, float] = Field(description="every label's probability, in the model's label order")
    model: str
    version: int
    # From a verdict section in the model's manifest (issue 8); absent for a model without one.
    verdict: Literal["digit", "uncertain", "not_a_digit"] | None = Field(None, exclude_if=lambda value: value is None)
    reason: str | None = Field(None, exclude_if=lambda value: value is None, description="why that verdict")
    # On request (include=input, include=explanation; see service.explanation).
    input: str | None = Field(
        None, exclude_if=lambda value: value is None,
        description="the picture the model saw (after the MNIST recipe), as a grayscale PNG data URL",
    )
    explanation: list[list[float]] | None = Field(
        None, exclude_if=lambda value: value is None,
        description="occlusion map, the picture's shape: how much covering each pixel's neighbourhood lowers "
                    "the answer's log-odds (positive: this ink pushed the model to its answer)",
    )


class ImageResults(_Closed):
    """Two or more pictures: one result each, in request order."""

    results: list[ImageResult]


# --- /models ---


class LoadError(_Closed):
    version: int
    error: str = Field(description="why this version is not served")


class ModelSummary(_Closed):
    name: str
    served_version: int | None = Field(description="null when no version could be loaded")
    versions_on_disk: list[int]
    provider: str | None = Field(description="the onnxruntime execution provider in use")
    provider_fallback: bool | None = Field(description="true when CUDA was asked for and CPU is in use")
    accepts_images: bool = Field(description="whether POST /predict can use this model")
    load_errors: list[LoadError]


class ModelList(_Closed):
    models: list[ModelSummary]


class ModelDetail(ModelSummary):
    requested_providers: list[str] | None
    providers: list[str] | None
    inputs: list[TensorSpec] | None
    outputs: list[TensorSpec] | None
    manifest: Manifest | None


class NumbersRequest(RequestBody):
    """Inputs as numbers; one sample may leave out the batch axis (and is answered without it)."""

    inputs: Tensors


def _as_it_is(value: object) -> object:
    return value


class NumbersResponse(_Closed):
    # Described as validated (the same Tensor as the request's): pydantic's document for the
    # pass-through below, in serialization mode, refers to a definition it never writes.
    model_config = ConfigDict(extra="forbid", json_schema_mode_override="validation")

    model: str
    version: int
    # The arrays as they are: orjson writes numpy arrays itself, in a tenth of the time pydantic
    # takes to walk every number (35 us of a 64-image answer, 7 % of its .npy request).
    outputs: Annotated[Tensors, PlainSerializer(_as_it_is)]


# --- health, admin, errors ---


class Liveness(_Closed):
    status: Literal["alive"]


class Readiness(_Closed):
    # "draining": the worker got SIGTERM and answers what it has received, then exits.
    status: Literal["ready", "not_ready", "draining"]
    models: dict[str, int] = Field(description="the version served of each model that has one")
    not_ready: dict[str, str] | None = Field(
        None, exclude_if=lambda value: value is None, description="models without a loaded version, and why"
    )


class Refreshed(_Closed):
    models: dict[str, int | None] = Field(description="the version served of each model after the rescan")


class ErrorDetail(_Closed):
    code: str = Field(description="machine-readable: invalid_image, no_ink, model_not_found, too_large, ...")
    message: str = Field(description="what is wrong, for a person")


class ErrorBody(_Closed):
    """Every error the service's own endpoints answer."""

    error: ErrorDetail


# --- the Open Inference Protocol (KServe V2), service/api/v2.py ---


class V2Request(BaseModel):
    """Strict like the service's own requests, but open: keys this server does not use are
    ignored, as MLServer does, since the protocol's clients may send more than the spec lists."""

    model_config = ConfigDict(strict=True, extra="ignore")


class V2Parameters(V2Request):
    # The protocol lets any parameter through; service.api.v2 refuses the extensions' it lacks.
    model_config = ConfigDict(strict=True, extra="allow")


def _accepted_datatype(value: object) -> object:
    # The service's error message, not pydantic's: it names what to send instead.
    if value not in ("FP32", "UINT8"):
        raise PydanticCustomError(
            "datatype", "datatype {datatype} is not accepted; send FP32 (or UINT8 pixels 0..255 for an image input)",
            {"datatype": repr(value)},
        )
    return value


def _a_list(value: object) -> object:
    if not isinstance(value, list):
        raise PydanticCustomError("list_type", "Input should be a valid list")
    return value


V2InputDatatype = Annotated[Literal["FP32", "UINT8"], BeforeValidator(_accepted_datatype)]
# FP32 is every tensor a manifest can declare (TensorSpec.dtype).
V2Datatype = Annotated[Literal["FP32"], Field(description="the tensor's datatype in the protocol's names")]
# Checked number by number in service.tensors, like Tensors above; only its being a list is checked here.
V2TensorData = Annotated[
    SkipValidation[list[Tensor]], BeforeValidator(_a_list),
    Field(description="the values in row-major order, flat or nested"),
]


class V2InferParameters(V2Parameters):
    binary_data_output: bool = Field(
        False, description="answer every output not asked for otherwise as binary tensor data"
    )


class V2InputParameters(V2Parameters):
    binary_data_size: int | None = Field(
        None, ge=0, description="the tensor is this many raw bytes after the JSON header (binary tensor data "
        'extension), instead of "data"',
    )


class V2OutputParameters(V2Parameters):
    binary_data: bool | None = Field(
        None, description="this output as binary tensor data (default: binary_data_output)"
    )


class V2InputTensor(V2Request):
    name: str
    shape: list[Annotated[int, Field(ge=0)]] = Field(description="the tensor's shape, the batch axis first")
    datatype: V2InputDatatype = Field(description="FP32, or UINT8 pixels 0..255 for an image input")
    parameters: V2InputParameters = Field(default_factory=V2InputParameters)
    data: V2TensorData | None = None


class V2RequestedOutput(V2Request):
    name: str
    parameters: V2OutputParameters = Field(default_factory=V2OutputParameters)


class V2InferenceRequest(V2Request):
    """An inference request: its JSON form, or the JSON header of a binary one."""

    id: str | None = Field(None, description="echoed in the response")
    parameters: V2InferParameters = Field(default_factory=V2InferParameters)
    inputs: list[V2InputTensor] = Field(min_length=1)
    outputs: list[V2RequestedOutput] | None = Field(None, description="the outputs wanted (default: all)")


class V2BinaryData(_Closed):
    binary_data_size: int = Field(description="the output's raw bytes after the JSON header")


class V2OutputTensor(_Closed):
    name: str
    datatype: V2Datatype
    shape: list[int]
    # One of the two: binary tensor data, or the values.
    parameters: V2BinaryData | None = Field(None, exclude_if=lambda value: value is None)
    data: SkipValidation[list[float]] | None = Field(
        None, exclude_if=lambda value: value is None, description="the values in row-major order, flat"
    )


class V2InferenceResponse(_Closed):
    """An inference response: its JSON form, or the JSON header of a binary one."""

    model_name: str
    model_version: str
    id: str | None = Field(None, exclude_if=lambda value: value is None)
    outputs: list[V2OutputTensor]


class V2ServerMetadata(_Closed):
    name: str
    version: str
    extensions: list[str] = Field(description="the protocol's extensions this server supports")


class V2TensorMetadata(_Closed):
    name: str
    datatype: V2Datatype
    shape: list[int] = Field(description="-1 for an axis of any size (the batch axis)")


class V2ModelMetadata(_Closed):
    name: str
    versions: list[str] = Field(description="the version served: the only one that answers")
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]


class V2ServerLive(_Closed):
    live: Literal[True]


class V2ServerReady(_Closed):
    ready: Literal[True] = Field(description="always true: not ready answers 400 with an error")


class V2ModelReady(_Closed):
    name: str
    ready: Literal[True] = Field(description="always true: not ready answers 400 with an error")


class V2Error(_Closed):
    """Every error under /v2, in the protocol's form."""

    error: str
