"""The envelope processor's per-span reading and schema stamp: one call per batch
(`read_shapes`), in Python here and in Rust (`costctx_native._core.read_shapes`,
native/src/envelope.rs) with the same result. This is the fallback and the oracle: every
rule is written here first. What a shape means stays in the processor.

A span's shape is one byte per context field (bit 0: its value is present, i.e. not absent,
None, EMPTY or ""; bit 1: renamed; bit 2: repaired; bit 3: conflict, from the span's notes),
one byte saying whether it carries an LLM marker key and, for such spans only, one byte per
extra (readiness usage) key saying whether its value is present. Shapes are numbered per
batch in order of first appearance.

Each span's watched values come as a row: `rows[index]`, a tuple of its values (None where
absent) in the order of `row_keys` (api.py `attr_values`: read from the records with the
native codec, no span view made); its resource, start and end from `columns` (three lists by
span index, api.py `span_column`). `row_keys(keys)` gives the keys a row must hold. With
`columns` None, `rows` is a list of views already made (a reader before was not columnar),
read as they are, or the native codec's lazy span list, whose records the Rust reading reads
without making views (this one reads its views).

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
  (the caller writes their stamp as one group edit);
- appended: such spans with an edit of their own (not a replace): `stamp` was appended to
  their edit's sets, as `ViewBatch.set` would;
- slow: such spans whose own edit is a replace (the caller stamps them with `batch.set`).
Nothing here changes a span's attrs: the caller keeps them in step for to_stamp and appended
(api.py `edit_attrs`, one call).
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


def row_keys(keys: tuple, stamp: tuple) -> tuple[str, ...]:
    """The keys `read_shapes` reads from a row, each once, in a fixed order."""
    fields, extras, markers, depth_key, cost_key, dimensions, workflow_key, tenant_key = keys
    return tuple(dict.fromkeys((*fields, *extras, *markers, depth_key, cost_key, *dimensions, workflow_key,
                                stamp[0])))


def read_shapes(rows, keys_of_rows: tuple[str, ...], columns: tuple, indices, notes: dict, edits: dict,
                keys: tuple, empty, stamp: tuple, pico: Callable[[Any], int | None]) -> tuple:
    """See the module docstring. `keys`: (context fields, extra keys, marker keys, depth key,
    cost key, spend dimensions, workflow name key, tenant key); `stamp`: (schema key, schema
    value); `empty`: the codec's EMPTY; `keys_of_rows`: the rows' keys (`row_keys` or more)."""
    fields, extras, markers, depth_key, cost_key, dimensions, workflow_key, tenant_key = keys
    schema_key, schema = stamp
    views = columns is None
    resources, starts, ends = (None, None, None) if views else columns
    ids: list[int] = []
    shapes: list[bytes] = []
    shape_ids: dict[bytes, int] = {}
    count_at: dict[tuple, int] = {}
    counts: list[list] = []
    llm: dict[tuple, int] = {}
    spend: dict[tuple, list[int]] = {}
    to_stamp: list[int] = []
    appended: list[int] = []
    slow: list[int] = []

    templates = _TEMPLATES.setdefault((fields, extras, markers), {})

    def present(value) -> bool:
        return value is not None and value is not empty and value != ""

    for index in indices:
        if views:
            span = rows[index]
            attrs = span.attrs
        else:
            attrs = {key: value for key, value in zip(keys_of_rows, rows[index], strict=True) if value is not None}
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
        resource = span.resource if views else resources[index]
        count_key = (resource, depth, id_)
        at = count_at.get(count_key)
        if at is None:
            count_at[count_key] = len(counts)
            counts.append([resource, depth, id_, 1])
        else:
            counts[at][3] += 1
        cost = get(cost_key)
        if is_llm or cost is not None:
            workflow = get(workflow_key)
            if type(workflow) is not str or not workflow:
                workflow = None
            if is_llm:
                start, end = (span.start, span.end) if views else (starts[index], ends[index])
                tally = (workflow, id_, 0 < start <= end)
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
            elif own.replace is None:
                own.sets.append(stamp)
                appended.append(index)
            else:
                slow.append(index)
    return ids, shapes, [tuple(row) for row in counts], llm, spend, to_stamp, appended, slow
