"""The `envelope` processor: check the canonical context envelope on every span.

Stamps `costctx.schema` and appends required fields still missing to `costctx.missing`,
and records one survival outcome per (hop, context field, span). Placed last in the
traces pipeline, it sees each span as it leaves, after renaming and repair.

The per-span work is one call per batch (`read_shapes`, shapes.py; in Rust with the native
codec): it gives each span a small shape id (which context fields hold a value, the span's
notes, whether it is a model call and which usage keys it has), counts spans per (resource,
depth, shape), tallies readiness and spend, and writes the schema stamp. Here each shape is
decided once (its signature: one outcome code per field; its missing fields), and the batch's
tallies go to the survival recorder, which expands them once per batch.
"""

from __future__ import annotations

import math

from costctx.component.host import Host
from costctx.component.processor import Processor
from costctx.envelope.keys import COST_USD, HOP_DEPTH_KEY, MISSING_KEY, SCHEMA_KEY
from costctx.pdata.codec.api import EMPTY, SpanEdits, attr_values, edit_attrs, span_column
from costctx.pdata.view_batch import ViewBatch
from costctx.pricing.money import PICO_PER_USD
from costctx.processors.envelope.config import EnvelopeConfig
from costctx.processors.envelope.missing import missing_groups, native_missing_groups
from costctx.processors.envelope.shapes import native_read_shapes, read_shapes, row_keys
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


class EnvelopeProcessor(Processor):
    type_name = "envelope"
    config_model = EnvelopeConfig
    config: EnvelopeConfig
    on_view = True
    # Reads rows of values and columns (attr_values, span_column), writes group edits and
    # edit_attrs: no span view is made (the native codec reads the records).
    columnar = True

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
        # shape (shapes.py's bytes) -> its decisions (see _decide); cleared when full
        self._shapes: dict[bytes, tuple] = {}
        self._read = (self._fields, tuple(self._extra_keys), tuple(self._markers), HOP_DEPTH_KEY, COST_USD,
                      self._dimensions, WORKFLOW_NAME_KEY, TENANT_KEY)
        # What a span's row holds (the Python reading of a lazy list): what read_shapes reads.
        self._row_keys = row_keys(self._read, (SCHEMA_KEY, self._schema))

    def watched_keys(self) -> frozenset[str]:
        return frozenset((*self._fields, *self._markers, *self._extra_keys, SCHEMA_KEY, MISSING_KEY,
                          HOP_DEPTH_KEY, COST_USD, WORKFLOW_NAME_KEY))

    def _decide(self, shape: bytes) -> tuple:
        """What a span of this shape (shapes.py) gets, decided once per shape: the outcome
        code per context field, the required fields missing, whether it is a model call, and
        the readiness usage flags of its extra keys."""
        fields = self._fields
        n = len(fields)
        # As bytes, not a tuple: read the same (indexing and iterating give the codes) but its
        # hash is cached, and the tallies below and in the recorder hash it per key per batch.
        sig = bytes([
            CONFLICT if code & 8 else INHERITED if code & 4 else RENAMED if code & 2
            else PRESENT if code & 1 else MISSING
            for code in shape[:n]
        ])
        missing = [fields[i] for i in self._required_idx if sig[i] == MISSING] if MISSING in sig else None
        is_llm = bool(shape[n])
        usage = tuple([bool(code) for code in shape[n + 1:]])
        # The readiness key's usage tuple, untimed and timed: built once per shape, not per tally.
        return sig, missing or None, is_llm, usage, ((*usage, False), (*usage, True))

    def process_view(self, batch: ViewBatch) -> ViewBatch:
        schema = self._schema
        stamp = (SCHEMA_KEY, schema)
        edits = batch.edits
        # The per-span reading, counting and schema stamp in one call (shapes.py; in Rust with
        # the native codec): decisions below are per shape, per count key or per visited span.
        read = native_read_shapes if native_read_shapes is not None and batch.codec.name == "native" else read_shapes
        indices = batch.indices()
        spans = batch.spans_as_read()
        rows: list
        if type(spans) is list or read is native_read_shapes:
            # Views made already (a reader before was not columnar), read as they are; or the
            # native codec's lazy list, whose records the native reading reads (no view made).
            rows, columns = spans, None
        else:  # a lazy list and the Python reading: rows and columns (attr_values, span_column)
            rows = attr_values(spans, self._row_keys)
            columns = (span_column(spans, "resource"), span_column(spans, "start"), span_column(spans, "end"))
        ids, shape_keys, counts, llm, spend, to_stamp, appended, slow = read(
            rows, self._row_keys, columns, indices, batch.notes, edits.spans, self._read, EMPTY, stamp,
            _cost_pico_value)
        known = self._shapes
        shapes = []
        for key in shape_keys:
            shape = known.get(key)
            if shape is None:
                if len(known) >= SHAPE_CACHE_SIZE:
                    known.clear()  # bounded without LRU bookkeeping; shapes repeat
                shape = known[key] = self._decide(key)
            shapes.append(shape)
        for index in slow:
            batch.set(index, SCHEMA_KEY, schema)
        if to_stamp:
            # Before the missing fields are appended: the stamp stays first among those spans'
            # edits, as when written span by span (and none has an edit of its own yet).
            edits.add_group(SpanEdits(sets=[stamp]), to_stamp)
            appended = to_stamp + appended if appended else to_stamp
        if appended:  # the attrs of every span stamped above, in one call
            if type(spans) is list:  # views: the value set directly (edit_attrs' list path, inline)
                for index in appended:
                    spans[index].attrs[SCHEMA_KEY] = schema
            else:
                edit_attrs(spans, appended, (), (), (stamp,))
        if any(shape[1] for shape in shapes):  # shapes missing a required field
            self._append_missing(batch, spans, indices, ids, shapes)
        if not self.config.record_outcomes or not counts:
            return batch
        self._record(batch, shapes, counts, llm, spend)
        return batch

    def _append_missing(self, batch: ViewBatch, spans, indices, ids: list[int], shapes: list[tuple]) -> None:
        """costctx.missing gains each span's missing required fields (ViewBatch.append_strings
        for every span, from its current value): the values found and grouped in one call
        (missing.py; in Rust with the native codec, reading the lazy list's records), spans
        whose new value is the same (most: none before) take it as one group edit and one
        edit_attrs call."""
        missing = [tuple(shape[1]) if shape[1] else None for shape in shapes]
        group = native_missing_groups if native_missing_groups is not None and batch.codec.name == "native" \
            else missing_groups
        groups, slow = group(spans, indices, ids, missing, MISSING_KEY, batch.edits.spans)
        for index, value in slow:
            batch.set(index, MISSING_KEY, list(value))  # re-encoded on the slow path
        spans = batch.view.spans
        for value, members in groups.items():
            sets = [(MISSING_KEY, list(value))]
            batch.edits.add_group(SpanEdits(sets=sets), members)
            edit_attrs(spans, members, (), (), sets)

    def _record(self, batch: ViewBatch, shapes: list[tuple], counts: list[tuple], llm_by_shape: dict,
                spend: dict) -> None:
        """The batch's survival outcomes, readiness and spend tallies, to the recorder: shape
        ids become signatures and usage flags, resource indices services."""
        resources = batch.view.resources
        # Plain dicts, not Counters: every key is new in a batch's tally, and a Counter's
        # `+=` on a new key calls its __missing__ in Python (~0.3 us each, ~30 keys a batch).
        llm: dict = {}
        found = llm.get
        for (workflow, id_, timed), n in llm_by_shape.items():
            shape = shapes[id_]
            key = (workflow, shape[0], shape[4][timed])
            llm[key] = found(key, 0) + n
        spans: dict = {}
        found = spans.get
        for r, depth, id_, n in counts:
            key = (resources[r].service, depth, shapes[id_][0])
            spans[key] = found(key, 0) + n
        self.context.survival.record_batch(spans, llm, spend)
