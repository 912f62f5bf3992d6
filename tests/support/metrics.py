"""Read a running sidecar's own metrics the way an operator does: scrape the admin /metrics."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from costctx.service.runner import SidecarThread


def scrape(runner: SidecarThread, name: str) -> list[Sample]:
    """Every sample called `name` (e.g. `costctx_price_misses_total`), any labels."""
    url = f"http://127.0.0.1:{runner.sidecar.admin_port}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples if s.name == name]


def metric(runner: SidecarThread, name: str, **labels: str) -> float:
    """The value of the first sample of `name` whose labels include `labels` (0 when none)."""
    for sample in scrape(runner, name):
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return 0.0
