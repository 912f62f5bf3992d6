"""Python code generated from proto/costctx/v1/*.proto (checked in; regenerate with
`python -m costctx.proto_gen.generate`; tests/proto_gen/test_proto_gen.py fails when it is stale)."""
