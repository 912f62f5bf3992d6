"""Key normalization: alias tables, OpenTelemetry schema files and value coercion.

The `normalize` processor (sidecar/costctx/processors/normalize/processor.py) compiles these into one lookup.
"""
