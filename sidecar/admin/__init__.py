"""The internal port: health, readiness and Prometheus metrics."""
