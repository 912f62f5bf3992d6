"""What an application needs to carry the cost-context envelope in band (OpenTelemetry API/SDK only).

The budget client (gRPC) is `costctx.client.budget`.
"""

from costctx.client.envelope import envelope_from_baggage, open_envelope, with_envelope
from costctx.client.keys import ENVELOPE_KEYS
from costctx.client.propagation import InternalBaggagePropagator, outside_organisation
from costctx.client.span_processor import EnvelopeSpanProcessor

__all__ = [
    "ENVELOPE_KEYS", "EnvelopeSpanProcessor", "InternalBaggagePropagator", "envelope_from_baggage",
    "open_envelope", "outside_organisation", "with_envelope",
]
