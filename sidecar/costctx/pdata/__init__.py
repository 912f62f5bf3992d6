"""Views over OTLP protobuf batches, shared by every processor of a pipeline."""

from costctx.pdata.batch import ResourceView, SpanRecord, TraceBatch

__all__ = ["ResourceView", "SpanRecord", "TraceBatch"]
