"""OTLP receivers (gRPC and HTTP) and the servers they, and later services, share."""
