"""inherit teaches the context registry a batch's spans in one call at the batch's end
(RegistryLink.learn_batch): the registry ends the batch as it did when each span was learned
as it was decided (`learn` per span, `learn_many` per unit of spans alike: the oracle, kept
here): the same local entries in the same order (their order is their age), the same traces,
the same writes pending in the same order, the same fields object last stored."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from costctx.attribution.registry import ContextRegistry, MemoryBackend
from costctx.processors.inherit.learn_plan import learn_plan, native_learn_plan
from costctx.processors.inherit.registry_link import RegistryLink

_REMOTE = (Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_PRODUCER)


class _SharedBackend:
    """A store that takes writes and answers nothing: the registry queues what it learns."""

    shared = True

    async def write(self, entries, ttl_ms):
        return None

    async def read(self, names):
        return [None] * len(names)

    async def close(self):
        return None


def _oracle_learn(link: Any, kind: int, span_id: bytes, trace_id: bytes, own: dict) -> None:
    """RegistryLink.learn as it was, per span."""
    if kind in _REMOTE:
        if trace_id in link._learned:
            link.registry.learn_span(trace_id, span_id, own)
        else:
            link._learned.add(trace_id)
            link.registry.learn(trace_id, span_id, own, trace_locally=False)
    elif trace_id not in link._learned:
        link._learned.add(trace_id)
        link.registry.learn(trace_id, None, own, trace_locally=False)


def _oracle_learn_many(link: Any, spans: list, own: dict) -> None:
    """RegistryLink.learn_many as it was, per unit."""
    keys: list[bytes] = []
    for span in spans:
        trace_id = span.trace_id
        remote = span.kind in _REMOTE
        if trace_id in link._learned:
            if remote and trace_id and span.span_id:
                keys.append(trace_id + span.span_id)
            continue
        if keys:
            link.registry.learn_spans(keys, own)
            keys = []
        link._learned.add(trace_id)
        link.registry.learn(trace_id, span.span_id if remote else None, own, trace_locally=False)
    if keys:
        link.registry.learn_spans(keys, own)


def _state(registry: ContextRegistry) -> tuple:
    cache, traces = registry._cache, registry._traces
    return (list(cache._old.items()), list(cache._young.items()), list(traces._old.items()),
            list(traces._young.items()), list(registry._pending.items()), registry._last_fields)


def _stored(registry: ContextRegistry) -> list[int]:
    """Which of _OWNS each local entry holds, by identity."""
    cache = registry._cache
    return [_which(v) for v in (*cache._old.values(), *cache._young.values())]


def _which(fields: dict) -> int:
    """Which of _OWNS the object is (-1: the registry's own first one)."""
    return next((at for at, own in enumerate(_OWNS) if own is fields), -1)


_TRACES = [bytes([t]) * 16 for t in range(1, 5)] + [b""]
_SPANS = [bytes([s]) * 8 for s in range(1, 7)] + [b""]
_KINDS = [Span.SPAN_KIND_INTERNAL, Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_PRODUCER]
# Fields dicts: two equal objects apart, another workflow; a batch shares dicts by identity.
_OWNS = [{"workflow.id": "w1", "owner.team": "t"}, {"workflow.id": "w1", "owner.team": "t"},
         {"workflow.id": "w2"}]
_span = st.builds(SimpleNamespace, trace_id=st.sampled_from(_TRACES), span_id=st.sampled_from(_SPANS),
                  kind=st.sampled_from(_KINDS))
_entry = st.tuples(st.one_of(_span, st.lists(_span, min_size=1, max_size=5)), st.integers(0, len(_OWNS) - 1))


_NATIVE = [False, pytest.param(True, marks=pytest.mark.skipif(native_learn_plan is None, reason="no extension"))]


@pytest.mark.parametrize("native", _NATIVE)
@settings(max_examples=200, deadline=None)
@given(batches=st.lists(st.lists(_entry, max_size=12), min_size=1, max_size=3), bound=st.sampled_from([4, 50]),
       shared=st.booleans(), max_pending=st.sampled_from([3, 10_000]))
def test_a_batch_learned_in_one_call_leaves_the_registry_as_span_by_span(native, batches, bound, shared,
                                                                         max_pending):
    clock = [0.0]
    timer = lambda: clock[0]  # noqa: E731

    def registry() -> ContextRegistry:
        backend = _SharedBackend() if shared else MemoryBackend()
        return ContextRegistry(backend, 60, bound, timer, max_pending_writes=max_pending)

    oracle = SimpleNamespace(registry=registry(), _learned=set())
    batched = SimpleNamespace(registry=registry(), _learned=set())
    for batch in batches:
        oracle._learned.clear()
        batched._learned.clear()
        learning = []
        for spans, own_at in batch:
            own = _OWNS[own_at]
            if type(spans) is list:
                _oracle_learn_many(oracle, spans, own)
            else:
                _oracle_learn(oracle, spans.kind, spans.span_id, spans.trace_id, own)
            learning.append((spans, own))
        RegistryLink.learn_batch(batched, learning, native)  # type: ignore[arg-type]
        assert _state(batched.registry) == _state(oracle.registry)
        assert _which(batched.registry._last_fields) == _which(oracle.registry._last_fields)
        assert batched.registry.dropped_writes == oracle.registry.dropped_writes
        assert _stored(batched.registry) == _stored(oracle.registry)  # equal dicts stored as one object
        clock[0] += 1.0


@pytest.mark.skipif(native_learn_plan is None, reason="built without the extension")
@settings(max_examples=300, deadline=None)
@given(batch=st.lists(_entry, max_size=16), already=st.sets(st.sampled_from(_TRACES)))
def test_the_native_plan_is_the_python_plan(batch, already):
    """learn_plan natively and in Python: the same steps (the same fields objects, by
    identity), and the same traces added to `learned`."""
    learning = [(spans, _OWNS[at]) for spans, at in batch]
    learned, native_learned = set(already), set(already)
    expected = learn_plan(learning, learned)
    found = native_learn_plan(learning, native_learned)
    assert found == expected
    assert [step[-1] is want[-1] for step, want in zip(found, expected, strict=True)] == [True] * len(expected)
    assert native_learned == learned


def test_a_shared_registry_encodes_each_fields_object_once_per_batch(monkeypatch):
    """With a shared store, learn_steps encodes a fields dict once per call however many steps
    carry it (a workflow's spans and its trace), each written value still that dict's JSON."""
    import json

    import costctx.attribution.registry as registry_module

    encoded: list[dict] = []
    encode = registry_module._encode
    monkeypatch.setattr(registry_module, "_encode", lambda fields: encoded.append(fields) or encode(fields))
    registry = ContextRegistry(_SharedBackend(), 60, 1000, lambda: 0.0)
    first, equal, other = _OWNS
    t1, t2, t3 = _TRACES[:3]
    s1, s2 = _SPANS[:2]
    registry.learn_steps([
        (t1, s1, first),  # the trace and its span
        ([t1 + s2, t2 + s1], first),  # a run of the same object
        (t2, None, equal),  # equal, another object: encoded for itself (same bytes)
        (t3, s2, other),
        ([t3 + s1], other),
    ])
    assert [id(fields) for fields in encoded] == [id(first), id(equal), id(other)]
    want = {t1 + s1: first, t1: first, t1 + s2: first, t2 + s1: first, t2: equal, t3 + s2: other, t3: other,
            t3 + s1: other}
    assert registry._pending == {
        key: json.dumps(fields, separators=(",", ":"), sort_keys=True).encode() for key, fields in want.items()}


_VALUES = st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.none(),
                    st.floats(allow_nan=False), st.lists(st.text(max_size=4), max_size=3))


@settings(max_examples=200, deadline=None)
@given(fields=st.dictionaries(st.text(max_size=12), _VALUES, max_size=8))
def test_the_registry_encoding_is_compact_sorted_json(fields):
    """_encode (its encoder made once) writes what json.dumps(sort_keys, compact) writes."""
    import json

    from costctx.attribution.registry import _decode, _encode

    assert _encode(fields) == json.dumps(fields, separators=(",", ":"), sort_keys=True).encode()
    assert _decode(_encode(fields)) == fields
