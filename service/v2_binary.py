"""The binary tensor data extension of the Open Inference Protocol: how a body is framed.

A request or response body is a JSON header, then the raw bytes of some tensors, back to back,
in the order the header lists them.  ``Inference-Header-Content-Length`` gives the header's
length (absent: the whole body is JSON); each binary tensor's entry says its size in
``parameters.binary_data_size``.  Tensors are little-endian, row-major, without padding.
Nothing here knows a model or HTTP; every framing error is a ``MalformedRequest`` (400).
"""

from __future__ import annotations

from service.errors import MalformedRequest

HEADER_LENGTH = "Inference-Header-Content-Length"


def split(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The JSON header and the binary data after it (empty without the header-length header)."""
    if header_length is None:
        return body, memoryview(b"")
    try:
        length = int(header_length)
    except ValueError:
        raise MalformedRequest(f"{HEADER_LENGTH} must be a whole number of bytes, not {header_length!r}") from None
    if not 0 < length <= len(body):
        raise MalformedRequest(
            f"{HEADER_LENGTH} is {length} but the body has {len(body)} bytes; it must give the length "
            "of the JSON header at the start of the body"
        )
    data = memoryview(body)
    return body[:length], data[length:]


def slices(data: memoryview, sizes: list[tuple[str, int]]) -> dict[str, memoryview]:
    """Cut the binary data into the named tensors' bytes; the sizes must add up to all of it."""
    expected = sum(size for _, size in sizes)
    if expected != len(data):
        listed = ", ".join(f"{name!r}: {size}" for name, size in sizes) or "none"
        problem = "is truncated" if expected > len(data) else "has extra bytes"
        raise MalformedRequest(
            f"the binary data after the JSON header {problem}: it has {len(data)} bytes, the inputs' "
            f"binary_data_size add up to {expected} ({listed})"
        )
    tensors, offset = {}, 0
    for name, size in sizes:
        tensors[name] = data[offset : offset + size]
        offset += size
    return tensors


def join(header: bytes, tensors: list[bytes]) -> tuple[bytes, int | None]:
    """A response body and the header length to send with it (None when it is plain JSON)."""
    if not tensors:
        return header, None
    return b"".join([header, *tensors]), len(header)
