"""SeenSpans: the budget's record of committed spans, bounded in age and in size."""

from __future__ import annotations

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
