"""Which value `costctx.missing` takes on each span whose shape misses required fields, grouped
by that value: one call per batch, in Python here (the fallback and the oracle) and in Rust
(`costctx_native._core.missing_groups`, native/src/envelope.rs) with the same result. Which
fields a shape misses is the processor's decision (per shape); this is the per-span part.

`missing_groups(spans, indices, ids, missing, key, own)`: for each span of `indices` (in order)
whose shape id (`ids`, one per index) has `missing[id]` not None (a tuple of field names), the
value `key` takes as ViewBatch.append_strings would give it from the span's current value
(read as api.py `attr_values_at` reads it: the native lazy list's records, no view made):
the missing names when absent; else the string elements of a current array (other elements
dropped; a value of another kind counts as none) followed by the names not among them, a span
whose array holds them all left out. -> (groups, slow): groups maps each value (a tuple) to
its spans in order, values in order of first appearance; slow lists (index, value) of spans
whose own edit (`own`: BatchEdits.spans) is a replace, which the caller sets one by one.
"""

from __future__ import annotations

from costctx.pdata.codec.api import attr_values_at

try:
    from costctx_native._core import missing_groups as native_missing_groups  # type: ignore[import-not-found]
except ImportError:  # an older build, or no native extension: the Python one below
    native_missing_groups = None


def missing_groups(spans, indices, ids: list[int], missing: list[tuple[str, ...] | None], key: str,
                   own: dict) -> tuple[dict[tuple, list[int]], list[tuple[int, tuple]]]:
    picked = [(index, id_) for index, id_ in zip(indices, ids, strict=True) if missing[id_] is not None]
    groups: dict[tuple, list[int]] = {}
    slow: list[tuple[int, tuple]] = []
    if not picked:
        return groups, slow
    currents = attr_values_at(spans, [index for index, _ in picked], (key,))
    for (index, id_), (current,) in zip(picked, currents, strict=True):
        values = missing[id_]
        if current is None:
            value = values
        else:
            is_array = type(current) is list
            existing = [v for v in current if type(v) is str] if is_array else []
            added = [v for v in values if v not in existing]
            if not added and is_array:
                continue
            value = (*existing, *added)
        edit = own.get(index)
        if edit is not None and edit.replace is not None:
            slow.append((index, value))
            continue
        found = groups.get(value)
        if found is None:
            groups[value] = [index]
        else:
            found.append(index)
    return groups, slow
