"""Keep the envelope's baggage off calls that leave the organisation (a model provider).

W3C Baggage goes out on every request an instrumented HTTP client makes, and a propagator
is not told where the request goes. So the call site says so:

    set_global_textmap(CompositePropagator([TraceContextTextMapPropagator(), InternalBaggagePropagator()]))
    with outside_organisation():
        openai_client.chat.completions.create(...)   # no `baggage` header on this request

Spans started inside still carry the envelope (the baggage stays in the context; only its
injection into outgoing headers is skipped).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import CarrierT, Setter, default_setter

_OUTSIDE = context.create_key("costctx.outside_organisation")


@contextmanager
def outside_organisation() -> Iterator[None]:
    """Within this block, InternalBaggagePropagator injects no baggage."""
    token = context.attach(context.set_value(_OUTSIDE, True))
    try:
        yield
    finally:
        context.detach(token)


class InternalBaggagePropagator(W3CBaggagePropagator):
    """W3CBaggagePropagator that stays silent inside `outside_organisation()`."""

    def inject(self, carrier: CarrierT, context: Context | None = None,
               setter: Setter[CarrierT] = default_setter) -> None:
        from opentelemetry import context as otel_context

        if otel_context.get_value(_OUTSIDE, context):
            return
        super().inject(carrier, context, setter)
