"""A merged request not yet joined: queued OTLP requests of one signal, whose concatenation is
one request (protobuf merges repeated fields by appending).

A sender that declares `joins_parts` takes one instead of bytes and joins it where it sends it:
GrpcSender on the worker thread that hands it to gRPC's blocking client, so a merged request of
~2 MB costs the event loop one hand-over to a thread instead of two (join, then send), and the
joined block is made and freed on the thread that copies it (bench/send_cost.py "one thread").
"""

from __future__ import annotations


class Parts(tuple):
    """The queued payloads of a merge, in order; `joined()` is the request they make."""

    __slots__ = ()

    def size(self) -> int:
        """The joined request's length in bytes."""
        return sum(map(len, self))

    def joined(self) -> bytes:
        return b"".join(self)


def joined(payload: bytes | Parts) -> bytes:
    """The request's bytes, joining a Parts (on the caller's thread)."""
    return payload.joined() if isinstance(payload, Parts) else payload
