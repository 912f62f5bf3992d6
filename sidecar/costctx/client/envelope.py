"""Open a workflow's envelope at the ingress, and read it back from the current baggage.

    from costctx.client import open_envelope
    with open_envelope(tracer, "handle_request", workflow_id=wf, request_id=rid,
                       tenant="acme", feature="chat") as root:
        ...  # every span below, in this service and (through baggage) the next, carries it

The envelope travels as W3C Baggage entries under the canonical keys (ENVELOPE.md 1.1),
and the root span carries it as attributes. Only the OpenTelemetry API is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import baggage, context, trace
from opentelemetry.context import Context

from costctx.client.keys import ENVELOPE_KEYS, NOT_INHERITED, canonical


def with_envelope(fields: dict[str, str | int], ctx: Context | None = None) -> Context:
    """`ctx` (default: the current context) with the envelope's fields set as baggage.

    `retry.attempt` stays out: it is never inherited (ENVELOPE.md), so it belongs on the span
    it describes, not on every span below it."""
    for key, value in fields.items():
        if key in NOT_INHERITED:
            continue
        ctx = baggage.set_baggage(key, str(value), ctx)
    return ctx if ctx is not None else context.get_current()


def envelope_from_baggage(ctx: Context | None = None) -> dict[str, str | int]:
    """The envelope's fields in the baggage of `ctx` (default: current); any other entry, and
    `retry.attempt` (never inherited), ignored."""
    found: dict[str, str | int] = {}
    entries = baggage.get_all(ctx)
    for key in ENVELOPE_KEYS:
        value = entries.get(key)
        if value is None or value == "" or key in NOT_INHERITED:
            continue
        found[key] = str(value)
    return found


@contextmanager
def open_envelope(tracer: trace.Tracer, span_name: str, envelope: dict[str, str | int] | None = None,
                  **fields: str | int) -> Iterator[trace.Span]:
    """Start the workflow's root span with the envelope as attributes, and make it current
    with the envelope in baggage, so every span below it and every call it propagates to
    carries the same context. `envelope` takes canonical keys, `fields` the short names
    (`workflow_id`, `tenant`, ...); both may be given."""
    values = canonical({**(envelope or {}), **fields})
    token = context.attach(with_envelope(values))
    try:
        with tracer.start_as_current_span(span_name, attributes=values) as span:
            yield span
    finally:
        context.detach(token)
