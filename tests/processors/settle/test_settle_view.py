"""settle on the batch view: what it remembers of a priced span that leaves without its context."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from costctx.pdata.codec import select_codec
from costctx.pdata.codec.native import AVAILABLE as NATIVE
from costctx.pdata.view_batch import ViewBatch
from tests.support.otlp import kv
from tests.support.processors import standalone_processor

CODECS = ["python", pytest.param("native", marks=pytest.mark.skipif(not NATIVE, reason="no native codec"))]


def _request() -> tuple[bytes, Resource]:
    """A resource that arrived with no spans, then `agent` with one priced span lacking workflow.id."""
    request = ExportTraceServiceRequest()
    request.resource_spans.add().resource.attributes.append(kv("service.name", "empty-one"))
    rs = request.resource_spans.add()
    rs.resource.attributes.extend([kv("service.name", "agent"), kv("deployment.environment", "prod")])
    span = rs.scope_spans.add().spans.add(trace_id=b"t" * 16, span_id=b"s" * 8, name="chat",
                                          start_time_unix_nano=1_000, end_time_unix_nano=2_000)
    span.attributes.extend([kv("cost.usd", 0.25), kv("cost.price_source", "builtin@1#abc"),
                            kv("owner.tenant", "acme"), kv("gen_ai.usage.input_tokens", 7),
                            kv("gen_ai.usage.output_tokens", 3.0)])  # a double count reads as 0, as int_value
    return request.SerializeToString(), rs.resource


@pytest.mark.parametrize("codec", CODECS)
def test_a_pending_span_keeps_its_own_resource_and_hop(codec):
    settle = standalone_processor("settle")
    raw, resource = _request()
    batch = ViewBatch(select_codec(codec), raw, settle.watched_keys())
    assert settle.process_view(batch) is batch
    [entry] = settle.ledger._entries.values()
    assert entry.hop == "agent"
    assert Resource.FromString(entry.resource) == resource  # not the empty resource before it
    assert (entry.cost_pico, entry.input_tokens, entry.output_tokens) == (250_000_000_000, 7, 0)
    assert entry.price_source == "builtin@1#abc"
    assert entry.fields == {"owner.tenant": "acme"} and "workflow.id" in entry.missing
    assert (entry.start_ns, entry.end_ns) == (1_000, 2_000)
    assert batch.payload() == raw  # settle never changes a span


@pytest.mark.skipif(not NATIVE, reason="no native codec")
def test_pending_spans_on_the_lazy_list_are_remembered_as_from_views():
    """With the processors before it columnar, settle reads what a pending span keeps from the
    lazy list's columns: no view made, the same entries (fields, amounts, ids, resource, hop)
    as from views made beforehand, on the bench workload priced (no inherit: many spans pending)."""
    from bench.workload import WorkloadSpec, build_requests

    codec = select_codec("native")
    for raw in build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, batches=3)):
        entries = []
        for lazy in (True, False):
            price, settle = standalone_processor("price"), standalone_processor("settle")
            added: list = []
            add = settle.ledger.add
            settle.ledger.add = lambda entry, _add=add, _added=added: (_added.append(entry), _add(entry))[1]
            batch = ViewBatch(codec, raw, price.watched_keys() | settle.watched_keys())
            batch.lazy_spans = lazy
            assert price.process_view(batch) is batch  # costs stamped (no view for inline calls)
            made = batch.view.spans.made_count() if lazy else 0
            assert settle.process_view(batch) is batch
            if lazy:
                assert batch.view.spans.made_count() == made
            settled = {by: settle.metrics.settled.labels(by)._value.get() for by in ("ancestor", "registry")}
            entries.append(([{k: getattr(e, k) for k in e.__dataclass_fields__ if k != "added_at"} for e in added],
                            settled, len(settle.ledger)))
        assert entries[0] == entries[1] and entries[0][0]
