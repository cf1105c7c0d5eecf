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
# Clients send one coding, and gzip in one member. The bounds keep a small body from costing much: each coding
# may inflate to the limit again, and each gzip member copies the rest of the body (zlib's `unused_data`).
MAX_CODINGS = 2
MAX_GZIP_MEMBERS = 16


def decoded_body(body: bytes, content_encoding: bytes | None, limit: int) -> bytes:
    """`body` with the codings its `Content-Encoding` names undone (the last one applied first)."""
    if content_encoding is None:
        return body
    codings = [c.strip().lower() for c in content_encoding.decode("latin-1").split(",")]
    codings = [c for c in codings if c not in ("", "identity")]
    if len(codings) > MAX_CODINGS:
        raise UnsupportedMediaType(
            f"The request body's Content-Encoding applies {len(codings)} codings; at most {MAX_CODINGS} are undone.",
            code="unsupported_content_encoding",
            accept_encoding=ACCEPTED,
        )
    for coding in reversed(codings):
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
    for _ in range(MAX_GZIP_MEMBERS):  # gzip allows several members one after another
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
    raise InvalidRequest(
        f"The request body holds more than {MAX_GZIP_MEMBERS} gzip members.", code="invalid_content_encoding"
    )


def _invalid(coding: str) -> InvalidRequest:
    return InvalidRequest(
        f"The request body is not valid {coding} data, as its Content-Encoding says.", code="invalid_content_encoding"
    )
