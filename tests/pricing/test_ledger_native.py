"""The spend ledger's loop over a batch's entries in Rust (`add_spend`, native/src/price.rs)
gives what the Python one (the oracle) gives: each entry's running total, the duplicates, and
the tables left behind (both generations, the dedupe set), over resends within and across
batches, rotations by size midway through a batch, the dedupe bound, entries without a span
key and totals past 64 bits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costctx.pricing.ledger import SpendLedger, native_add_spend

pytestmark = pytest.mark.skipif(native_add_spend is None, reason="costctx_native not built")

ENTRY = st.tuples(st.sampled_from(["wf-1", "wf-2", "wf-3", "wf-4", "wf-5"]),
                  st.one_of(st.integers(0, 10**9), st.sampled_from([2**63 - 1, 2**70, 0])),
                  st.one_of(st.none(), st.sampled_from([b"a" * 24, b"b" * 24, b"c" * 24])))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _ledger(clock: Clock, maxsize: int, dedupe: int) -> SpendLedger:
    return SpendLedger(maxsize=maxsize, ttl=100.0, timer=clock, dedupe_size=dedupe, dedupe_window=50.0)


def _state(ledger: SpendLedger) -> tuple:
    return (dict(ledger._young), dict(ledger._old), dict(ledger._seen._entries), ledger.duplicates, ledger.evicted,
            ledger._seen.evicted)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(ENTRY, max_size=12), max_size=5), st.integers(1, 6), st.integers(0, 4))
def test_native_add_spend_is_the_python_one(batches, maxsize, dedupe):
    clock = Clock()
    python, native = _ledger(clock, maxsize, dedupe), _ledger(clock, maxsize, dedupe)
    for entries in batches:
        assert native.add_batch(entries, native=True) == python.add_batch(entries)
        assert _state(native) == _state(python)
        clock.now += 7.0


def test_a_resend_counts_once_and_a_rotation_midway_keeps_every_total():
    clock = Clock()
    for native in (False, True):
        ledger = _ledger(clock, 2, 10)  # young generation of 1: each new workflow rotates
        entries = [("wf-1", 5, b"k" * 24), ("wf-2", 7, b"l" * 24), ("wf-1", 5, b"k" * 24), ("wf-1", 1, None),
                   ("wf-1", 2**64, None)]
        assert ledger.add_batch(entries, native=native) == [5, 7, 5, 6, 2**64 + 6]
        assert ledger.duplicates == 1 and ledger.total("wf-1") == 2**64 + 6 and ledger.total("wf-2") == 7
