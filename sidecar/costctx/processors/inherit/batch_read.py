"""The inherit processor's per-span reading, in one call per batch, in Python here and in
Rust (`costctx_native._core.read_spans`, native/src/inherit.rs) with the same result: this
is the fallback and the oracle.

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
    from costctx_native._core import read_spans as native_read_spans
except ImportError:  # built without the extension
    native_read_spans = None


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
