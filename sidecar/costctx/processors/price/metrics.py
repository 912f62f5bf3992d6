"""The `price` processor's metrics, labelled `processor=<id>` (families shared by every instance)."""

from __future__ import annotations

from costctx.telemetry.metrics import ComponentMetrics


class PriceMetrics:
    def __init__(self, m: ComponentMetrics) -> None:
        self.priced = m.counter("costctx_price_priced_spans", "Spans stamped with a cost, by origin.", ["origin"])
        self.misses = m.counter("costctx_price_misses", "Spans with a model or tokens but no cost, by model and "
                                "reason (unknown_model, missing_tokens); model names are bounded, then 'other'.",
                                ["model", "reason"])
        self.drift_compared = m.counter("costctx_price_reported_compared_spans",
                                        "Spans with a provider-reported cost that the sidecar could also price.")
        self.drift_spans = m.counter("costctx_price_reported_drift_spans",
                                     "Reported costs differing from the computed cost by more than the tolerance.",
                                     ["model"])
        self.drift_usd = m.counter("costctx_price_reported_drift_usd",
                                   "Sum of |computed - reported| in USD over compared spans.")
        self.drift_ratio = m.histogram("costctx_price_reported_drift_ratio",
                                       "|computed - reported| / reported per compared span.",
                                       buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, float("inf")))
        self.reloads = m.counter("costctx_price_reloads", "Price sources (re)loaded.", ["source"])
        self.reload_failures = m.counter("costctx_price_reload_failures",
                                         "Price source loads that failed; the last good table stays in use.",
                                         ["source"])
        self.duplicates = m.counter("costctx_price_duplicate_spans",
                                    "Spans seen again within the dedupe window (a resent batch): priced, "
                                    "but not added to the workflow's running total twice.")
        self.untracked = m.counter("costctx_price_spend_untracked_spans",
                                   "Priced spans without workflow.id: no running total.")
        self.token_mismatch = m.counter("costctx_price_token_count_mismatch_spans",
                                        "Spans whose cache/reasoning counts contradicted the token mode "
                                        "(e.g. cached > input in inclusive mode); read as reported beside.",
                                        ["provider"])
        self.time_outside_tolerance = m.counter(
            "costctx_price_start_time_outside_tolerance_spans",
            "Spans whose start time was further from the sidecar's clock than `start_time_tolerance`: "
            "priced at the price in effect now, not at their own (possibly forged) time.")
        self.reported_other_currency = m.counter(
            "costctx_price_reported_non_usd_spans",
            "Spans reporting gen_ai.usage.cost.amount in a currency other than USD: not used as a reported "
            "cost, and the span is left unpriced (no exchange rate is assumed).", ["currency"])


def inc_each(counter, amounts) -> None:
    """`counter.inc(a)` for each amount (each >= 0), in order, as one update: the same float
    sum, added to the value in the same order (float sums in another order round differently),
    without a call and a lock per amount. Reads prometheus_client's internals: a release without
    them gets the public call per amount."""
    value = getattr(counter, "_value", None)  # a ValueClass (get/set; a mmap one in multiprocess mode)
    if value is None:
        for amount in amounts:
            counter.inc(amount)
        return
    total = value.get()
    for amount in amounts:
        total += amount
    value.set(total)


def observe_each(histogram, amounts) -> None:
    """`histogram.observe(a)` for each amount, in order, as one update: the sum added to in the
    same order, each bucket's count added once (a count of 1.0s is exact). Reads prometheus_client's
    internals: a release without them gets the public call per amount."""
    bounds = getattr(histogram, "_upper_bounds", None)
    if bounds is None or not hasattr(histogram, "_sum") or not hasattr(histogram, "_buckets"):
        for amount in amounts:
            histogram.observe(amount)
        return
    counts = [0] * len(bounds)
    total = histogram._sum.get()
    for amount in amounts:
        total += amount
        for i, bound in enumerate(bounds):
            if amount <= bound:
                counts[i] += 1
                break
    histogram._sum.set(total)
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)
