"""Key normalization: alias tables, OpenTelemetry schema files and value coercion.

The `normalize` processor (sidecar/processors/normalize.py) compiles these into one lookup.
"""
