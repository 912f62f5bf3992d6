"""SeenSpans: the budget's record of committed spans, bounded in age and in size; each test on
the Python table and on the native one (NativeSeenSpans), which must agree with it step by step."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costctx.budget import seen as seen_module
from costctx.budget.seen import NativeSeenSpans, SeenSpans, new_seen_spans
from tests.support.clock import Clock

native = pytest.mark.skipif(seen_module._SpanKeyTable is None, reason="costctx_native not built")
KINDS = [SeenSpans, pytest.param(NativeSeenSpans, marks=native)]
A, B, C, D = (hash(k) for k in (b"a", b"b", b"c", b"d"))  # keys as the callers make them: hash() ints


@pytest.mark.parametrize("kind", KINDS)
def test_a_span_is_seen_until_its_ttl_has_passed(kind):
    clock = Clock()
    seen = kind(maxsize=10, ttl=900, timer=clock)
    assert A not in seen
    seen.add(A)
    clock.now += 899.9
    assert A in seen
    clock.now += 0.1  # exactly the TTL later: expired, as cachetools.TTLCache
    assert A not in seen
    seen.add(B)  # an insert drops the expired
    assert len(seen) == 1 and B in seen


@pytest.mark.parametrize("kind", KINDS)
def test_the_oldest_span_goes_first_when_full(kind):
    clock = Clock()
    seen = kind(maxsize=3, ttl=900, timer=clock)
    for key in (A, B, C, D):
        seen.add(key)
        clock.now += 1
    assert len(seen) == 3
    assert A not in seen
    assert all(k in seen for k in (B, C, D))
    # An expired span seen again counts as new: it is remembered for a fresh TTL, at the newest end.
    clock.now += 897
    assert B not in seen and C in seen
    seen.add(B)
    clock.now += 1
    assert B in seen and C not in seen


def _fill(seen: SeenSpans, clock: Clock, batches: Iterable[list[int]], step: float) -> None:
    """The budget loop's protocol: one open_batch per batch, tests and adds inline."""
    for keys in batches:
        entries, expiry = seen.open_batch()
        for key in keys:
            if key in entries:
                continue
            if len(entries) >= seen.maxsize:
                seen.make_room()
            entries[key] = expiry
        clock.now += step


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=80, deadline=None)
@given(sizes=st.lists(st.integers(0, 40), min_size=1, max_size=120), step=st.sampled_from([0.0, 0.7, 5.0, 40.0]),
       maxsize=st.integers(8, 200), repeat=st.integers(0, 3))
def test_against_a_set_that_forgets_nothing_early(kind, sizes, step, maxsize, repeat):
    # Reference: when each key was added. The set must know every key added less than the TTL
    # ago among the newest 7/8 of its bound, and never a key added more than TTL + TTL/8 ago.
    clock, ttl = Clock(), 100.0
    seen = kind(maxsize=maxsize, ttl=ttl, timer=clock)
    added: dict[int, float] = {}
    order: list[int] = []
    next_key = 0
    for size in sizes:
        keys = list(range(next_key, next_key + size))
        next_key += size
        keys += order[-repeat:] if repeat else []  # resends of recent keys
        entries, expiry = seen.open_batch()
        for key in keys:
            known = key in added and clock.now - added[key] < ttl
            recent = key in order[-(maxsize * 7 // 8 - 40):] if maxsize * 7 // 8 > 40 else False
            if key in entries:
                assert key in added and clock.now - added[key] < ttl + ttl / 8 + step
                continue
            assert not (known and recent), "a live, recent commit was forgotten"
            if len(entries) >= seen.maxsize:
                seen.make_room()
            entries[key] = expiry
            added[key] = clock.now
            order.append(key)
        assert len(seen) <= maxsize + len(keys)
        clock.now += step


def test_an_entry_costs_under_110_bytes_and_no_gc_tracked_container():
    # ~95 B per hash() key with the dict layout; the OrderedDict with a float per key was ~141
    # for the same int keys (and ~340 with the identity tuple as the key).
    clock = Clock()
    seen = SeenSpans(maxsize=200_000, ttl=900, timer=clock)
    batches = ([hash((b.to_bytes(16, "big"), i.to_bytes(8, "big"), 1000 + i, 50, None)) for i in range(100)]
               for b in range(1000))  # made while traced: the int keys count
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _fill(seen, clock, batches, 0.01)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(seen) == 100_000
    assert grown / len(seen) < 110
    assert not gc.is_tracked(seen.open_batch()[0])


@native
def test_a_native_entry_costs_under_45_bytes_and_nothing_for_the_gc_to_walk():
    clock = Clock()
    seen = NativeSeenSpans(maxsize=200_000, ttl=900, timer=clock)
    batches = ([hash((b.to_bytes(16, "big"), i.to_bytes(8, "big"), 1000 + i, 50, None)) for i in range(100)]
               for b in range(1000))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _fill(seen, clock, batches, 0.01)
        grown = tracemalloc.get_traced_memory()[0] - before  # Python objects left behind: ~none
    finally:
        tracemalloc.stop()
    assert len(seen) == 100_000
    assert (grown + seen.nbytes()) / len(seen) < 45
    assert [r for r in gc.get_referents(seen.open_batch()[0]) if not isinstance(r, type)] == []  # one object


@pytest.mark.parametrize("kind", KINDS)
def test_the_size_bound_drops_the_oldest_generation_and_counts_it(kind):
    clock = Clock()
    seen = kind(maxsize=80, ttl=900, timer=clock)
    _fill(seen, clock, [list(range(b * 10, b * 10 + 10)) for b in range(12)], 1.0)
    assert len(seen) <= 80 and seen.evicted >= 10
    assert all(k in seen for k in range(50, 120))       # the newest 7/8 of the bound kept
    assert 0 not in seen                                 # the oldest went first
    clock.now += 1000
    seen.open_batch()                                    # every generation past its TTL: gone
    assert len(seen) == 0 and seen.expired + seen.evicted == 120


def test_at_the_default_bound_the_table_keeps_its_size_while_keys_come_and_go():
    # A dict with deletions is resized to the power of two above 3 x its live keys: the default
    # bound is chosen to stay in a 2**19-slot table (~10.5 MB); 200,000 keys churned into 2**20.
    import sys

    from costctx.budget.seen import COMMITTED_SPANS

    clock = Clock()
    seen = SeenSpans(maxsize=COMMITTED_SPANS, ttl=900, timer=clock)
    _fill(seen, clock, ([hash((b, i)) for i in range(100)] for b in range(6_000)), 0.01)
    assert seen.evicted > 300_000
    assert sys.getsizeof(seen.open_batch()[0]) < 11 * 2**20


@pytest.mark.parametrize("kind", KINDS)
def test_the_size_bound_is_logged_at_most_once_a_minute(kind, caplog):
    clock = Clock()
    seen = kind(maxsize=16, ttl=900, timer=clock)
    _fill(seen, clock, [[b * 4 + i for i in range(4)] for b in range(40)], 1.0)  # 40 s at the bound
    warnings = [r for r in caplog.records if "commit-once set full" in r.getMessage()]
    assert len(warnings) == 1 and seen.evicted > 100


def test_a_fixed_hash_seed_is_warned_about():
    # Keys are hash() of ids clients choose: unforgeable only under the process's random seed.
    import os
    import subprocess
    import sys

    code = "import logging; logging.basicConfig(); from costctx.budget.seen import SeenSpans; SeenSpans(10, 1)"
    outputs = {seed: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                                    env={**os.environ, "PYTHONHASHSEED": seed}).stderr for seed in ("0", "random")}
    assert "PYTHONHASHSEED is fixed" in outputs["0"] and "PYTHONHASHSEED" not in outputs["random"]


OPS = st.lists(st.one_of(
    st.tuples(st.just("batch"), st.lists(st.integers(0, 300), max_size=30)),  # open_batch, test-and-add
    st.tuples(st.just("add"), st.integers(0, 300)),
    st.tuples(st.just("live"), st.integers(0, 300)),                           # `key in seen`
    st.tuples(st.just("wait"), st.sampled_from([0.0, 0.5, 3.0, 12.5, 40.0, 101.0])),
), max_size=80)


@native
@settings(max_examples=150, deadline=None)
@given(ops=OPS, maxsize=st.integers(1, 120), ttl=st.sampled_from([1.0, 50.0, 100.0]))
def test_the_native_table_answers_as_the_python_one_step_by_step(ops, maxsize, ttl):
    clocks = Clock(), Clock()
    tables = SeenSpans(maxsize, ttl, clocks[0]), NativeSeenSpans(maxsize, ttl, clocks[1])
    keys = [hash((b"k", k)) for k in range(301)]
    for op, arg in ops:
        answers = []
        for table, clock in zip(tables, clocks, strict=True):
            got: list = []
            if op == "batch":
                entries, expiry = table.open_batch()
                for key in (keys[k] for k in arg):
                    if key in entries:
                        got.append(True)
                        continue
                    if len(entries) >= table.maxsize:
                        table.make_room()
                    entries[key] = expiry
                    got.append(False)
            elif op == "add":
                table.add(keys[arg])
            elif op == "live":
                got.append(keys[arg] in table)
            else:
                clock.now += arg
            got.append((len(table), table.evicted, table.expired, table._young_count(), table._oldest_expiry()))
            answers.append(got)
        assert answers[0] == answers[1], (op, arg)
    python, native_ = tables
    assert list(python._entries) == list(native_._entries)  # the same keys, oldest first


def test_the_python_codec_keeps_the_python_table(monkeypatch):
    monkeypatch.setenv("COSTCTX_CODEC", "python")
    assert type(new_seen_spans(10, 1.0)) is SeenSpans
    monkeypatch.setenv("COSTCTX_CODEC", "auto")
    expected = SeenSpans if seen_module._SpanKeyTable is None else NativeSeenSpans
    assert type(new_seen_spans(10, 1.0)) is expected


@native
def test_the_native_table_agrees_through_growth_churn_and_shrinking():
    # Enough keys to grow the native map many times, churn it at its bound (removals in the
    # middle of probe runs), then let age empty it (shrinking); i64's least value is a key too.
    clocks = Clock(), Clock()
    tables = SeenSpans(20_000, 60.0, clocks[0]), NativeSeenSpans(20_000, 60.0, clocks[1])
    batches = [[hash((b, i)) for i in range(100)] for b in range(700)]
    batches[3].append(-2**63)
    batches[400] += batches[399][:50] + [-2**63]  # resends: duplicates, whatever was dropped
    for n, keys in enumerate(batches):
        outcomes = []
        for table, clock in zip(tables, clocks, strict=True):
            entries, expiry = table.open_batch()
            got = []
            for key in keys:
                got.append(key in entries)
                if not got[-1]:
                    if len(entries) >= table.maxsize:
                        table.make_room()
                    entries[key] = expiry
            outcomes.append((got, len(table), table.evicted, table.expired))
            clock.now += 0.2 if n < 600 else 2.0
        assert outcomes[0] == outcomes[1], n
    assert list(tables[0]._entries) == list(tables[1]._entries)
    for table, clock in zip(tables, clocks, strict=True):
        clock.now += 120
        table.open_batch()
        assert len(table) == 0
    assert tables[1].nbytes() < 64 * 1024  # the map gave its slots back
