"""normalize's kept decisions per group key (costctx.normalize.group_table): the native
table and `decided_groups` (native/src/group_table.rs) against the Python twin, on the bench
workload and on generated requests. Undecided keys may differ (the native keys are finer);
once each side has decided its undecided groups with the same rule, both give the same
spans per decision number and the same loose spans, and a second look decides everything."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from costctx.normalize.group_table import GroupTable, NativeGroupTable, decided_groups, python_decided_groups
from costctx.pdata.codec.api import group_key
from costctx.pdata.codec.native import AVAILABLE
from costctx.pdata.codec.python import PythonCodec
from tests.pdata.codec.test_codec_native import bench_requests, keys_of, requests_st

pytestmark = pytest.mark.skipif(not AVAILABLE or NativeGroupTable is None, reason="costctx_native not built")

BY_VALUE = frozenset({"gen_ai.system", "llm.vendor", "gen_ai.request.model", "k"})


class Rule:
    """A decision per canonical group key (what normalize's decision depends on): numbers
    0..3 in order of first sight, shared by both sides so their answers compare."""

    def __init__(self) -> None:
        self.numbers: dict[tuple, int] = {}

    def __call__(self, span, by_value) -> int:
        key = group_key(span, by_value)
        return self.numbers.setdefault(key, len(self.numbers) % 4)


def settle(codec, view, by_value, table, rule, decide=decided_groups):
    """decided_groups, then the undecided groups decided by `rule` and put: span -> number."""
    decided, undecided, loose = decide(codec, view, by_value, table)
    numbers = {i: number for number, members in decided for i in members}
    for key, members in undecided:
        number = rule(view.spans[members[0]], by_value)
        table.put(key, number)
        numbers.update(dict.fromkeys(members, number))
    for number, members in decided:
        assert members == sorted(members) and number != 0
    return numbers, loose


def compare(raw: bytes, watched: frozenset[str], by_value: frozenset[str], native_table, python_table, rule) -> None:
    from costctx.pdata.codec.native import NativeCodec

    native, oracle = NativeCodec(), PythonCodec()
    view, oracle_view = native.scan(raw, watched), oracle.scan(raw, watched)
    got = settle(native, view, by_value, native_table, rule)
    want = settle(oracle, oracle_view, by_value, python_table, rule)
    # A span decided 0 is left out of `decided`: compare the spans with work.
    assert ({i: n for i, n in got[0].items() if n}, got[1]) == ({i: n for i, n in want[0].items() if n}, want[1])
    made = view.spans.made_count()
    again = decided_groups(native, view, by_value, native_table)
    assert again[1] == [] and again == python_decided_groups(oracle, oracle_view, by_value, python_table)
    assert view.spans.made_count() == made  # the native call reads the records: no view made


def test_bench_workload_agrees_with_the_python_twin():
    native_table, python_table, rule = NativeGroupTable(), GroupTable(), Rule()
    for raw in bench_requests():
        watched = frozenset(keys_of(raw)) | {"service.name"}
        compare(raw, watched, BY_VALUE, native_table, python_table, rule)
    assert len(native_table) and len(python_table)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=requests_st())
def test_generated_requests_agree_with_the_python_twin(raw):
    watched = frozenset(keys_of(raw)) | {"service.name"}
    by_value = frozenset(sorted(watched)[::2])
    compare(raw, watched, by_value, NativeGroupTable(), GroupTable(), Rule())


def test_span_keys_are_forgotten_when_the_watched_list_changes():
    from costctx.pdata.codec.native import NativeCodec

    native, raw = NativeCodec(), bench_requests()[0]
    table = NativeGroupTable()
    first = frozenset(keys_of(raw)) | {"service.name"}
    view = native.scan(raw, first)
    _, undecided, _ = decided_groups(native, view, BY_VALUE, table)
    for key, _ in undecided:
        table.put(key, 2)
    assert decided_groups(native, view, BY_VALUE, table)[1] == []
    # Another watched list numbers keys differently: the same bytes would name other keys.
    other = native.scan(raw, first | {"a.key.sorting.first"})
    decided, undecided, _ = decided_groups(native, other, BY_VALUE, table)
    assert decided == [] and undecided
    assert len(table) == 0


def test_keys_must_be_bytes_or_tuples_of_str():
    for table in (NativeGroupTable(), GroupTable()):
        table.put(("a", "b"), 3)
        assert table.get(("a", "b")) == 3 and table.get(("a",)) is None
        with pytest.raises(TypeError):
            table.put(("a", 1), 1)
