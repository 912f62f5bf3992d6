"""Internal metrics on a per-sidecar Prometheus registry (several sidecars may share a process in tests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

MetricFamily = Counter | Gauge | Histogram


class SidecarMetrics:
    """The sidecar's Prometheus registry (served on the admin port at /metrics) and the one way
    components register on it (`family`; per instance through ComponentMetrics). Each component's
    metrics are defined in its folder's metrics.py."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        # Families registered through `family` (once per registry, however many instances).
        self._families: dict[str, tuple[MetricFamily, tuple[str, ...]]] = {}
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

    def histogram(self, name: str, documentation: str, labels: Sequence[str] = (),
                  buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS) -> Any:
        return self._bind(Histogram, name, documentation, labels, buckets=tuple(buckets))
