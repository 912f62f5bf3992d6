"""inherit's per-batch metrics (`_flush`): the repaired fields' counts kept as ints per
(source, fields) and expanded per field when collected, the others' counter children cached,
only shared decisions taken counted. The metric values are the ones the flush before
(kept here as the oracle: a Counter per (field, source), shared entries walked one by one)
gives, for any tally, batch after batch."""

from __future__ import annotations

import copy
from collections import Counter
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st

from costctx.processors.inherit import metrics as inherit_metrics
from costctx.processors.inherit.processor import _Tally
from tests.support.processors import standalone_processor

_FIELDS = ("workflow.id", "owner.team", "owner.feature", "request.id")
_SOURCES = ("ancestor", "trace", "resource")
_REASONS = ("ancestor", "timeout", "overflow")


def _oracle_flush(p, tally: _Tally) -> None:
    """InheritProcessor._flush as it was."""
    m = p.metrics
    for entry in tally.shared.values():
        hits = entry[6][0]
        if hits:
            for bump in entry[7]:
                tally.repaired[bump] += hits
            for field in entry[3] or ():
                tally.conflicts[field] += hits
    tally.shared.clear()
    per_field: Counter[tuple[str, str]] = Counter()
    for (source, fields), count in tally.repaired.items():
        for field in fields:
            per_field[(field, source)] += count
    for (field, source), count in per_field.items():
        p.oracle_repaired[(field, source)] += count
    for family, counts in ((m.conflicts, tally.conflicts), (m.released_spans, tally.released),
                           (m.missing_spans, tally.missing)):
        for label, count in counts.items():
            family.labels(label).inc(count)
    if tally.held:
        m.held_spans.inc(tally.held)
    m.count_evictions(p.hold.evicted, p.cache)


_bump = st.tuples(st.sampled_from(_SOURCES), st.lists(st.sampled_from(_FIELDS), unique=True).map(tuple))
_entry = st.tuples(st.one_of(st.none(), st.lists(st.sampled_from(_FIELDS), min_size=1, unique=True)),
                   st.integers(0, 3), st.lists(_bump, max_size=3))
_tally = st.fixed_dictionaries({
    "shared": st.lists(_entry, max_size=8),
    "repaired": st.dictionaries(_bump, st.integers(1, 5), max_size=5),
    "conflicts": st.dictionaries(st.sampled_from(_FIELDS), st.integers(1, 3), max_size=3),
    "released": st.dictionaries(st.sampled_from(_REASONS), st.integers(1, 3), max_size=2),
    "missing": st.dictionaries(st.sampled_from(_REASONS), st.integers(1, 3), max_size=2),
    "held": st.integers(0, 3),
})


def _made(spec: dict) -> _Tally:
    tally = _Tally()
    for at, (conflicts, hits, bumps) in enumerate(spec["shared"]):
        tally.shared[("key", at)] = (None, None, [], conflicts, [], (), [hits], bumps)
    tally.repaired.update(spec["repaired"])
    tally.conflicts.update(spec["conflicts"])
    tally.released.update(spec["released"])
    tally.missing.update(spec["missing"])
    tally.held = spec["held"]
    return tally


def _metrics(p) -> list:
    """Every inherit sample of the processor's registry, as a scrape collects them."""
    return sorted((s.name, sorted(s.labels.items()), s.value)
                  for metric in p.host.metrics.registry.collect() if metric.name.startswith("costctx_inherit_")
                  for s in metric.samples if not s.name.endswith("_created"))


def _oracle_metrics(p) -> list:
    """The oracle's samples, its repaired fields counted by `_oracle_flush` in a plain Counter."""
    repaired = [("costctx_inherit_repaired_fields_total",
                 sorted({"processor": "inherit", "field": field, "source": source}.items()), float(count))
                for (field, source), count in p.oracle_repaired.items()]
    return sorted([s for s in _metrics(p) if s[0] != "costctx_inherit_repaired_fields_total"] + repaired)


@settings(max_examples=150, deadline=None)
@given(batches=st.lists(_tally, min_size=1, max_size=4), fold_past=st.sampled_from([0, 2, 4096]))
def test_the_flush_counts_what_the_flush_before_counted(batches, fold_past):
    """Batch after batch, read after each (`fold_past`: how many (source, fields) keys the
    repaired counts keep as ints before folding them into the children)."""
    with patch.object(inherit_metrics, "MAX_REPAIRED_KEYS", fold_past):
        _flush_and_compare(batches)


def _flush_and_compare(batches: list[dict]) -> None:
    flushed, oracle = standalone_processor("inherit"), standalone_processor("inherit")
    oracle.oracle_repaired = Counter()
    for spec in batches:
        tally = _made(spec)
        twin = copy.deepcopy(tally)
        flushed._flush(tally)
        _oracle_flush(oracle, twin)
        assert _metrics(flushed) == _oracle_metrics(oracle)
        assert not tally.shared
