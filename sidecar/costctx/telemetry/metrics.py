"""Internal metrics on a per-sidecar Prometheus registry (several sidecars may share a process in tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily

MetricFamily = Counter | Gauge | Histogram


# Bounded tables' forgotten entries (processors' state, read at scrape time).
FORGOTTEN = "costctx_table_forgotten"
FORGOTTEN_HELP = (
    "Entries a bounded table forgot, by table and reason: evicted (its size bound, before their age) or "
    "expired (their age). budget_commit_once / spend_dedupe evicted: a resend of such a span would be "
    "counted again; budget_store / spend_totals: that workflow's running figures restart at 0 in this pod."
)


class SidecarMetrics:
    """The sidecar's Prometheus registry (served on the admin port at /metrics) and the one way
    components register on it (`family`; per instance through ComponentMetrics). Each component's
    metrics are defined in its folder's metrics.py."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        # Families registered through `family` (once per registry, however many instances).
        self._families: dict[str, tuple[MetricFamily, tuple[str, ...]]] = {}
        self._read_counters: dict[str, ReadCounter] = {}
        # The pipeline's own: a processor failing on a batch, by processor id.
        self.processor_errors = self.family(
            Counter,
            "costctx_processor_errors",
            "Batches a processor failed on; the batch is forwarded unprocessed rather than lost.",
            ["processor"],
        )

    def family(self, kind: type[MetricFamily], name: str, documentation: str, labels: Sequence[str],
               **options: Any) -> MetricFamily:
        """The one `name` family of this registry, registered on first use. A registry refuses a
        name twice (DuplicateTimeseries), so `budget` and `budget/b` must share their families;
        asking again with another kind or other labels is a programming error."""
        labels = tuple(labels)
        found = self._families.get(name)
        if found is not None:
            family, known = found
            if type(family) is not kind or known != labels:
                raise ValueError(f"metric {name} registered as {type(family).__name__}{known}, "
                                 f"asked for as {kind.__name__}{labels}")
            return family
        family = kind(name, documentation, labels, registry=self.registry, **options)
        self._families[name] = (family, labels)
        return family

    def read_counter(self, name: str, documentation: str, labels: Sequence[str]) -> ReadCounter:
        """The one `name` counter family whose values are read at scrape time (see ReadCounter)."""
        labels = tuple(labels)
        found = self._read_counters.get(name)
        if found is None:
            found = self._read_counters[name] = ReadCounter(name, documentation, labels)
            self.registry.register(found)
        elif found.labels != labels:
            raise ValueError(f"metric {name} registered with labels {found.labels}, asked for with {labels}")
        return found


class ReadCounter:
    """A counter family whose samples are read at scrape time from the objects that count (a
    bounded table's evictions): nothing to update on the hot path, and the object stays the one
    place the count lives."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        self.name, self.documentation, self.labels = name, documentation, labels
        # label values -> reader; a component rebuilt under the same id replaces its readers
        # (one sample per label set, as the exposition requires).
        self._readers: dict[tuple[str, ...], Callable[[], float]] = {}

    def add(self, values: Sequence[str], read: Callable[[], float]) -> None:
        if len(values) != len(self.labels):
            raise ValueError(f"metric {self.name} takes labels {self.labels}, given {tuple(values)}")
        self._readers[tuple(values)] = read

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labels)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, read in self._readers.items():
            family.add_metric(values, read())
        yield family


class BoundFamily:
    """A labelled family with the component id filled in: `.labels(*rest)` as if it had only the rest."""

    __slots__ = ("_family", "_component_id")

    def __init__(self, family: MetricFamily, component_id: str) -> None:
        self._family = family
        self._component_id = component_id

    def labels(self, *values: str) -> Any:
        return self._family.labels(self._component_id, *values)


class ComponentMetrics:
    """How every component builds its metrics: one family per metric name per registry, labelled
    first by the component's id (`processor="budget/b"`), handed to the instance bound to its id.
    A metric without labels of its own comes back as the instance's child (`.inc()`, `.set()`,
    `.observe()`); one with labels as a BoundFamily (`.labels(policy, decision).inc()`)."""

    def __init__(self, metrics: SidecarMetrics, kind_label: str, component_id: str) -> None:
        self.sidecar = metrics
        self.kind_label = kind_label  # "processor", "exporter", "extension", "receiver"
        self.component_id = component_id

    def _bind(self, kind: type[MetricFamily], name: str, documentation: str, labels: Sequence[str],
              **options: Any) -> Any:
        family = self.sidecar.family(kind, name, documentation, (self.kind_label, *labels), **options)
        return family.labels(self.component_id) if not labels else BoundFamily(family, self.component_id)

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Any:
        return self._bind(Counter, name, documentation, labels)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Any:
        return self._bind(Gauge, name, documentation, labels)

    def read_counter(self, name: str, documentation: str, labels: Sequence[str],
                     values: Sequence[str], read: Callable[[], float]) -> None:
        """A counter sample read at scrape time by `read()`, labelled by this component's id and
        `values` (one per name in `labels`)."""
        family = self.sidecar.read_counter(name, documentation, (self.kind_label, *labels))
        family.add((self.component_id, *values), read)

    def forgotten(self, table: str, reason: str, read: Callable[[], float]) -> None:
        """What a bounded table of this component forgets (`reason`: evicted or expired), read at
        scrape time: costctx_table_forgotten_total{table, reason}."""
        self.read_counter(FORGOTTEN, FORGOTTEN_HELP, ["table", "reason"], (table, reason), read)

    def histogram(self, name: str, documentation: str, labels: Sequence[str] = (),
                  buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS) -> Any:
        return self._bind(Histogram, name, documentation, labels, buckets=tuple(buckets))
