"""Field survival, readiness and spend as Prometheus metrics, read from the recorder at scrape time.

A custom collector instead of labelled Counters: the recorder already aggregates per batch,
so the hot path does no per-label lookups at all, and a scrape costs one snapshot.
Every label value is bounded by the recorder (overflow becomes `other`).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from costctx.pricing.money import to_usd_float
from costctx.survival.recorder import OUTCOMES, SurvivalRecorder, dimension_label
from costctx.survival.report import VERDICTS, readiness


class SurvivalCollector(Collector):
    def __init__(self, recorder: SurvivalRecorder) -> None:
        self.recorder = recorder

    def _families(self) -> dict[str, Metric]:
        dims = [dimension_label(d) for d in self.recorder.spend_dimensions]
        return {
            "outcomes": CounterMetricFamily(
                "costctx_field_outcomes",
                "Context-field outcomes per span, by hop (resource service.name), field and outcome "
                "(present, renamed, inherited, missing, conflict, settled).",
                labels=["hop", "field", "outcome"],
            ),
            "hop_spans": CounterMetricFamily(
                "costctx_hop_spans", "Spans checked by the envelope processor, by hop.", labels=["hop"]
            ),
            "spend": CounterMetricFamily(
                "costctx_spend_usd",
                "Spend (cost.usd) of forwarded spans by spend dimension; `unknown` when the span has no value.",
                labels=dims,
            ),
            "recovered": CounterMetricFamily(
                "costctx_spend_recovered_usd",
                "Spend whose owner.tenant was filled from an ancestor: it would have been unknown without repair.",
                labels=dims,
            ),
            "settled": CounterMetricFamily(
                "costctx_spend_settled_usd",
                "Spend moved onto these dimensions when its context arrived after the span had left "
                "(it left the `unknown` row then: costctx_spend_usd is net of settlement).",
                labels=dims,
            ),
            "pending": GaugeMetricFamily(
                "costctx_spend_pending_usd",
                "Spend forwarded without its context and not settled yet (within the attribution window).",
            ),
            "llm_spans": GaugeMetricFamily(
                "costctx_readiness_llm_spans",
                "LLM spans in the readiness window the verdict is computed over, by workflow.name.",
                labels=["workflow"],
            ),
            "verdict": GaugeMetricFamily(
                "costctx_readiness_verdict",
                "The ten-field readiness verdict per workflow.name: 1 for the current verdict, 0 otherwise.",
                labels=["workflow", "verdict"],
            ),
            "overflow": CounterMetricFamily(
                "costctx_label_overflow",
                "Label values folded into `other` because the label reached max_label_values.",
                labels=["label"],
            ),
        }

    def describe(self) -> Iterator[Metric]:
        return iter(self._families().values())

    def collect(self) -> Iterator[Metric]:
        snapshot = self.recorder.snapshot_all()
        families = self._families()
        outcomes = families["outcomes"]
        for hop, spans in snapshot.hop_spans.items():
            families["hop_spans"].add_metric([hop], spans)
            for key in snapshot.fields:
                for outcome in OUTCOMES:
                    # Zeros too: a series that exists from the first span makes rate() exact.
                    outcomes.add_metric([hop, key, outcome], snapshot.counts.get((hop, key, outcome), 0))
        spend_totals: dict[tuple[str, ...], list[int]] = {}
        for (_workflow, values), row in snapshot.spend.items():
            acc = spend_totals.setdefault(values, [0, 0, 0])
            acc[0] += row.total
            acc[1] += row.recovered
            acc[2] += row.settled
        for values, (total, recovered, settled) in spend_totals.items():
            families["spend"].add_metric(list(values), to_usd_float(total))
            families["recovered"].add_metric(list(values), to_usd_float(recovered))
            families["settled"].add_metric(list(values), to_usd_float(settled))
        families["pending"].add_metric([], to_usd_float(snapshot.pending_spend))
        for row in readiness(snapshot):
            families["llm_spans"].add_metric([row["workflow"]], row["llm_spans"])
            for verdict in VERDICTS:
                families["verdict"].add_metric([row["workflow"], verdict], 1.0 if row["verdict"] == verdict else 0.0)
        for label, count in self.recorder.label_overflows().items():
            families["overflow"].add_metric([label], count)
        yield from families.values()
