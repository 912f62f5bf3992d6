"""An SDK span processor that stamps the envelope from baggage onto every span at start.

    provider.add_span_processor(EnvelopeSpanProcessor())

Only the envelope's keys are copied (any other baggage entry stays out of the span), and a
value the span was started with is kept: the sidecar counts a differing ancestor value as a
conflict rather than have it overwritten here.
"""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from costctx.client.envelope import envelope_from_baggage


class EnvelopeSpanProcessor(SpanProcessor):
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        fields = envelope_from_baggage(parent_context)
        if not fields:
            return
        own = span.attributes or {}
        span.set_attributes({k: v for k, v in fields.items() if k not in own})

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
