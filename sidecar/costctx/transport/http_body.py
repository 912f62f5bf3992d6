"""Read an HTTP request body with a running size limit, decompressing as it streams.

aiohttp's own decompression inflated each received chunk whole before any size check, so a
1.2 MB gzip bomb reached 511 MiB RSS. The OTLP server therefore runs with aiohttp's
`auto_decompress` off, and every route on it reads its body here: compressed bytes are
inflated in bounded steps, the limit applies to the inflated size as it grows, and each step
is offered to the admission check (the memory limiter) before the next one, so a request is
refused as soon as it is too large or memory is short, never after the whole body is in memory.

Errors are BodyError with a kind the receivers map to their status: too_large (413),
invalid (400: corrupt or truncated compression), unsupported (415: an unknown encoding).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from aiohttp import web

from costctx.transport.refusal import Refused  # noqa: F401 - raised by ROUTE_ADMISSION, caught by routes

# Read and inflate in steps of this size: the most one step can add beyond a limit.
STEP = 64 * 1024

# gzip (RFC 1952) and HTTP's "deflate", which is the zlib format (RFC 1950); 32 also
# accepts a gzip header under "deflate", as lenient servers do.
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": 32 + zlib.MAX_WBITS}
SUPPORTED_ENCODINGS = ("identity", *_WBITS)

# Admit `size` more bytes of this request or raise the refusal (an IngestError).
Admit = Callable[[int], None]



# Set on a server's app by its owner: admission for routes other components add (the budget
# check), called as (route name, size); raises Refused. Absent: no admission checks.
ROUTE_ADMISSION = web.AppKey("route_admission", Callable[[str, int], None])


class BodyError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _too_large(limit: int) -> BodyError:
    return BodyError("too_large", f"request body over {limit} bytes")


async def read_body(request: web.Request, limit: int, admit: Admit | None = None) -> bytes:
    """The request's body, decoded from its Content-Encoding, at most `limit` bytes."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower() or "identity"
    if encoding not in SUPPORTED_ENCODINGS:
        raise BodyError("unsupported", f"unsupported Content-Encoding {encoding[:40]!r}; use gzip, deflate or none")
    declared = request.content_length
    if declared is not None and declared > limit:
        # Compressed or not, a body this long on the wire is refused without reading it.
        raise _too_large(limit)
    inflater = _Inflater(_WBITS[encoding], limit) if encoding != "identity" else None
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_chunked(STEP):
            pieces = inflater.feed(chunk) if inflater is not None else (chunk,)
            for piece in pieces:
                size += len(piece)
                if size > limit:
                    raise _too_large(limit)
                if admit is not None:
                    admit(len(piece))
                parts.append(piece)
    except web.RequestPayloadError as exc:  # truncated, or a broken chunked encoding
        raise BodyError("invalid", f"cannot read request body: {exc}") from None
    if inflater is not None:
        inflater.finish()
    return b"".join(parts)


class _Inflater:
    """zlib in bounded steps: `feed` yields at most STEP bytes at a time, however well the
    input compresses, and stops as soon as `limit` is passed. Concatenated gzip members
    (allowed by RFC 1952, written by some clients) are all read."""

    def __init__(self, wbits: int, limit: int) -> None:
        self._wbits = wbits
        self._limit = limit
        self._out = 0
        self._inflate = zlib.decompressobj(wbits)

    def feed(self, data: bytes):
        while data:
            try:
                piece = self._inflate.decompress(data, STEP)
            except zlib.error as exc:
                raise BodyError("invalid", f"cannot decompress request body: {exc}") from None
            self._out += len(piece)
            if piece:
                yield piece
            if self._out > self._limit:
                return  # the caller raises too_large on this piece
            if self._inflate.eof:
                data = self._inflate.unused_data
                if data:
                    self._inflate = zlib.decompressobj(self._wbits)
            else:
                data = self._inflate.unconsumed_tail

    def finish(self) -> None:
        if not self._inflate.eof:
            raise BodyError("invalid", "cannot decompress request body: truncated compressed data")
