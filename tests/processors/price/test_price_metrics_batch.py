"""The price processor's per-batch metric updates (inc_each, observe_each) against one
`inc` / `observe` per amount: the same samples, the float sums to the last bit."""

import math
import random

from prometheus_client import CollectorRegistry, Counter, Histogram

from costctx.processors.price.metrics import inc_each, observe_each

BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, float("inf"))


def _samples(registry: CollectorRegistry) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in registry.collect()
            for s in family.samples if not s.name.endswith("_created")}


def _pair(labelled: bool):
    out = []
    for _ in range(2):
        registry = CollectorRegistry()
        counter = Counter("drift_usd", "d", ["processor"] if labelled else (), registry=registry)
        histogram = Histogram("drift_ratio", "r", ["processor"] if labelled else (), buckets=BUCKETS,
                              registry=registry)
        if labelled:  # as ComponentMetrics gives them: the processor's child
            counter, histogram = counter.labels("price"), histogram.labels("price")
        out.append((registry, counter, histogram))
    return out


def test_batched_updates_equal_one_update_per_amount():
    rng = random.Random(3)
    for labelled in (False, True):
        (mine, counter, histogram), (theirs, each_counter, each_histogram) = _pair(labelled)
        for _ in range(40):
            # sums whose order matters (1e16 + 1 + 1 differs from 1e16 + 2), bounds hit exactly, inf
            amounts = [rng.choice([0.0, 1e-12, 0.1, 0.3, 1.0, 2.0, 1e16, rng.random(), rng.expovariate(3)])
                       for _ in range(rng.randrange(0, 9))]
            ratios = amounts + [math.inf] * rng.randrange(2)
            inc_each(counter, amounts)
            observe_each(histogram, ratios)
            for amount in amounts:
                each_counter.inc(amount)
            for ratio in ratios:
                each_histogram.observe(ratio)
            assert _samples(mine) == _samples(theirs)
        assert _samples(mine)[("drift_ratio_count", (("processor", "price"),) if labelled else ())] > 100


class _PublicOnly:
    """A metric as a prometheus_client release without the internals inc_each / observe_each
    read would give it: only the public calls."""

    def __init__(self, metric) -> None:
        self._metric = metric

    def inc(self, amount: float) -> None:
        self._metric.inc(amount)

    def observe(self, amount: float) -> None:
        self._metric.observe(amount)


def test_a_release_without_the_internals_gets_one_public_call_per_amount():
    (mine, counter, histogram), (theirs, each_counter, each_histogram) = _pair(labelled=True)
    amounts = [0.1, 0.3, 1e16, 1.0, 0.05]
    inc_each(_PublicOnly(counter), amounts)
    observe_each(_PublicOnly(histogram), amounts + [math.inf])
    for amount in amounts:
        each_counter.inc(amount)
    for ratio in amounts + [math.inf]:
        each_histogram.observe(ratio)
    assert _samples(mine) == _samples(theirs)
