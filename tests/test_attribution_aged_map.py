"""The registry's local cache: bounded by entries and by age, and compact per entry."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costctx.attribution.aged_map import AgedMap
from costctx.attribution.registry import ContextRegistry, MemoryBackend
from tests.support.clock import Clock

FIELDS = {"workflow.id": "wf-1", "request.id": "req-1", "owner.tenant": "acme", "owner.feature": "chat"}


def test_never_more_than_max_entries_and_the_newest_half_always_kept():
    cache: AgedMap[int, int] = AgedMap(max_entries=100, ttl=60, timer=Clock())
    for i in range(1, 1001):
        cache[i] = i
        assert len(cache) <= 100
        assert all(cache.get(k) == k for k in range(max(1, i - 49), i + 1))  # the newest 50
    assert cache.get(1) is None and 1 not in cache


def test_a_bound_of_one_keeps_one():
    cache: AgedMap[str, int] = AgedMap(max_entries=1, ttl=60, timer=Clock())
    cache["a"] = 1
    cache["b"] = 2
    assert len(cache) == 1 and cache.get("b") == 2 and cache.get("a") is None


def test_an_entry_is_served_for_half_the_ttl_and_never_once_the_ttl_has_passed():
    clock = Clock()
    cache: AgedMap[str, bool] = AgedMap(max_entries=1000, ttl=60, timer=clock)
    cache["a"] = False  # a falsy value is still an entry
    clock.now += 29.9
    assert "a" in cache and cache.get("a") is False
    cache["b"] = True
    clock.now += 29.9  # "b" is 29.9 s old
    assert cache.get("b") is True
    clock.now += 0.2  # "a" is 60 s old
    assert "a" not in cache
    clock.now += 29.9  # "b" is 60 s old
    assert "b" not in cache and len(cache) == 0


def test_setting_a_key_again_restarts_its_age():
    clock = Clock()
    cache: AgedMap[str, int] = AgedMap(max_entries=1000, ttl=60, timer=clock)
    cache["a"] = 1
    clock.now += 50
    cache["a"] = 2
    clock.now += 40  # 90 s after the first set, 40 after the second
    assert cache.get("a") == 2 and len(cache) == 1


def test_registry_entries_expire_with_the_ttl_through_expire():
    clock = Clock()
    registry = ContextRegistry(MemoryBackend(), ttl=60, max_entries=1000, timer=clock)
    trace_id, span_id = bytes(range(1, 17)), bytes(range(1, 9))
    registry.learn(trace_id, span_id, FIELDS)
    assert registry.local_span(trace_id, span_id) == FIELDS and registry.source(trace_id) == "check"
    clock.now += 61
    registry.expire()
    assert len(registry) == 0 and registry.local_span(trace_id, span_id) is None
    assert registry.source(trace_id) == "registry"


def test_equal_fields_of_many_spans_are_stored_as_one_object():
    registry = ContextRegistry(MemoryBackend(), ttl=60, max_entries=1000)
    trace_id = bytes(range(1, 17))
    for i in range(1, 11):
        registry.learn_span(trace_id, i.to_bytes(8, "big"), dict(FIELDS))
    stored = {id(registry.local_span(trace_id, i.to_bytes(8, "big"))) for i in range(1, 11)}
    assert len(stored) == 1 and registry.local_span(trace_id, (1).to_bytes(8, "big")) == FIELDS


def test_a_span_entry_costs_under_160_bytes_beyond_its_fields():
    """100,000 entries (the default bound) were ~300 bytes each beside key and fields in a
    cachetools.TTLCache: ~60 MB at 10,000 spans/s. Measured: the key (trace id + span id,
    made by the registry) and the cache's own structures, the fields dict shared."""
    registry = ContextRegistry(MemoryBackend(), ttl=3600, max_entries=100_000)
    trace_id = bytes(range(1, 17))
    span_ids = [i.to_bytes(8, "big") for i in range(1, 40_001)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for span_id in span_ids:
            registry.learn_span(trace_id, span_id, FIELDS)
        per_entry = (tracemalloc.get_traced_memory()[0] - before) / len(span_ids)
    finally:
        tracemalloc.stop()
    assert len(registry) == 40_000
    assert per_entry < 160, per_entry


@pytest.mark.parametrize(("module", "unused"), [
    ("costctx.attribution.registry", "redis"),  # ~7 MB of RSS: only for a Redis backend
    ("costctx.service.app", "opentelemetry.sdk"),  # ~3 MB: only when pushing metrics over OTLP
])
def test_start_up_does_not_import_what_the_default_config_does_not_use(module, unused):
    code = f"import sys, {module}; print({unused!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(st.tuples(st.lists(st.integers(0, 30), max_size=12), st.sampled_from([0.0, 10.0, 31.0])),
                      max_size=12),
       bound=st.sampled_from([1, 4, 9, 50]))
def test_set_many_is_one_set_per_key(steps, bound):
    """set_many (and set_pairs) leaves the map as setting each key in order does: the same generations, each
    in the same order (their order is their age), the same ages."""
    one_clock, many_clock = Clock(), Clock()
    one: AgedMap[int, int] = AgedMap(max_entries=bound, ttl=60, timer=one_clock)
    many: AgedMap[int, int] = AgedMap(max_entries=bound, ttl=60, timer=many_clock)
    for value, (keys, step) in enumerate(steps):
        for key in keys:
            one[key] = value
        if value % 2:
            many.set_many(keys, value)
        else:  # set_pairs: the same sets as pairs, values varying
            many.set_pairs([(key, value) for key in keys])
        assert (list(many._young.items()), list(many._old.items()), many._young_since, many._old_since) == (
            list(one._young.items()), list(one._old.items()), one._young_since, one._old_since)
        one_clock.now += step
        many_clock.now += step


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, 12), st.sampled_from([None, False, True]),
                                st.sampled_from([0.0, 10.0, 31.0])), max_size=30),
       bound=st.sampled_from([1, 4, 9]))
def test_put_absent_is_get_then_set(steps, bound):
    """put_absent(key, value) is `if get(key) is None: map[key] = value`, a stored None absent."""
    one_clock, many_clock = Clock(), Clock()
    one: AgedMap[int, bool | None] = AgedMap(max_entries=bound, ttl=60, timer=one_clock)
    many: AgedMap[int, bool | None] = AgedMap(max_entries=bound, ttl=60, timer=many_clock)
    for key, value, step in steps:
        expected = one.get(key) is None
        if expected:
            one[key] = value
        assert many.put_absent(key, value) == expected
        assert (list(many._young.items()), list(many._old.items()), many._young_since, many._old_since) == (
            list(one._young.items()), list(one._old.items()), one._young_since, one._old_since)
        one_clock.now += step
        many_clock.now += step
