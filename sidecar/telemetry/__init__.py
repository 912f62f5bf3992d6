"""The sidecar's own telemetry: Prometheus metrics and field-survival counts."""
