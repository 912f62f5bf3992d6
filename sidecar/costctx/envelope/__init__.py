"""The canonical cost-context envelope, loaded from the packaged data file."""

from costctx.envelope.schema import ENVELOPE, ContextField, Envelope, ReadinessCheck

__all__ = ["ENVELOPE", "ContextField", "Envelope", "ReadinessCheck"]
