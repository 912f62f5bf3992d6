"""SpanView.kinds: the native scan spells each span's watched keys and value kinds as
api.value_kinds does (the Python oracle), one string object per form in a batch, None
where a watched key repeats; the Python codec leaves it None (normalize then decides
without it)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.workload import WorkloadSpec, build_requests
from costctx.pdata.codec.api import EMPTY, KvList, value_kinds
from costctx.pdata.codec.native import AVAILABLE
from costctx.pdata.codec.python import PythonCodec
from tests.pdata.codec.test_codec_native import keys_of, keys_st, requests_st

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="costctx_native not built")


@pytest.fixture(scope="module")
def native():
    from costctx.pdata.codec.native import NativeCodec

    return NativeCodec()


def check(view) -> None:
    for span in view.spans:
        if span.repeated:
            assert span.kinds is None
            continue
        # Equal to the oracle is what normalize's lookup needs. (The scan shares one string per
        # form as read; the same keys in another order may give an equal second string.)
        assert span.kinds == value_kinds(span.attrs)


def test_value_kinds_spells_keys_sorted_with_one_letter_per_kind():
    attrs = {"s": "x", "z": "", "b": True, "i": 3, "f": 0.5, "y": b"\x00", "a": [1], "k": KvList((("q", 1),)),
             "e": EMPTY}
    assert value_kinds(attrs) == "\x1e".join(f"{k}\x1f{k}" for k in sorted(attrs))
    assert value_kinds({}) == ""


def test_bench_workload_kinds_match_the_oracle(native):
    for raw in build_requests(WorkloadSpec(batches=3, spans_per_batch=50)):
        view = native.scan(raw, frozenset(keys_of(raw)))
        check(view)
        assert any(span.kinds for span in view.spans)
        fallback = PythonCodec().scan(raw, frozenset(keys_of(raw)))
        assert all(span.kinds is None for span in fallback.spans)
        assert view.spans == fallback.spans  # kinds is left out of ==: the codecs' views stay equal


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=requests_st(), watched=st.frozensets(keys_st, max_size=6))
def test_generated_requests_kinds_match_the_oracle(native, raw, watched):
    check(native.scan(raw, watched | {"service.name", "a", "b", ""}))
