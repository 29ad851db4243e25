"""The binary tensor data extension's framing: a JSON header, then raw tensor bytes.

A request or response body is the JSON header alone, or the header followed by each binary
tensor in order, ``Inference-Header-Content-Length`` giving the header's size. BYTES tensors
are serialised as each element's length (4 bytes, little-endian) and its bytes.
"""

from __future__ import annotations

import re
import struct
import zlib

from service.api.oip.errors import invalid_request, unsupported_encoding
from service.errors import payload_too_large

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_MEDIA_TYPE = "application/octet-stream"
JSON_MEDIA_TYPE = "application/json"
_BYTE_COUNT = re.compile(r"^[0-9]{1,12}$")
_LENGTH_PREFIX = struct.Struct("<I")
# zlib's window bits: gzip framing, and zlib framing (what HTTP and tritonclient call deflate).
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def inflate(body: bytes, encoding: str | None, limit_bytes: int) -> bytes:
    """``body`` uncompressed per its ``Content-Encoding``, never past ``limit_bytes``.

    The edge caps the compressed body; the cap applies again to what it inflates to, so a
    small gzip bomb is a 413 like any other oversized body, not a gigabyte in memory.
    """
    name = (encoding or "identity").strip().lower()
    if name in ("", "identity"):
        return body
    wbits = _WBITS.get(name)
    if wbits is None:
        raise unsupported_encoding(name)
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, limit_bytes + 1)
    except zlib.error:
        raise invalid_request(
            f"the body is not valid {name} data (Content-Encoding: {name}); "
            "compress it whole, or send it uncompressed"
        ) from None
    if len(data) > limit_bytes:
        raise payload_too_large(limit_bytes)
    if not inflater.eof:
        raise invalid_request(f"the {name} body ends before its compressed stream does")
    return data


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON header and the binary data after it (empty without the header field)."""
    if header_length is None:
        return body, b""
    value = header_length.strip()
    if not _BYTE_COUNT.match(value):
        raise invalid_request(
            f"{HEADER_LENGTH} must be the JSON header's size in bytes, a whole number; "
            f"got {value[:40]!r}"
        )
    size = int(value)
    if size > len(body):
        raise invalid_request(
            f"{HEADER_LENGTH} says the JSON header is {size} bytes, but the whole body is "
            f"{len(body)}; send the header's own size"
        )
    return body[:size], body[size:]


def split_bytes_elements(data: bytes, expected: int, name: str) -> list[bytes]:
    """The elements of a binary BYTES tensor: exactly ``expected`` of them, or a 400."""
    elements: list[bytes] = []
    offset = 0
    while offset < len(data):
        if len(elements) == expected:
            raise invalid_request(
                f"input {name!r} holds more than the {expected} elements its shape says"
            )
        if offset + _LENGTH_PREFIX.size > len(data):
            raise invalid_request(
                f"input {name!r}: element {len(elements)} has a truncated length prefix; each "
                "element is its length (4 bytes, little-endian) followed by its bytes"
            )
        (length,) = _LENGTH_PREFIX.unpack_from(data, offset)
        offset += _LENGTH_PREFIX.size
        if offset + length > len(data):
            raise invalid_request(
                f"input {name!r}: element {len(elements)} claims {length} bytes, but only "
                f"{len(data) - offset} remain in its binary data"
            )
        elements.append(data[offset : offset + length])
        offset += length
    if len(elements) != expected:
        raise invalid_request(
            f"input {name!r} holds {len(elements)} elements, but its shape says {expected}"
        )
    return elements


def serialize_bytes_elements(elements: list[bytes]) -> bytes:
    """A BYTES tensor's binary data: each element's length prefix, then its bytes."""
    return b"".join(_LENGTH_PREFIX.pack(len(element)) + element for element in elements)


def join_body(header: bytes, binary: list[bytes]) -> tuple[bytes, int | None]:
    """The response body, and the header's size when binary tensors follow it (else None)."""
    if not binary:
        return header, None
    return b"".join([header, *binary]), len(header)
