"""A request body sent compressed (`Content-Encoding: gzip` or `deflate`, which some clients use for large
bodies) is read as the JSON it holds, within the same size limit as an uncompressed one: a small body that
inflates past `max_body_bytes` is refused as soon as it does, never inflated whole."""

from __future__ import annotations

import zlib

from gateway.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType

GZIP_WBITS = 16 + zlib.MAX_WBITS
ZLIB_WBITS = zlib.MAX_WBITS
RAW_DEFLATE_WBITS = -zlib.MAX_WBITS
ACCEPTED = "gzip, deflate"  # what a 415 tells the client it may use instead


def decoded_body(body: bytes, content_encoding: bytes | None, limit: int) -> bytes:
    """`body` with the codings its `Content-Encoding` names undone (the last one applied first)."""
    if content_encoding is None:
        return body
    codings = [c.strip().lower() for c in content_encoding.decode("latin-1").split(",")]
    for coding in reversed(codings):
        if coding in ("", "identity"):
            continue
        if coding in ("gzip", "x-gzip"):
            body = _inflate(body, GZIP_WBITS, limit, coding)
        elif coding == "deflate":  # the zlib format (RFC 9110), though some clients send raw deflate
            try:
                body = _inflate(body, ZLIB_WBITS, limit, coding)
            except PayloadTooLarge:
                raise
            except InvalidRequest:
                body = _inflate(body, RAW_DEFLATE_WBITS, limit, coding)
        else:
            raise UnsupportedMediaType(
                f"The request body's Content-Encoding '{coding}' is not supported; send it uncompressed or "
                f"with one of: {ACCEPTED}.",
                code="unsupported_content_encoding",
                accept_encoding=ACCEPTED,
            )
    return body


def _inflate(data: bytes, wbits: int, limit: int, coding: str) -> bytes:
    out = bytearray()
    while True:  # gzip allows several members one after another
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(data, limit + 1 - len(out))
        except zlib.error:
            raise _invalid(coding) from None
        if len(out) > limit:
            raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes once decompressed")
        if not inflater.eof:
            raise _invalid(coding)
        data = inflater.unused_data
        if not data:
            return bytes(out)
        if wbits != GZIP_WBITS:
            raise _invalid(coding)


def _invalid(coding: str) -> InvalidRequest:
    return InvalidRequest(
        f"The request body is not valid {coding} data, as its Content-Encoding says.", code="invalid_content_encoding"
    )
