"""ViewBatch.extend, differential: the native codec extends its lazy span list in place
(NativeCodec.appended, no copy of the batch's), the Python codec re-encodes and rescans; both
must give the same spans, in the same visiting order, with the same resources, scopes, attrs,
notes and payload. Released spans come in any order, under several resources and scopes,
and a batch may be extended several times (spans held across batches)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costctx.pdata.codec import PythonCodec
from costctx.pdata.codec import native as native_module
from costctx.pdata.view_batch import ViewBatch

pytestmark = pytest.mark.skipif(not native_module.AVAILABLE, reason="costctx_native not built")

WATCHED = frozenset({"k", "w", "service.name"})

# A request: resources of scopes of span names (names unique over a test case).
Shape = list[tuple[str, list[tuple[str, list[str]]]]]


def _request(shape: Shape) -> bytes:
    request = ExportTraceServiceRequest()
    for service, scopes in shape:
        rs = request.resource_spans.add()
        rs.resource.attributes.add(key="service.name").value.string_value = service
        for scope, names in scopes:
            ss = rs.scope_spans.add()
            ss.scope.name = scope
            for name in names:
                span = ss.spans.add(name=name, trace_id=b"t" * 16, span_id=name.encode().ljust(8, b"_")[:8])
                span.attributes.add(key="k").value.string_value = name
    return request.SerializeToString()


@st.composite
def _shapes(draw, names: list[str]) -> list[Shape]:
    """`names` cut into 1-4 requests of 1-3 resources of 1-2 scopes each, in a drawn order."""
    names = draw(st.permutations(names))
    requests: list[Shape] = []
    at = 0
    count = draw(st.integers(1, 4))
    for r in range(count):
        left = len(names) - at
        take = left if r == count - 1 else draw(st.integers(1, max(1, left - (count - r - 1))))
        chunk, at = names[at:at + take], at + take
        shape: Shape = []
        while chunk:
            per_resource = draw(st.integers(1, len(chunk)))
            part, chunk = chunk[:per_resource], chunk[per_resource:]
            scopes = []
            while part:
                per_scope = draw(st.integers(1, len(part)))
                scopes.append((draw(st.sampled_from(["lib-a", "lib-b"])), part[:per_scope]))
                part = part[per_scope:]
            shape.append((draw(st.sampled_from(["svc-1", "svc-2", "svc-3"])), scopes))
        requests.append(shape)
    return [r for r in requests if r]


def _state(batch: ViewBatch) -> tuple:
    """What a later processor sees, by span name (the codecs number spans differently)."""
    view = batch.view
    spans = view.spans
    rows = []
    for i in batch.indices():
        span = spans[i]
        rows.append((span.attrs["k"], dict(span.attrs), view.resources[span.resource].service,
                     view.scopes[span.scope].name, view.scopes[span.scope].resource == span.resource,
                     batch.notes.get(i)))
    out = ExportTraceServiceRequest.FromString(batch.payload())
    sent = [(rs.resource.attributes[0].value.string_value, ss.scope.name, span.name,
             sorted((kv.key, kv.value.string_value) for kv in span.attributes))
            for rs in out.resource_spans for ss in rs.scope_spans for span in ss.spans]
    return rows, sent


def _run(codec, requests: list[bytes], ops: list[tuple[int, int, bool]], lazy: bool) -> tuple:
    """The first request as a batch; each later one appended (extend) after edits on spans
    there so far: (op, span pick, read it first) per step, ops removing, setting, noting."""
    batch = ViewBatch(codec, requests[0], WATCHED)
    batch.lazy_spans = lazy
    for step, raw in enumerate([*requests[1:], None]):
        for op, pick, read in ops:
            kept = list(batch.indices())
            if not kept:
                break
            index = kept[pick % len(kept)]
            if read:
                _ = batch.view.spans[index].attrs  # a view made before the extend
            if op == 0:
                batch.set(index, "w", f"set-{step}")
            elif op == 1:
                batch.note(index, "repaired").add(f"n{step}")
            elif op == 2 and len(kept) > 1:
                batch.edits.removed.add(index)
            else:
                batch.set_many(kept[:2], "w", f"group-{step}")
        if raw is not None:
            count = sum(len(ss.spans) for rs in ExportTraceServiceRequest.FromString(raw).resource_spans
                        for ss in rs.scope_spans)
            start = batch.extend(raw, count)
            assert start == len(batch.view.spans) - len(codec.scan(raw, WATCHED).spans)
    return _state(batch)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_extend_matches_the_python_codec(data):
    names = [f"s{i}" for i in range(data.draw(st.integers(2, 12)))]
    shapes = data.draw(_shapes(names))
    requests = [_request(shape) for shape in shapes]
    ops = data.draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 50), st.booleans()), max_size=4))
    lazy = data.draw(st.booleans())
    assert _run(native_module.NativeCodec(), requests, ops, lazy) == _run(PythonCodec(), requests, ops, lazy)


def test_extend_with_shifts_made_views_and_keeps_both_lists_pending_edits():
    """SpanList.extend_with: this list grows in place (its made views and pending edits kept,
    nothing copied); the other's made views are shifted, its pending edits move with its spans,
    and the other list itself is left as it was."""
    codec = native_module.NativeCodec()
    first = codec.scan(_request([("svc-1", [("lib-a", ["a", "b"])])]), WATCHED)
    second = codec.scan(_request([("svc-2", [("lib-a", ["c"]), ("lib-b", ["d"])])]), WATCHED)
    spans, other = first.spans, second.spans
    kept = spans[0]
    spans.edit_attrs((1,), (), (), (("w", "first"),))  # pending: b's view not made
    other.edit_attrs((1,), (), (), (("w", "second"),))  # pending on d
    made = other[0]  # c's view made before
    spans.extend_with(other, len(first.resources), len(first.scopes))
    assert len(spans) == 4 and len(other) == 2 and spans[0] is kept and spans[2] is made
    assert (made.resource, made.scope) == (1, 1)
    assert (spans[3].resource, spans[3].scope) == (1, 2) and spans[3].attrs["w"] == "second"
    assert spans[1].attrs["w"] == "first" and other[1].attrs["w"] == "second"
    assert spans.column("scope") == [0, 0, 1, 2]
    with pytest.raises(ValueError):
        spans.extend_with(spans, 0, 0)
