"""OTLP exporters: a bounded sending queue in front of a gRPC or HTTP sender."""
