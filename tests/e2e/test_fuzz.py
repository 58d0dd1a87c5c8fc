"""Fuzzing the live service under real gunicorn with schemathesis, from its own OpenAPI document.

Every operation gets requests generated from the document (valid ones, and for operations that
take a body, invalid ones too); POST /predict also gets corrupted and odd pictures from
``odd_images`` below, raw, in forms and as base64 JSON, POST /models/<name>/predict odd .npy
arrays, and POST /v2/models/<name>/infer odd tensors for the models' real inputs.  Each answer must be no 5xx and must
conform to the document (schemathesis' not_a_server_error and response_schema_conformance), and
the same gunicorn workers must be alive at the end: nothing crashed or timed out a worker.
Generation is derandomized, so a run is the same every time, and bounded (EXAMPLES per operation
and pass).  ``-s`` prints what was sent and the statuses it got.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import struct
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from live_server import COMMITTED_MODELS, IMAGE_MODEL

from service.api.openapi import OPERATIONS
from service.manifest import TensorSpec, read_manifest

EXAMPLES = 50
CHECKS = [not_a_server_error, response_schema_conformance]
# .npy bodies are sent as they are, like any other binary body.
schemathesis.serializer.alias("application/x-npy", "application/octet-stream")
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
)


def worker_pids(master: int) -> set[int]:
    return {int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()}


@pytest.fixture(scope="module")
def server(live_server):
    """The session's gunicorn (tests/conftest.py); fuzzing changes no state
    (it never has the admin token, so /admin/refresh only ever answers 401)."""
    workers = worker_pids(live_server.process.pid)
    assert len(workers) == 2
    log_before = len(live_server.log_path.read_text())
    yield live_server
    assert worker_pids(live_server.process.pid) == workers, "a worker died or was replaced while fuzzing"
    log = live_server.log_path.read_text()[log_before:]
    for symptom in ("Traceback", "WORKER TIMEOUT", "SIGKILL", "SIGSEGV", "unhandled error"):
        assert symptom not in log, log[-3000:]


@pytest.fixture(scope="module")
def api(server):
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


@pytest.fixture(scope="module")
def tally():
    counts: Counter = Counter()
    yield counts
    print(f"\n{sum(counts.values())} requests: " + ", ".join(f"{key} x{n}" for key, n in sorted(counts.items())))


def path_of(rule: str) -> str:
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule)


CASES = [(op, GenerationMode.POSITIVE) for op in OPERATIONS if not op.bearer] + [
    (op, GenerationMode.NEGATIVE) for op in OPERATIONS if op.request
]


@pytest.mark.parametrize(("operation", "mode"), CASES, ids=[f"{op.method} {op.rule} {mode.value}" for op, mode in CASES])
def test_every_operation_answers_as_documented(api, server, tally, operation, mode):
    endpoint = api[path_of(operation.rule)][operation.method]
    # Known model names and versions as well as generated ones, so that requests reach the models.
    names = st.sampled_from([IMAGE_MODEL, "linear_projection", "sigmoid_mlp"]) | st.text(max_size=12)
    versions = st.just("1") | st.text(max_size=4)

    @FUZZ_SETTINGS
    @given(case=endpoint.as_strategy(generation_mode=mode), name=names, version=versions)
    def fuzz(case, name, version):
        if "name" in case.path_parameters:
            case.path_parameters["name"] = name
        if "version" in case.path_parameters:
            case.path_parameters["version"] = version
        response = case.call_and_validate(checks=CHECKS, timeout=30)
        tally[f"{operation.method} {operation.rule} {response.status_code}"] += 1

    fuzz()


# --- odd pictures for POST /predict ---

MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "I;16", "F"]
FORMATS = ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "ICO"]


def drawing(mode: str, size: int) -> Image.Image:
    image = Image.new("L", (size, size), 255)
    ImageDraw.Draw(image).line([(size * 0.3, size * 0.2), (size * 0.7, size * 0.2), (size * 0.4, size * 0.8)],
                               fill=0, width=max(1, size // 10))
    if mode == "I;16":
        return Image.fromarray(np.asarray(image, dtype=np.uint16) * 257)
    return image.convert(mode)


def encoded(image: Image.Image, fmt: str) -> bytes | None:
    buffer = io.BytesIO()
    try:
        image.save(buffer, fmt)
    except (OSError, ValueError, KeyError):
        return None  # this format cannot hold this mode
    return buffer.getvalue()


def png_claiming(width: int, height: int, color_type: int = 0, data: bytes = b"\0" * 64) -> bytes:
    """A tiny PNG whose header claims any size (its data says otherwise)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b"")


def float_tiff(value: float) -> bytes:
    pixels = np.zeros((32, 32), np.float32)
    pixels[8:24, 14:18] = value
    return encoded(Image.fromarray(pixels, "F"), "TIFF")


MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF\0\0\0\0WEBP",
         b"P5\n", b"\0\0\1\0", b"%!PS-Adobe-3.0", b"\x00\x00\x00\x0cjP  "]


@st.composite
def odd_images(draw) -> bytes:
    kind = draw(st.sampled_from(["valid", "truncated", "flipped", "magic", "claims", "float"]))
    if kind in ("valid", "truncated", "flipped"):
        data = None
        while data is None:
            data = encoded(drawing(draw(st.sampled_from(MODES)), draw(st.sampled_from([1, 3, 28, 64, 300]))),
                           draw(st.sampled_from(FORMATS)))
        if kind == "truncated":
            return data[: draw(st.integers(0, len(data) - 1))]
        if kind == "flipped":
            flipped = bytearray(data)
            for _ in range(draw(st.integers(1, 8))):
                flipped[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
            return bytes(flipped)
        return data
    if kind == "magic":
        return draw(st.sampled_from(MAGIC)) + draw(st.binary(max_size=200))
    if kind == "claims":
        side = st.sampled_from([0, 1, 2**31 - 1, 2**32 - 1, 65535, 100_000])
        return png_claiming(draw(side), draw(side), draw(st.sampled_from([0, 2, 3, 4, 6])), draw(st.binary(max_size=64)))
    return float_tiff(draw(st.sampled_from([float("nan"), float("inf"), -float("inf"), 3e38, 1e-45, 0.0])))


@st.composite
def odd_requests(draw) -> tuple[str, object]:
    """(media type, body): one odd picture raw, or one to four in a form or in JSON."""
    transport = draw(st.sampled_from(["raw", "form", "json"]))
    if transport == "raw":
        return draw(st.sampled_from(["image/png", "image/jpeg", "application/octet-stream"])), draw(odd_images())
    pictures = draw(st.lists(odd_images(), min_size=1, max_size=4))
    if transport == "form":
        return "multipart/form-data", {"image": pictures}
    return "application/json", {"images": [base64.b64encode(picture).decode() for picture in pictures]}


def test_odd_pictures_get_documented_answers(api, server, tally):
    endpoint = api["/predict"]["POST"]

    @settings(FUZZ_SETTINGS, max_examples=8 * EXAMPLES)
    @given(request=odd_requests())
    def fuzz(request):
        media_type, body = request
        response = endpoint.Case(media_type=media_type, body=body).call_and_validate(checks=CHECKS, timeout=30)
        tally[f"odd pictures {media_type} {response.status_code}"] += 1

    fuzz()


# --- odd .npy arrays for POST /models/<name>/predict ---

DTYPES = ["<f4", ">f4", "|u1", "<f2", "<f8", "<i8", "|b1", "<c8", "<U2"]
SHAPES = [(), (0,), (3,), (1, 3), (0, 3), (2, 784), (1, 3, 1)]
# A batch each model takes, so that some arrays are answered, as JSON or as .npy.
FITS = {IMAGE_MODEL: (2, 1, 28, 28), "linear_projection": (2, 3), "cubic_approximator": (1, 20), "sales_regression": (3, 3)}


@st.composite
def odd_arrays(draw, fits: tuple[int, ...]) -> bytes:
    kind = draw(st.sampled_from(["fits", "array", "truncated", "claims"]))
    if kind == "claims":
        shape = draw(st.sampled_from([(10**12,), (2**31, 3), (10**6, 10**6), (-1, 3)]))
        header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}".encode().ljust(117) + b"\n"
        return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + draw(st.binary(max_size=64))
    shape = fits if kind == "fits" else draw(st.sampled_from(SHAPES))
    value = draw(st.sampled_from([0.0, 1.0, 255.0, float("nan"), float("inf"), 3e38]))
    dtype = draw(st.sampled_from(["<f4", "|u1"] if kind == "fits" else DTYPES))
    with np.errstate(all="ignore"):  # casting NaN or 3e38 to integers is part of the point
        array = np.full(shape, value).astype(dtype)
    buffer = io.BytesIO()
    np.save(buffer, np.asfortranarray(array) if draw(st.booleans()) else array)
    data = buffer.getvalue()
    return data[: draw(st.integers(0, len(data) - 1))] if kind == "truncated" else data


def test_odd_arrays_get_documented_answers(api, server, tally):
    endpoint = api["/models/{name}/predict"]["POST"]
    accept = st.sampled_from(["application/json", "application/x-npy", "*/*"])

    @settings(FUZZ_SETTINGS, max_examples=4 * EXAMPLES)
    @given(name=st.sampled_from(sorted(FITS)), accept=accept, data=st.data())
    def fuzz(name, accept, data):
        case = endpoint.Case(media_type="application/x-npy", body=data.draw(odd_arrays(FITS[name])),
                             path_parameters={"name": name}, headers={"Accept": accept})
        response = case.call_and_validate(checks=CHECKS, timeout=30)
        tally[f"odd arrays {response.status_code}"] += 1

    fuzz()


# --- odd tensors for POST /v2/models/<name>/infer ---

HEADER_LENGTH = "Inference-Header-Content-Length"
ODD_DATATYPES = ["UINT8", "FP64", "INT64", "BYTES", "BOOL", "fp32", ""]
MAX_VALUES = 10_000
ODD_VALUES = [-1.0, 256.0, 0.5, float("nan"), float("inf"), -float("inf"), 3e38, 1e39, 2**70]


def signature(name: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
    manifest = read_manifest(next((COMMITTED_MODELS / name).glob("*/manifest.json")))
    return manifest.inputs, manifest.outputs


@st.composite
def odd_tensors(draw, name: str) -> tuple[bytes, dict[str, str]]:
    """(body, headers): a V2 request for the model's real inputs, JSON or binary, with one thing odd
    about it (or nothing): its shape, datatype, values, value count, binary size, header length, outputs."""
    inputs, outputs = signature(name)
    odd = draw(st.sampled_from(
        ["nothing", "nothing", "shape", "datatype", "values", "count", "size", "length", "outputs"]
    ))
    near = st.sampled_from([-1, 1])
    entries, blobs = [], []
    for spec in inputs:
        shape = [draw(st.integers(1, 3)), *spec.shape[1:]]
        if odd == "shape":
            axes = st.sampled_from([0, 1, 3, 784, 2**31, 2**63, 10**30])  # empty and huge ones too
            shape = draw(st.sampled_from([shape[1:], [0, *shape[1:]], [*shape, 1]]) | st.lists(axes, max_size=9))
        datatype = draw(st.sampled_from(ODD_DATATYPES)) if odd == "datatype" else "FP32"
        dtype = {"UINT8": "u1", "FP64": "<f8", "INT64": "<i8", "BOOL": "?"}.get(datatype, "<f4")
        count = max(0, math.prod(shape) + (draw(near) if odd == "count" else 0))
        if count > MAX_VALUES:  # a huge shape: what matters is the one claimed, not values that fill it
            count = draw(st.integers(0, 8))
        value = draw(st.sampled_from(ODD_VALUES if odd == "values" else [0.0, 0.25, 1.0]))
        with np.errstate(all="ignore"):  # casting NaN or 2**70 to integers is part of the point
            values = np.full(count, value).astype(dtype)
        entry = {"name": spec.name, "shape": shape, "datatype": datatype}
        if draw(st.booleans()):
            data = values.tobytes()
            entry["parameters"] = {"binary_data_size": max(0, len(data) + (4 * draw(near) if odd == "size" else 0))}
            blobs.append(data)
        else:
            nested = 0 < count == math.prod(shape) and draw(st.booleans())
            entry["data"] = values.reshape(shape).tolist() if nested else values.tolist()
        entries.append(entry)
    header = {"inputs": entries, "parameters": {"binary_data_output": draw(st.booleans())}}
    if odd == "outputs" or draw(st.booleans()):
        names = [spec.name for spec in outputs]
        header["outputs"] = [
            {"name": draw(st.sampled_from([*names, "nope"]) if odd == "outputs" else st.sampled_from(names)),
             "parameters": {"binary_data": draw(st.booleans() | st.sampled_from([None, 1, "yes"]) if odd == "outputs"
                                                else st.booleans())}}
            for _ in names
        ]
    head = json.dumps(header).encode()  # NaN and Infinity are written as such, and must be refused
    length = len(head) + (draw(near) if odd == "length" else 0)
    return head + b"".join(blobs), {HEADER_LENGTH: str(length)} if blobs else {}


def test_odd_tensors_get_documented_answers(api, server, tally):
    endpoint = api["/v2/models/{name}/infer"]["POST"]

    @settings(FUZZ_SETTINGS, max_examples=4 * EXAMPLES)
    @given(name=st.sampled_from(sorted(FITS)), data=st.data())
    def fuzz(name, data):
        body, headers = data.draw(odd_tensors(name))
        case = endpoint.Case(media_type="application/octet-stream", body=body, path_parameters={"name": name},
                             headers=headers)
        response = case.call_and_validate(checks=CHECKS, timeout=30)
        tally[f"odd tensors {response.status_code}"] += 1

    fuzz()


def test_the_workers_still_answer(server):
    seven = encoded(drawing("L", 280), "PNG")
    for _ in range(4):
        response = requests.post(f"{server.url}/predict", data=seven, headers={"Content-Type": "image/png"}, timeout=10)
        assert response.status_code == 200 and response.json()["label"] == "7"
