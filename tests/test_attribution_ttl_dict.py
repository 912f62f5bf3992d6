"""TtlDict (the registry's local cache) against a plain model: an ordered dict of (value,
expiry), written keys moved to the end, the oldest written out first past the bound, an entry
gone once its age reaches the TTL."""

from __future__ import annotations

import random
from collections import OrderedDict

import pytest

from costctx.attribution.ttl_dict import TtlDict


class Model:
    def __init__(self, maxsize: int, ttl: float, timer) -> None:
        self.maxsize, self.ttl, self.timer = maxsize, ttl, timer
        self.data: OrderedDict = OrderedDict()

    def _drop_due(self) -> None:
        now = self.timer()
        for key in [k for k, (_, expires) in self.data.items() if now >= expires]:
            del self.data[key]

    def set(self, key, value) -> None:
        self._drop_due()
        self.data.pop(key, None)
        self.data[key] = (value, self.timer() + self.ttl)
        while len(self.data) > self.maxsize:
            self.data.popitem(last=False)

    def get(self, key):
        self._drop_due()
        found = self.data.get(key)
        return None if found is None else found[0]


@pytest.mark.parametrize("seed", range(10))
def test_ttl_dict_answers_as_the_model(seed):
    rng = random.Random(seed)
    clock = [50.0]
    maxsize, ttl = rng.choice([(3, 2.0), (10, 5.0), (50, 1.5)])
    cache, model = TtlDict(maxsize, ttl, lambda: clock[0]), Model(maxsize, ttl, lambda: clock[0])
    keys = list(range(rng.choice([5, 20, 80])))
    for _ in range(4000):
        op = rng.random()
        if op < 0.5:
            key, value = rng.choice(keys), rng.randrange(1000)
            cache[key] = value
            model.set(key, value)
            assert len(cache) == len(model.data)
        elif op < 0.85:
            key = rng.choice(keys)
            assert cache.get(key) == model.get(key)
            assert (key in cache) == (model.get(key) is not None)
        elif op < 0.95:
            clock[0] += rng.choice([0.25, 0.5, 1.0])
        else:
            cache.expire()
            model._drop_due()
            assert len(cache) == len(model.data)
        assert len(cache) <= maxsize


def test_writes_close_in_time_share_one_run_and_age_out_together():
    clock = [0.0]
    cache = TtlDict(1000, 4096.0, lambda: clock[0])
    for i in range(100):
        clock[0] = i * 0.01  # within ttl / 4096 (1 s) of the first
        cache[i] = i
    assert len(cache._chunks) == 1 and len(cache) == 100
    clock[0] = 4096.0  # the first one's age
    assert cache.get(99) is None and len(cache) == 0
