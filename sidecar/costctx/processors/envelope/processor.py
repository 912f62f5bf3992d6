"""The `envelope` processor: check the canonical context envelope on every span.

Stamps `costctx.schema` and appends required fields still missing to `costctx.missing`,
and records one survival outcome per (hop, context field, span). Placed last in the
traces pipeline, it sees each span as it leaves, after renaming and repair.

The counting is one pass over the context fields per span: each span becomes a signature
(one outcome code per field), and the batch's signatures are counted in a Counter that the
survival recorder expands once per batch. LLM spans add a readiness tally, priced spans a
spend tally, both per batch as well.
"""

from __future__ import annotations

import math
from collections import Counter
from operator import itemgetter

from costctx.component.host import Host
from costctx.component.processor import Processor
from costctx.envelope.keys import COST_USD, HOP_DEPTH_KEY, MISSING_KEY, SCHEMA_KEY
from costctx.pdata.codec.api import EMPTY, SpanEdits
from costctx.pdata.view_batch import ViewBatch
from costctx.pricing.money import PICO_PER_USD
from costctx.processors.envelope.config import EnvelopeConfig
from costctx.survival.recorder import (
    CONFLICT,
    INHERITED,
    MISSING,
    PRESENT,
    RENAMED,
    TENANT_KEY,
)

WORKFLOW_NAME_KEY = "workflow.name"
_NO_NOTES: frozenset[str] = frozenset()
# Distinct span shapes (keys in order, notes) kept; a workload repeats a few dozen.
SHAPE_CACHE_SIZE = 4096


def _cost_pico_value(value) -> int | None:
    """cost.usd as integer pico-USD (the price processor's exact unit), None if unusable: a
    finite non-negative double or a non-negative int (decoded values, as the view has them).

    The price processor writes pico / 1e12 as a correctly rounded double, so rounding
    the product back gives its integer exactly (below ~$9,000 per span, the double's limit)."""
    kind = type(value)
    if kind is float:
        if not math.isfinite(value) or value < 0:
            return None
        scaled = value * PICO_PER_USD
        if scaled == math.inf:  # past ~1.8e296 USD (a client's value); such a double is whole
            return int(value) * PICO_PER_USD
        return round(scaled)
    if kind is int and value >= 0:
        return value * PICO_PER_USD
    return None


def _str_value(value) -> str | None:
    """SpanRecord.get_str on a decoded value: a non-empty string, else None."""
    return value if type(value) is str and value else None


def _present(value) -> bool:
    """A decoded value that carries information: not absent, not EMPTY, not ""."""
    return value is not None and value is not EMPTY and value != ""


def _blanked_by_groups(batch: ViewBatch) -> set[int] | None:
    """Spans a group edit set "" or EMPTY on: their scanned kinds no longer say their values
    are clean (`_clean` looks at a span's own edits only)."""
    dirty = None
    for group in batch.edits.groups:
        if any(value is EMPTY or value == "" for _, value in group.edits.sets):
            dirty = (dirty or set()) | set(group.spans)
    return dirty


class EnvelopeProcessor(Processor):
    type_name = "envelope"
    config_model = EnvelopeConfig
    config: EnvelopeConfig
    on_view = True

    def __init__(self, name: str, config: EnvelopeConfig, host: Host) -> None:
        super().__init__(name, config, host)
        envelope = host.envelope
        self._fields = envelope.context_keys
        self._required_idx = tuple(self._fields.index(key) for key in config.required_fields)
        self._schema = envelope.schema_version
        self._markers = frozenset(envelope.llm_span_markers)
        survival = host.survival
        survival.configure(
            spend_dimensions=config.spend_dimensions,
            thresholds={"pass": config.readiness.pass_, "conditional": config.readiness.conditional},
            readiness_window=config.readiness.window,
        )
        self._extra_keys = survival.extra_keys
        self._dimensions = tuple(config.spend_dimensions)
        # span shape -> its decisions (see _shape); cleared when full
        self._shapes: dict[tuple, tuple] = {}
        self._read_keys = frozenset((*self._fields, *self._extra_keys))  # whose values _shape reads
        self._clean_kinds: dict[str, bool] = {}  # SpanView.kinds -> no "" or EMPTY among them

    def watched_keys(self) -> frozenset[str]:
        return frozenset((*self._fields, *self._markers, *self._extra_keys, SCHEMA_KEY, MISSING_KEY,
                          HOP_DEPTH_KEY, COST_USD, WORKFLOW_NAME_KEY))

    def _shape(self, attrs: dict, renamed, repaired, conflict) -> tuple:
        """What a span's outcome depends on besides its values, decided once per shape (its
        keys in order and its notes; values known to be neither EMPTY nor ""): the outcome
        code per context field, the required fields missing, whether it is a model call, and
        the readiness usage flags of the keys it carries."""
        get = attrs.get
        fields = self._fields
        sig = tuple([
            CONFLICT if key in conflict
            else INHERITED if key in repaired
            else RENAMED if key in renamed
            else PRESENT if _present(get(key))
            else MISSING
            for key in fields
        ])
        missing = [fields[i] for i in self._required_idx if sig[i] == MISSING] if MISSING in sig else None
        is_llm = not attrs.keys().isdisjoint(self._markers)
        usage = tuple([_present(get(key)) for key in self._extra_keys]) if is_llm else ()
        # The values a span of this shape must not have "" or EMPTY in for these to hold.
        read = [key for key in attrs if key in self._read_keys]
        values_of = itemgetter(*read, read[0]) if read else None  # two keys at least: a tuple
        return sig, missing or None, is_llm, usage, values_of

    def _clean(self, kinds: str | None, edits: SpanEdits | None) -> bool:
        """No watched value of the span is "" or EMPTY, known without reading its values: the
        scan's kinds say none was (SpanView.kinds), and no edit since wrote one (attrs are the
        scanned values plus the edits: renames move scanned values, sets are in `edits`)."""
        if kinds is None:
            return False
        clean = self._clean_kinds.get(kinds)
        if clean is None:
            if len(self._clean_kinds) >= SHAPE_CACHE_SIZE:
                self._clean_kinds.clear()
            clean = self._clean_kinds[kinds] = "\x1fz" not in kinds and "\x1fe" not in kinds
        if not clean:
            return False
        if edits is not None:
            if edits.replace is not None:
                return False
            for _, value in edits.sets:
                if value is EMPTY or value == "":
                    return False
        return True

    def process_view(self, batch: ViewBatch) -> ViewBatch:
        view = batch.view
        dimensions = self._dimensions
        schema = self._schema
        record = self.config.record_outcomes
        resources = view.resources
        all_notes = batch.notes
        notes_of = all_notes.get
        shapes = self._shapes
        shape_of = self._shape
        # (resource index, depth, signature) -> spans; turned into (hop, depth, signature) once
        # per batch (no service lookup per span, no Counter.__missing__ call per new key).
        by_shape: dict[tuple, int] = {}
        llm: Counter = Counter()
        spend: dict = {}
        view_spans = view.spans
        edited = batch.edits.spans
        stamp = (SCHEMA_KEY, schema)
        dirty = _blanked_by_groups(batch)
        to_stamp: list[int] = []  # spans with no edit of their own: one group edit for them all
        to_mark: list[tuple[int, list[str]]] = []  # missing fields: appended after the stamp
        for index in batch.indices():
            span = view_spans[index]
            attrs = span.attrs
            get = attrs.get
            notes = notes_of(index) if all_notes else None
            if notes:
                renamed = notes.get("renamed") or _NO_NOTES
                repaired = notes.get("repaired") or _NO_NOTES
                conflict = notes.get("conflict") or _NO_NOTES
                # Empty notes decide nothing: such a span shares the plain shape.
                key = (tuple(attrs), tuple(renamed), tuple(repaired), tuple(conflict)) \
                    if renamed or repaired or conflict else tuple(attrs)
            else:
                renamed = repaired = conflict = _NO_NOTES
                key = tuple(attrs)
            shape = shapes.get(key)
            if shape is None:
                shape = shape_of(attrs, renamed, repaired, conflict)
                values = attrs.values()
                if "" not in values and EMPTY not in values:  # else decided by its values: not kept
                    if len(shapes) >= SHAPE_CACHE_SIZE:
                        shapes.clear()  # bounded without LRU bookkeeping; shapes repeat
                    shapes[key] = shape
            elif shape[4] is not None and (not self._clean(span.kinds, edited.get(index))
                                           or (dirty and index in dirty)):
                values = shape[4](attrs)
                if "" in values or EMPTY in values:
                    # A value that reads as absent: the shape alone does not decide (rare).
                    shape = shape_of(attrs, renamed, repaired, conflict)
            sig, missing, is_llm, usage, _ = shape
            if get(SCHEMA_KEY) != schema:
                # batch.set inlined (every span): an edit, and attrs kept in step.
                edits = edited.get(index)
                if edits is None:
                    to_stamp.append(index)
                    attrs[SCHEMA_KEY] = schema
                elif edits.replace is None:
                    edits.sets.append(stamp)
                    attrs[SCHEMA_KEY] = schema
                else:
                    batch.set(index, SCHEMA_KEY, schema)
            if missing:
                to_mark.append((index, missing))
            if not record:
                continue
            depth = get(HOP_DEPTH_KEY)
            # An int stamped by inherit (or an upstream sidecar); anything else is no depth.
            count_key = (span.resource, depth if type(depth) is int else None, sig)
            by_shape[count_key] = by_shape.get(count_key, 0) + 1

            cost = get(COST_USD)
            if not is_llm and cost is None:
                continue
            workflow = get(WORKFLOW_NAME_KEY)
            if type(workflow) is not str or not workflow:
                workflow = None
            if is_llm:
                llm[(workflow, sig, (*usage, 0 < span.start <= span.end))] += 1
            if cost is not None:
                amount = _cost_pico_value(cost)
                if amount is not None:
                    # _str_value inlined per dimension
                    key = (workflow, tuple([v if type(v) is str and v else None for v in map(get, dimensions)]),
                           TENANT_KEY in repaired)
                    row = spend.get(key)
                    if row is None:
                        spend[key] = [amount, 1]
                    else:
                        row[0] += amount
                        row[1] += 1
        if to_stamp:
            # Before the missing fields are appended: the stamp stays first among those spans'
            # edits, as when written span by span (and none has an edit of its own yet).
            batch.edits.add_group(SpanEdits(sets=[stamp]), to_stamp)
        for index, missing in to_mark:
            batch.append_strings(index, MISSING_KEY, missing)
        if by_shape:
            spans: Counter = Counter()
            for (r, depth, sig), n in by_shape.items():
                spans[(resources[r].service, depth, sig)] += n
            self.context.survival.record_batch(spans, llm, spend)
        return batch
