"""The envelope processor's per-span reading and schema stamp: one call per batch
(`read_shapes`), in Python here and in Rust (`costctx_native._core.read_shapes`,
native/src/envelope.rs) with the same result. This is the fallback and the oracle: every
rule is written here first. What a shape means stays in the processor.

A span's shape is one byte per context field (bit 0: its value is present, i.e. not absent,
None, EMPTY or ""; bit 1: renamed; bit 2: repaired; bit 3: conflict, from the span's notes),
one byte saying whether it carries an LLM marker key and, for such spans only, one byte per
extra (readiness usage) key saying whether its value is present. Shapes are numbered per
batch in order of first appearance.

`read_shapes` returns, for the spans of `indices` in order:
- ids: the shape id of each span;
- shapes: the shape of each id, as bytes (a key the processor caches decisions by);
- counts: (resource, depth, shape id, spans) per distinct (resource, depth, shape id), in
  order of first appearance; depth is the span's hop depth when an int (not a bool), else None;
- llm: {(workflow, shape id, 0 < start <= end): spans} over spans with an LLM marker key,
  workflow being workflow.name when a non-empty str, else None;
- spend: {(workflow, dimensions, owner.tenant repaired): [pico-USD, spans]} over spans whose
  cost (not None) `pico` converts (not None), each dimension's value when a non-empty str,
  else None (`pico`: the processor's conversion, which the Rust one calls for rare values);
- to_stamp: spans whose schema value was not the stamp's and that have no edit of their own
  (the caller writes their stamp as one group edit); attrs updated;
- slow: such spans whose own edit is a replace (the caller stamps them with `batch.set`).
Spans with an edit of their own (not a replace) get `stamp` appended to their edit's sets
and their attrs updated, as `ViewBatch.set` would.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any

try:
    from costctx_native._core import read_shapes as native_read_shapes
except ImportError:  # built without the extension (or an older build): the Python one below
    native_read_shapes = None

_NONE: frozenset[str] = frozenset()
# (fields, extras, markers) -> span keys and notes -> their shape template (see _template).
_TEMPLATES: dict[tuple, dict] = {}
TEMPLATE_CACHE_SIZE = 4096


def _template(attrs: dict, renamed, repaired, conflict, fields, extras, markers) -> tuple:
    """The shape of a span with these keys and notes whose values are all present, whether it
    is a model call, and a getter of the values that shape read (None if it read none)."""
    code = [(key in attrs) | (key in renamed) << 1 | (key in repaired) << 2 | (key in conflict) << 3
            for key in fields]
    is_llm = any(marker in attrs for marker in markers)
    code.append(is_llm)
    read = [key for key in fields if key in attrs]
    if is_llm:
        code.extend(key in attrs for key in extras)
        read.extend(key for key in extras if key in attrs)
    read_values = itemgetter(*read, read[0]) if read else None  # two keys at least: a tuple
    return bytes(code), is_llm, read_values


def read_shapes(spans: list, indices, notes: dict, edits: dict, keys: tuple, empty, stamp: tuple,
                pico: Callable[[Any], int | None]) -> tuple:
    """See the module docstring. `keys`: (context fields, extra keys, marker keys, depth key,
    cost key, spend dimensions, workflow name key, tenant key); `stamp`: (schema key, schema
    value); `empty`: the codec's EMPTY."""
    fields, extras, markers, depth_key, cost_key, dimensions, workflow_key, tenant_key = keys
    schema_key, schema = stamp
    ids: list[int] = []
    shapes: list[bytes] = []
    shape_ids: dict[bytes, int] = {}
    count_at: dict[tuple, int] = {}
    counts: list[list] = []
    llm: dict[tuple, int] = {}
    spend: dict[tuple, list[int]] = {}
    to_stamp: list[int] = []
    slow: list[int] = []

    templates = _TEMPLATES.setdefault((fields, extras, markers), {})

    def present(value) -> bool:
        return value is not None and value is not empty and value != ""

    for index in indices:
        span = spans[index]
        attrs = span.attrs
        get = attrs.get
        found = notes.get(index) if notes else None
        if found and (found.get("renamed") or found.get("repaired") or found.get("conflict")):
            renamed = found.get("renamed") or _NONE
            repaired = found.get("repaired") or _NONE
            conflict = found.get("conflict") or _NONE
            template_key = (tuple(attrs), tuple(renamed), tuple(repaired), tuple(conflict))
        else:
            renamed = repaired = conflict = _NONE
            template_key = tuple(attrs)
        # The shape from the keys and notes alone, then the values it read checked for
        # blanks (rare: then the shape is computed from the values).
        template = templates.get(template_key)
        if template is None:
            if len(templates) >= TEMPLATE_CACHE_SIZE:
                templates.clear()
            template = templates[template_key] = _template(attrs, renamed, repaired, conflict, fields, extras, markers)
        shape, is_llm, read_values = template
        if read_values is not None:
            values = read_values(attrs)
            if "" in values or empty in values or None in values:
                code = [present(get(key)) | (key in renamed) << 1 | (key in repaired) << 2 | (key in conflict) << 3
                        for key in fields]
                code.append(is_llm)
                if is_llm:
                    code.extend(present(get(key)) for key in extras)
                shape = bytes(code)
        id_ = shape_ids.get(shape)
        if id_ is None:
            id_ = shape_ids[shape] = len(shapes)
            shapes.append(shape)
        ids.append(id_)

        depth = get(depth_key)
        depth = depth if type(depth) is int else None
        count_key = (span.resource, depth, id_)
        at = count_at.get(count_key)
        if at is None:
            count_at[count_key] = len(counts)
            counts.append([span.resource, depth, id_, 1])
        else:
            counts[at][3] += 1
        cost = get(cost_key)
        if is_llm or cost is not None:
            workflow = get(workflow_key)
            if type(workflow) is not str or not workflow:
                workflow = None
            if is_llm:
                tally = (workflow, id_, 0 < span.start <= span.end)
                llm[tally] = llm.get(tally, 0) + 1
            if cost is not None:
                amount = pico(cost)
                if amount is not None:
                    tally = (workflow, tuple([v if type(v) is str and v else None for v in map(get, dimensions)]),
                             tenant_key in repaired)
                    row = spend.get(tally)
                    if row is None:
                        spend[tally] = [amount, 1]
                    else:
                        row[0] += amount
                        row[1] += 1

        if get(schema_key) != schema:
            own = edits.get(index)
            if own is None:
                to_stamp.append(index)
                attrs[schema_key] = schema
            elif own.replace is None:
                own.sets.append(stamp)
                attrs[schema_key] = schema
            else:
                slow.append(index)
    return ids, shapes, [tuple(row) for row in counts], llm, spend, to_stamp, slow
