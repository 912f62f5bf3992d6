"""The native side reads and writes Known's slots at their offsets (native/src/slots.rs) only
for objects of exactly that class: anything else (a subclass that overrides an attribute, a
class without slots) is read through getattr, as Python's path reads it."""

from __future__ import annotations

import pytest

from costctx.processors.inherit.context_cache import Known, _AncestorTable

pytestmark = pytest.mark.skipif(_AncestorTable is None, reason="costctx_native not built")


def state(known) -> tuple:
    return (list(known.fields.items()), known.hop, known.depth, known.fallback)


class RenamedHop(Known):
    """Its `hop` is not the slot's value (the slot holds the one given): a table reading the
    slot would file it under that one."""

    __slots__ = ()

    @property  # type: ignore[override]
    def hop(self) -> str:
        return "renamed"

    @hop.setter
    def hop(self, value: str) -> None:
        Known.__dict__["hop"].__set__(self, value)  # the slot's descriptor


class Plain:
    """A Known without slots (its attributes in a dict)."""

    def __init__(self, fields: dict, hop: str, depth: int | None, fallback: frozenset) -> None:
        self.fields, self.hop, self.depth, self.fallback = fields, hop, depth, fallback


def test_a_subclass_is_read_through_its_attributes():
    table = _AncestorTable(10, 10.0, lambda: 0.0, 16, Known)
    table.now = 0.0
    renamed = RenamedHop({"workflow.id": "w1"}, "svc", 1, frozenset())
    assert Known.__dict__["hop"].__get__(renamed) == "svc"
    table.put_known(b"\x01" * 24, renamed)
    assert table.sources() == ["renamed"]  # the source is the Known's hop as Python reads it
    table.now = None  # the made objects forgotten: the record answers a Known of its own
    found = table.get(b"\x01" * 24)
    assert type(found) is Known and state(found) == ([("workflow.id", "w1")], "renamed", 1, frozenset())


def test_exact_knowns_are_read_at_their_slots_as_their_attributes_say():
    table = _AncestorTable(10, 10.0, lambda: 0.0, 16, Known)
    table.now = 0.0
    put = Known({"workflow.id": "w1", "owner.team": "t"}, "svc", 2, frozenset({"owner.team"}))
    table.put_known(b"\x01" * 24, put)
    assert table.get(b"\x01" * 24) is put
    table.now = None
    found = table.get(b"\x01" * 24)
    assert found is not put and state(found) == state(put)
    assert table.sources() == ["svc"]


def test_a_class_without_slots_is_read_through_getattr():
    table = _AncestorTable(10, 10.0, lambda: 0.0, 16, Plain)
    table.now = 0.0
    table.put_known(b"\x01" * 24, Plain({"workflow.id": "w1"}, "svc", None, frozenset()))
    table.now = None
    found = table.get(b"\x01" * 24)
    assert type(found) is Plain and state(found) == ([("workflow.id", "w1")], "svc", None, frozenset())


class Reordered:
    """Known's slots declared in another order, with others between them (CPython lays slots
    out sorted by name: here at offsets none of Known's has): each read at its own
    descriptor's offset."""

    __slots__ = ("zz_last", "fallback", "a_first", "depth", "fields", "f_between", "hop")

    def __init__(self, fields: dict, hop: str, depth: int | None, fallback: frozenset) -> None:
        self.fields, self.hop, self.depth, self.fallback = fields, hop, depth, fallback
        self.a_first = self.f_between = self.zz_last = "other"


class _HopAndFields:
    __slots__ = ("hop", "padding", "fields")


class Split(_HopAndFields):
    """Two of Known's slots in a base (with a slot of its own between them), two in the class."""

    __slots__ = ("depth", "fallback")

    def __init__(self, fields: dict, hop: str, depth: int | None, fallback: frozenset) -> None:
        self.fields, self.hop, self.depth, self.fallback, self.padding = fields, hop, depth, fallback, "pad"


class HopAsProperty:
    """`hop` a property over a slot of another name: no layout (read through getattr)."""

    __slots__ = ("fields", "_hop", "depth", "fallback")

    def __init__(self, fields: dict, hop: str, depth: int | None, fallback: frozenset) -> None:
        self.fields, self.hop, self.depth, self.fallback = fields, hop, depth, fallback

    @property
    def hop(self) -> str:
        return self._hop

    @hop.setter
    def hop(self, value: str) -> None:
        self._hop = value


@pytest.mark.parametrize("cls", [Reordered, Split, HopAsProperty])
def test_a_class_whose_slots_lie_elsewhere_reads_right(cls):
    table = _AncestorTable(10, 10.0, lambda: 0.0, 16, cls)
    table.now = 0.0
    puts = [cls({"workflow.id": f"w{i}", "owner.team": "t"}, f"svc{i}", i, frozenset({"owner.team"}))
            for i in range(3)]
    for i, known in enumerate(puts):
        table.put_known(bytes([i + 1]) * 24, known)
    table.now = None  # the made objects forgotten: each record answers an object of its own
    for i, put in enumerate(puts):
        found = table.get(bytes([i + 1]) * 24)
        assert type(found) is cls and found is not put and state(found) == state(put)
    assert sorted(table.sources()) == sorted({known.hop for known in puts})
