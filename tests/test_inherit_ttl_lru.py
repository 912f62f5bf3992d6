"""TtlLru (the inherit processor's ancestor and trace caches) behaves as cachetools.TTLCache.

Random operations on a stepped clock, applied to both; after each step the visible state
must agree: what `get` returns, what `len` counts and which keys are live. Small sizes and
a short ttl so eviction, expiry and re-insertion all happen often.
"""

from __future__ import annotations

import random

import pytest
from cachetools import TTLCache

from sidecar.inherit.ttl_lru import TtlLru


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("seed", range(20))
def test_matches_ttlcache_step_by_step(seed: int) -> None:
    rng = random.Random(seed)
    clock = Clock()
    maxsize, ttl = rng.randint(1, 8), rng.choice([1.0, 2.5, 5.0])
    ours: TtlLru[int, str] = TtlLru(maxsize, ttl, clock)
    theirs: TTLCache[int, str] = TTLCache(maxsize=maxsize, ttl=ttl, timer=clock)
    keys = range(12)
    for step in range(2000):
        op = rng.random()
        key = rng.choice(keys)
        if op < 0.4:
            value = f"v{step}"
            ours.put(key, value)
            theirs[key] = value
        elif op < 0.8:
            assert ours.get(key) == theirs.get(key), (seed, step, key)
        elif op < 0.9:
            ours.expire()
            theirs.expire()
        else:
            clock.now += rng.choice([0.0, 0.5, 1.0, ttl])  # exactly ttl: the boundary
        if step % 10 == 0:
            assert len(ours) == len(theirs)
            assert {k for k in keys if k in ours} == {k for k in keys if k in theirs}


def test_rejects_zero_size() -> None:
    with pytest.raises(ValueError):
        TtlLru(0, 1.0)
