"""Normalize's decisions kept per group key, and a batch's groups sorted by them: one call per
batch (`decided_groups`), in Python here (the fallback and the oracle) and in Rust
(`costctx_native._core.decided_groups` with a native `GroupTable`, native/src/group_table.rs)
with the same result.

A table maps a group key to a decision number the caller chose, 0 for "nothing to do". Here a
group key is api.py's `group_key` (a tuple of str: the group's value kinds and the string
values of its `by_value` keys); the native table keys spans by `group_spans`' key (bytes: key
ids in the span's order, kinds, enum values), finer than that tuple, and looks each span up
itself. `decided_groups(codec, view, by_value, table)` -> (decided, undecided, loose):
- decided: (number, spans ascending) per number other than 0, in order of their first span;
- undecided: (key, spans ascending) per group of spans whose key the table lacks, in order of
  their first span (the caller decides it from its first span and `put`s the key's number);
- loose: the spans the codec leaves out of groups (codec.keyed_groups).
Once every key of a batch is decided, both give the same decided and loose lists (the keys
that are undecided before may differ: the native ones are finer). So a batch whose groups
were all seen before costs no Python per group, only per decision.
The table is filled from request strings: the caller bounds it (`len`, `clear`).
"""

from __future__ import annotations

from typing import Any

try:
    from costctx_native._core import GroupTable as NativeGroupTable  # type: ignore[import-not-found]
    from costctx_native._core import decided_groups as native_decided_groups  # type: ignore[import-not-found]
except ImportError:  # built without the extension (or an older build): the Python ones below
    NativeGroupTable = None
    native_decided_groups = None


class GroupTable:
    """Group key (a tuple of str) -> decision number, as the native GroupTable keeps it."""

    __slots__ = ("_ids",)

    def __init__(self) -> None:
        self._ids: dict[tuple[str, ...], int] = {}

    @staticmethod
    def _checked(key: tuple) -> tuple:
        if type(key) is not tuple or not all(type(part) is str for part in key):
            raise TypeError("a group key holds str only")
        return key

    def get(self, key: tuple) -> int | None:
        return self._ids.get(self._checked(key))

    def put(self, key: tuple, number: int) -> None:
        self._ids[self._checked(key)] = number

    def clear(self) -> None:
        self._ids.clear()

    def __len__(self) -> int:
        return len(self._ids)


def new_table() -> Any:
    """The native table when the extension is built, else the Python one."""
    return NativeGroupTable() if NativeGroupTable is not None else GroupTable()


def decided_groups(codec, view, by_value: frozenset[str], table) -> tuple[list, list, list]:
    """See the module docstring (natively from the scan's records when it can)."""
    layout = getattr(view, "layout", None)
    if (native_decided_groups is not None and layout is not None and getattr(codec, "name", None) == "native"
            and type(table) is NativeGroupTable):
        return native_decided_groups(layout, by_value, table)
    return python_decided_groups(codec, view, by_value, table)


def python_decided_groups(codec, view, by_value: frozenset[str], table) -> tuple[list, list, list]:
    groups, loose, keys = codec.keyed_groups(view, by_value)
    decided: dict[int, list[int]] = {}
    undecided: list[tuple[tuple, list[int]]] = []
    for group, key in zip(groups, keys, strict=True):  # groups in order of their first span
        number = table.get(key)
        if number is None:
            undecided.append((key, group))
        elif number:
            found = decided.get(number)
            if found is None:
                decided[number] = list(group)
            else:
                found.extend(group)
    for members in decided.values():
        members.sort()
    return list(decided.items()), undecided, list(loose)
