"""SeenSpans: the budget's record of committed spans, bounded in age and in size."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from costctx.budget.seen import SeenSpans
from tests.support.clock import Clock


def test_a_span_is_seen_until_its_ttl_has_passed():
    clock = Clock()
    seen = SeenSpans(maxsize=10, ttl=900, timer=clock)
    assert b"a" not in seen
    seen.add(b"a")
    clock.now += 899.9
    assert b"a" in seen
    clock.now += 0.1  # exactly the TTL later: expired, as cachetools.TTLCache
    assert b"a" not in seen
    seen.add(b"b")  # an insert drops the expired
    assert len(seen) == 1 and b"b" in seen


def test_the_oldest_span_goes_first_when_full():
    clock = Clock()
    seen = SeenSpans(maxsize=3, ttl=900, timer=clock)
    for key in (b"a", b"b", b"c", b"d"):
        seen.add(key)
        clock.now += 1
    assert len(seen) == 3
    assert b"a" not in seen
    assert all(k in seen for k in (b"b", b"c", b"d"))
    # An expired span seen again counts as new: it is remembered for a fresh TTL, at the newest end.
    clock.now += 897
    assert b"b" not in seen and b"c" in seen
    seen.add(b"b")
    clock.now += 1
    assert b"b" in seen and b"c" not in seen


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


@settings(max_examples=80, deadline=None)
@given(sizes=st.lists(st.integers(0, 40), min_size=1, max_size=120), step=st.sampled_from([0.0, 0.7, 5.0, 40.0]),
       maxsize=st.integers(8, 200), repeat=st.integers(0, 3))
def test_against_a_set_that_forgets_nothing_early(sizes, step, maxsize, repeat):
    # Reference: when each key was added. The set must know every key added less than the TTL
    # ago among the newest 7/8 of its bound, and never a key added more than TTL + TTL/8 ago.
    clock, ttl = Clock(), 100.0
    seen = SeenSpans(maxsize=maxsize, ttl=ttl, timer=clock)
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


def test_the_size_bound_drops_the_oldest_generation_and_counts_it():
    clock = Clock()
    seen = SeenSpans(maxsize=80, ttl=900, timer=clock)
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


def test_the_size_bound_is_logged_at_most_once_a_minute(caplog):
    clock = Clock()
    seen = SeenSpans(maxsize=16, ttl=900, timer=clock)
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
