"""costctx: an OTLP sidecar that carries one cost-context envelope on every span."""

__version__ = "0.1.0"
