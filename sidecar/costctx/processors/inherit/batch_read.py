"""The inherit processor's per-span reading, in one call per batch, in Python here and in
Rust (`costctx_native._core.read_batch`, native/src/inherit.rs: `read_spans` then
`own_groups` in one pass) with the same result: this is the fallback and the oracle.

Per span at `indices`, in order: its key (trace id + span id), the key of the ancestor it
would wait for (trace id + parent span id; None for a root, or an all-zero parent id, which
W3C calls invalid), and its group: spans whose context field values (`fields`) are all
strings or absent and equal share one group, numbered in order of first appearance; -1 for
a span carrying some other value (read alone). `firsts` holds each group's first span
index, where the processor reads the group's values once.
"""

from __future__ import annotations

from collections.abc import Iterable

_INVALID_SPAN_ID = bytes(8)
_NONE = type(None)

try:
    from costctx_native._core import parent_first as native_parent_first
    from costctx_native._core import read_batch as native_read_batch
except ImportError:  # built without the extension
    native_parent_first = native_read_batch = None


def read_spans(spans: list, indices: Iterable[int], fields: tuple[str, ...]
               ) -> tuple[list[bytes], list[bytes | None], list[int], list[int]]:
    """(keys, wait keys, groups, firsts): see the module docstring."""
    keys: list[bytes] = []
    wait_keys: list[bytes | None] = []
    groups: list[int] = []
    firsts: list[int] = []
    seen: dict[tuple, int] = {}
    plain: dict[tuple, bool] = {}  # the values' types -> all str or absent (exact types, as Rust)
    for index in indices:
        span = spans[index]
        trace_id = span.trace_id
        keys.append(trace_id + span.span_id)
        parent_id = span.parent_span_id
        wait_keys.append(trace_id + parent_id if parent_id and parent_id != _INVALID_SPAN_ID else None)
        values = tuple(map(span.attrs.get, fields))
        types = tuple(map(type, values))
        strings = plain.get(types)
        if strings is None:
            strings = plain[types] = all(t is str or t is _NONE for t in types)
        if strings:
            group = seen.get(values)
            if group is None:
                group = seen[values] = len(firsts)
                firsts.append(index)
            groups.append(group)
        else:
            groups.append(-1)
    return keys, wait_keys, groups, firsts


def parent_first(keys: list[bytes], wait_keys: list[bytes | None]) -> tuple[list[int], list[int]]:
    """The positions of a batch's spans level by level, so a span whose ancestor (its wait
    key) is in the batch comes in a later level than it and is resolved in place rather than
    held: (positions in that order, where each level ends in it).

    The ancestor is the first span of the batch with that key (a duplicate id is never the
    one waited for). A span's level (depth): 0 without an ancestor in the batch, else its
    ancestor's + 1; on a cycle of parent ids the span that closes the cycle counts as depth
    0 (any order serves them: none can be resolved from the others). Within a level, batch
    order."""
    first: dict[bytes, int] = {}
    for position, key in enumerate(keys):
        first.setdefault(key, position)
    count = len(keys)
    depth = [-1] * count
    for start in range(count):
        if depth[start] >= 0:
            continue
        path: list[int] = []
        at = start
        base = 0
        while True:
            depth[at] = -2  # on the path being followed
            path.append(at)
            wait_key = wait_keys[at]
            parent = first.get(wait_key) if wait_key is not None else None
            if parent is None or depth[parent] == -2:  # no ancestor here, or a cycle closes
                base = 0
                break
            if depth[parent] >= 0:
                base = depth[parent] + 1
                break
            at = parent
        for at in reversed(path):
            depth[at] = base
            base += 1
    order = sorted(range(count), key=depth.__getitem__)
    ends = []
    for at, position in enumerate(order):
        if at and depth[position] != depth[order[at - 1]]:
            ends.append(at)
    if count:
        ends.append(count)
    return order, ends


def own_groups(spans: list, firsts: list[int], fields: tuple[str, ...], required: frozenset[str]) -> list[tuple]:
    """Per group of read_spans (its first span), the span's own context fields (a group's
    values are strings or absent; an empty string is no value), its own key (the values and
    their types) and whether it lacks no required field: (own, own_key, complete)."""
    out = []
    for first in firsts:
        values = tuple(map(spans[first].attrs.get, fields))
        own = {field: value for field, value in zip(fields, values, strict=True) if value is not None and value}
        out.append((own, (values, tuple(map(type, values))), own.keys() >= required))
    return out


def read_batch(spans: list, indices: Iterable[int], fields: tuple[str, ...], required: frozenset[str]
               ) -> tuple[list[bytes], list[bytes | None], list[int], list[tuple]]:
    """(keys, wait keys, groups, by group): `read_spans` then `own_groups` of its firsts, what
    the processor reads per batch (natively in one pass, `native_read_batch`: a group's own
    fields made from the values its first span was read with)."""
    keys, wait_keys, groups, firsts = read_spans(spans, indices, fields)
    return keys, wait_keys, groups, own_groups(spans, firsts, fields, required)
