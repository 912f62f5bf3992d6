"""Span identity for resend detection: OTLP clients retry whole batches after a timeout."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.proto.trace.v1.trace_pb2 import Span


_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)


def span_identity(span: Span) -> bytes | None:
    """Trace id + span id, or None when they are not valid ids (empty, wrong length, all
    zero): such spans cannot be told apart, so none of them may pass for another's resend."""
    trace_id, span_id = span.trace_id, span.span_id
    if len(trace_id) != 16 or len(span_id) != 8 or trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return None
    return trace_id + span_id
