"""The native codec (Rust, costctx_native) against the protobuf oracle: equal views, equal
output bytes for canonical requests (the bench workload, hypothesis-generated requests),
and for mutated requests the same accept/reject answer and, when accepted, output that
parses to the same message."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.requests import build_request
from bench.workload import WorkloadSpec, build_requests
from costctx.pdata.codec.api import EMPTY, BatchEdits, CodecError, KvList, SpanEdits
from costctx.pdata.codec.native import AVAILABLE
from tests.support.paths import FIXTURES

try:  # the Python codec is the oracle once it is in the tree; until then, the test's reference
    from costctx.pdata.codec.python import PythonCodec as _Oracle
except ImportError:
    from tests.support.codec_reference import ReferenceCodec as _Oracle

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="costctx_native not built")


@pytest.fixture(scope="module")
def native():
    from costctx.pdata.codec.native import NativeCodec

    return NativeCodec()


ORACLE = _Oracle()


# --- comparing ---------------------------------------------------------------------------

def _norm(value):
    """NaN-safe, order-exact form of a decoded value (NaN != NaN would fail equal views)."""
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, KvList):
        return ("kvlist", tuple((k, _norm(v)) for k, v in value))
    if isinstance(value, list):
        return ("list", tuple(_norm(v) for v in value))
    if isinstance(value, dict):
        return tuple((k, _norm(v)) for k, v in value.items())
    return (type(value).__name__, value)


def view_rows(view):
    rows = [("resource", r.service, r.schema_url, _norm(r.attrs), r.repeated) for r in view.resources]
    rows += [("scope", s.resource, s.schema_url, s.name, s.version) for s in view.scopes]
    rows += [
        ("span", s.trace_id, s.span_id, s.parent_span_id, s.start, s.end, s.resource, s.scope,
         _norm(s.attrs), s.attr_count, s.links, s.event_count, s.signature, s.event_keys, s.repeated)
        for s in view.spans
    ]
    return rows


def sizes(view):
    """Encoded lengths: equal to protobuf's ByteSize for canonical input (for other input the
    native codec gives the length as received, which bounds every value it carries as well)."""
    return [r.size for r in view.resources], [s.size for s in view.spans]


def canonical(raw: bytes) -> bytes:
    return ExportTraceServiceRequest.FromString(raw).SerializeToString(deterministic=True)


# --- edits ----------------------------------------------------------------------------------

VALUES = ["", "text", "ünïcode ✓", True, False, 0, -1, 2**63 - 1, -(2**63), 1.5, -0.0, b"", b"\x00\xff",
          [], ["a", 1, 2.5, True], KvList([("k", "v"), ("n", [1, 2])]), EMPTY, [[1], KvList()]]


def random_edits(view, rng: random.Random, removals: bool = True) -> BatchEdits:
    edits = BatchEdits()
    for i, span in enumerate(view.spans):
        roll = rng.random()
        if removals and roll < 0.1:
            edits.removed.add(i)
            continue
        if roll < 0.5:
            continue
        keys = list(span.attrs)
        e = edits.span(i)
        if keys and rng.random() < 0.5:
            e.renames.append((rng.choice(keys), rng.choice(["renamed", "gen_ai.system", ""])))
        if keys and rng.random() < 0.3:
            e.deletes.append(rng.choice(keys))
        for _ in range(rng.randrange(3)):
            key = rng.choice(keys + ["new.key", "costctx.cost_usd", "service.name"]) if keys else "new.key"
            e.sets.append((key, rng.choice(VALUES)))
        if rng.random() < 0.03:
            e.replace = b"\x0a\x10" + bytes(16) + b"\x2a\x03abc"
    for r in range(len(view.resources)):
        if rng.random() < 0.3:
            e = edits.resources.setdefault(r, SpanEdits())
            e.sets.append((rng.choice(["service.name", "deployment.environment"]), rng.choice(VALUES)))
            if view.resources[r].attrs and rng.random() < 0.5:
                e.renames.append((next(iter(view.resources[r].attrs)), "host.renamed"))
    return edits


def check_agrees(native, raw: bytes, watched: frozenset[str], rng: random.Random, canonical_input: bool):
    try:
        expected = ORACLE.scan(raw, watched)
    except CodecError:
        with pytest.raises(CodecError):
            native.scan(raw, watched)
        return False
    view = native.scan(raw, watched)
    assert view_rows(view) == view_rows(expected)
    if canonical_input:
        assert sizes(view) == sizes(expected)
    for removals in (False, True):
        edits = random_edits(view, rng, removals)
        got, want = native.encode(view, edits), ORACLE.encode(expected, edits)
        if canonical_input:
            assert got == want
        else:
            assert canonical(got) == canonical(want)
        indices = sorted(rng.sample(range(len(view.spans)), k=min(len(view.spans), 3)))
        got, want = native.extract(view, indices, edits), ORACLE.extract(expected, indices, edits)
        if canonical_input:
            assert got == want
        else:
            assert canonical(got) == canonical(want)
    if view.spans:
        assert native.materialize(view, 0) == ORACLE.materialize(expected, 0)
    return True


def keys_of(raw: bytes) -> set[str]:
    request = ExportTraceServiceRequest.FromString(raw)
    keys = set()
    for rs in request.resource_spans:
        keys.update(kv.key for kv in rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                keys.update(kv.key for kv in span.attributes)
    return keys


# --- the bench workload -----------------------------------------------------------------

def bench_requests() -> list[bytes]:
    requests = build_requests(WorkloadSpec(batches=4, spans_per_batch=50))
    requests += build_requests(WorkloadSpec(batches=2, spans_per_batch=20, complete=True, seed=3))
    requests.append(build_request([{"gen_ai.request.model": "gpt-4o", "n": 3}, {"x": [1, "a"], "f": 0.5}], 30))
    return requests


def test_bench_workload_identical_views_and_bytes(native):
    rng = random.Random(15)
    for raw in bench_requests():
        keys = sorted(keys_of(raw))
        watched = frozenset(keys[::2]) | {"service.name", "absent.key"}
        assert check_agrees(native, raw, watched, rng, canonical_input=True)
        # No edits: the request leaves exactly as it came.
        view = native.scan(raw, watched)
        assert native.encode(view, BatchEdits()) == raw


def test_the_view_holds_only_watched_keys_and_counts_all(native):
    raw = build_request([{"a": 1, "b": "x", "c": [1]}], 2)
    view = native.scan(raw, frozenset({"b", "zz"}))
    assert [s.attrs for s in view.spans] == [{"b": "x"}, {"b": "x"}]
    assert [s.attr_count for s in view.spans] == [3, 3]
    assert view.spans[0].signature == frozenset({"b"})
    # One signature object per distinct key set, one string object per distinct value.
    assert view.spans[0].signature is view.spans[1].signature
    assert view.spans[0].attrs["b"] is view.spans[1].attrs["b"]
    assert view.resources[0].service == "bench"


# --- generated requests ---------------------------------------------------------------

text = st.text(st.characters(codec="utf-8"), max_size=12)
scalar = st.one_of(text, st.booleans(), st.integers(-(2**63), 2**63 - 1),
                   st.floats(allow_nan=False), st.binary(max_size=8), st.just(EMPTY))
value_st = st.recursive(
    scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.lists(st.tuples(text, inner), max_size=3).map(KvList)),
    max_leaves=6,
)
keys_st = st.sampled_from(["service.name", "gen_ai.request.model", "a", "b", "", "ü.key"]) | text
attrs_st = st.lists(st.tuples(keys_st, value_st), max_size=5)


@st.composite
def requests_st(draw):
    from tests.support.codec_reference import store_value

    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 3))):
        rs = request.resource_spans.add()
        if draw(st.booleans()):
            rs.resource.SetInParent()
            for key, value in draw(attrs_st):
                kv = rs.resource.attributes.add(key=key)
                store_value(kv.value, value)
        rs.schema_url = draw(text)
        for _ in range(draw(st.integers(0, 3))):
            ss = rs.scope_spans.add()
            if draw(st.booleans()):
                ss.scope.name, ss.scope.version = draw(text), draw(text)
            for _ in range(draw(st.integers(0, 4))):
                span = ss.spans.add()
                span.trace_id = draw(st.binary(max_size=16))
                span.span_id = draw(st.binary(max_size=8))
                span.parent_span_id = draw(st.binary(max_size=8))
                span.name = draw(text)
                span.kind = draw(st.integers(0, 5))
                span.flags = draw(st.integers(0, 2**32 - 1))
                span.start_time_unix_nano = draw(st.integers(0, 2**64 - 1))
                span.end_time_unix_nano = draw(st.integers(0, 2**64 - 1))
                for key, value in draw(attrs_st):
                    kv = span.attributes.add(key=key)
                    store_value(kv.value, value)
                for _ in range(draw(st.integers(0, 2))):
                    event = span.events.add(name=draw(text), time_unix_nano=draw(st.integers(0, 2**64 - 1)))
                    for key, value in draw(attrs_st):
                        store_value(event.attributes.add(key=key).value, value)
                for _ in range(draw(st.integers(0, 2))):
                    span.links.add(trace_id=draw(st.binary(max_size=16)), span_id=draw(st.binary(max_size=8)),
                                   trace_state=draw(text))
                if draw(st.booleans()):
                    span.status.code, span.status.message = draw(st.integers(0, 2)), draw(text)
    return request.SerializeToString()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=requests_st(), seed=st.integers(0, 2**32), watched=st.frozensets(keys_st, max_size=4))
def test_generated_requests_identical_views_and_bytes(native, raw, seed, watched):
    assert check_agrees(native, raw, watched | {"service.name"}, random.Random(seed), canonical_input=True)


# --- mutated requests -------------------------------------------------------------------

def mutate(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.choice([1, 1, 1, 2])):
        kind = rng.randrange(5)
        at = rng.randrange(len(data) + 1)
        if kind == 0 and data:
            at = min(at, len(data) - 1)
            data[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            del data[at:]
        elif kind == 2:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif kind == 3:
            data[at:at + rng.randint(1, 4)] = b""
        else:
            data[at:at] = rng.choice([b"\xff", b"\x80", b"\xc3", b"\x7b", b"\x7c", b"\x0b", b"\x00"])
    return bytes(data)


def test_mutated_requests_agree_with_protobuf(native):
    rng = random.Random(1515)
    seeds = [build_request([{"gen_ai.request.model": "gpt-4o", "k": ["a", 1], "ü": KvList([("x", 1.5)])}], 3)]
    seeds += build_requests(WorkloadSpec(batches=2, spans_per_batch=5))
    accepted = rejected = 0
    for _ in range(3000):
        raw = mutate(rng.choice(seeds), rng)
        if check_agrees(native, raw, frozenset({"gen_ai.request.model", "k", "ü", "service.name"}), rng,
                        canonical_input=False):
            accepted += 1
        else:
            rejected += 1
    # Both outcomes must be exercised for the comparison to mean anything.
    print("mutated: accepted", accepted, "rejected", rejected)
    assert accepted > 200 and rejected > 200, (accepted, rejected)


# --- the edges protobuf (upb) draws ------------------------------------------------------

def _ld(field: int, body: bytes) -> bytes:
    def varint(v: int) -> bytes:
        out = bytearray()
        while v >= 0x80:
            out.append(v & 0x7F | 0x80)
            v >>= 7
        out.append(v)
        return bytes(out)

    return varint(field << 3 | 2) + varint(len(body)) + body


def _request_with_value(value_body: bytes) -> bytes:
    kv = _ld(1, b"k") + _ld(2, value_body)
    return _ld(1, _ld(2, _ld(2, _ld(9, kv))))


@pytest.mark.parametrize("levels", [44, 45, 46, 47])
def test_nesting_limit_matches_protobuf(native, levels):
    body = b""
    for _ in range(levels):
        body = _ld(5, _ld(1, body))  # AnyValue{array_value{values: [body]}}
    raw = _request_with_value(body)
    check_agrees(native, raw, frozenset({"k"}), random.Random(0), canonical_input=True)


@pytest.mark.parametrize(
    "value_body",
    [
        b"\x0a\x01\xff",                  # invalid UTF-8 in string_value
        b"\x3a\x01\xff",                  # bytes_value: not checked
        b"\x08\x01",                      # string_value as a varint: an unknown field
        b"\x7b\x0a\x01\xff\x7c",           # a group holding bad UTF-8: unknown, skipped
        b"\x7b\x84\x01",                  # mismatched end-group
        b"\x0c",                          # end-group outside a group
        b"\x88\x80\x80\x80\x00\x01",       # a 5-byte tag
        b"\x88\x80\x80\x80\x80\x00\x01",   # a 6-byte tag
        b"\x18" + b"\xff" * 9 + b"\x7f",   # a 10-byte varint with overflow bits
        b"\x18" + b"\xff" * 10 + b"\x01",  # an 11-byte varint
        b"\x0e",                          # wire type 6
        b"\x2a\x02\x0a\x00\x2a\x02\x0a\x00",  # array_value twice: merged
        b"\x0a\x01a\x2a\x02\x0a\x00",      # string then array: the last case wins
        b"\x42\x00",                      # string_value_strindex as bytes: unknown
        b"\x40\x07",                      # string_value_strindex
    ],
)
def test_wire_edges_match_protobuf(native, value_body):
    check_agrees(native, _request_with_value(value_body), frozenset({"k"}), random.Random(0),
                 canonical_input=False)


# --- inputs the fuzz target found (native/fuzz: prost and upb disagree on them) ----------

CODEC_FIXTURES = sorted((FIXTURES / "codec").glob("*.bin"))


@pytest.mark.parametrize("path", CODEC_FIXTURES, ids=[p.stem for p in CODEC_FIXTURES])
def test_fuzz_findings_agree_with_protobuf(native, path):
    check_agrees(native, path.read_bytes(), frozenset({"k", "service.name"}), random.Random(0),
                 canonical_input=False)


def test_scans_from_several_threads_at_once(native):
    """The scan releases the GIL while it walks the bytes: threads sharing one codec (the
    receivers' server threads) must each get their own correct view."""
    from concurrent.futures import ThreadPoolExecutor

    raw = build_requests(WorkloadSpec(batches=1, spans_per_batch=400))[0]
    keys = sorted(keys_of(raw))
    watch_sets = [frozenset(keys[::2]), frozenset(keys[1::2])]
    expected = [view_rows(ORACLE.scan(raw, watched)) for watched in watch_sets]

    def scan(n: int) -> bool:
        return view_rows(native.scan(raw, watch_sets[n % 2])) == expected[n % 2]

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(scan, range(40)))


def test_the_extension_package_hands_out_the_adapter():
    """`select_codec` (costctx.pdata.codec) imports NativeCodec from costctx_native."""
    from costctx_native import NativeCodec

    codec = NativeCodec()
    assert codec.name == "native"
    assert codec.scan(build_request([{"a": 1}], 1), frozenset({"a"})).spans[0].attrs == {"a": 1}


def test_event_keys_repeats_and_sizes_in_both_codecs(native):
    """The fields normalize and limits skip spans by: watched keys on events, a watched key
    sent twice, and the encoded lengths (equal to protobuf's ByteSize)."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    for key in ("host.name", "b", "b"):
        rs.resource.attributes.add(key=key).value.string_value = "x" * 40
    spans = rs.scope_spans.add().spans
    quiet = spans.add(name="quiet")
    quiet.attributes.add(key="b").value.int_value = 1
    busy = spans.add(name="busy")
    for key in ("a", "z", "a"):
        busy.attributes.add(key=key).value.string_value = "v"
    busy.events.add(name="e1").attributes.add(key="b").value.bool_value = True
    event = busy.events.add(name="e2")
    event.attributes.add(key="a").value.int_value = 2
    event.attributes.add(key="unwatched").value.int_value = 3
    raw = request.SerializeToString()
    watched = frozenset({"a", "b"})
    for codec in (native, ORACLE):
        view = codec.scan(raw, watched)
        assert [(s.event_keys, s.repeated) for s in view.spans] == [(frozenset(), False), (frozenset({"a", "b"}), True)]
        assert [s.size for s in view.spans] == [quiet.ByteSize(), busy.ByteSize()]
        assert (view.resources[0].size, view.resources[0].repeated) == (rs.resource.ByteSize(), True)
        # "z" repeats nothing watched; "a" twice does.
        view = codec.scan(raw, frozenset({"z"}))
        assert [s.repeated for s in view.spans] == [False, False] and not view.resources[0].repeated


# --- list and kvlist values the encoder writes in place ------------------------------------

def test_list_values_shared_long_and_changed_between_encodes(native):
    """Lists set on many spans are written from their elements (one encoding per distinct
    element sequence in a call), long enough that lengths pass 127 bytes at every level, and a
    list changed between two encodes is written as it is then: bytes equal to the oracle's."""
    raw = build_request([{"a": "x"}, {"a": "y"}, {"b": 1}, {}], 4)
    watched = frozenset({"a", "b"})
    view, expected = native.scan(raw, watched), ORACLE.scan(raw, watched)
    names = ["workflow.name", "owner.team", "o" * 150]
    long_kv = KvList([("long", "z" * 300), ("n", [["deep" * 40], KvList([("k", "v" * 130)])])])
    shared = list(names)
    edits = BatchEdits()
    edits.span(0).sets += [("costctx.repaired", list(names)), ("kv", long_kv)]
    edits.span(1).sets += [("costctx.repaired", list(names)), ("other", list(reversed(names)))]
    edits.span(2).sets += [("costctx.repaired", shared), ("mixed", [names[0], 1, 2.5, True, b"\x01"])]
    edits.span(3).sets += [("costctx.repaired", [names[0], [names[1]]]), ("empty", [])]
    assert native.encode(view, edits) == ORACLE.encode(expected, edits)
    shared.append("added")  # the same list object, changed: the next encode writes it anew
    edits.span(2).sets[0] = ("costctx.repaired", shared)
    got = native.encode(view, edits)
    assert got == ORACLE.encode(expected, edits)
    assert b"added" in got


def test_sets_of_new_keys_set_again_and_alike_in_length():
    """Keys not in a span's attributes are appended in the order first set, each once with its
    last value: keys set again among many appended ones (found by fingerprint, then bytes),
    keys of one length and prefix, the empty key, equal text in distinct str objects."""
    native_codec = pytest.importorskip("costctx.pdata.codec.native").NativeCodec()
    raw = build_request([{"a": "x", "owner.tenant": "t"}, {}, {"b": 1}], 3)
    watched = frozenset({"a", "b", "owner.tenant"})
    view, expected = native_codec.scan(raw, watched), ORACLE.scan(raw, watched)
    twin = "".join(["owner.", "team"])  # equal to "owner.team", another object
    edits = BatchEdits()
    for index in range(3):
        edits.span(index).sets += [("owner.team", 1), ("owner.tier", 2), ("", 3), ("owner.tenant", "u"),
                                   (twin, 4), ("owner.tiea", 5), ("", 6), ("owner.tier", 7), ("a", 8)]
    got = native_codec.encode(view, edits)
    assert got == ORACLE.encode(expected, edits)
    assert got.count(b"owner.team") == 3 and got.count(b"owner.tier") == 3


# --- the encoder's kept output buffer and its slot reads of the edits ---------------------

def test_output_buffer_kept_between_calls_holds_no_stale_bytes():
    """encode writes into a buffer it keeps between calls: a large batch, then a small one,
    then the large again, each equal to the oracle's bytes; a result handed out is not changed
    by later calls; encodes from several threads at once each get their own batch's bytes."""
    import threading

    native_codec = pytest.importorskip("costctx.pdata.codec.native").NativeCodec()
    small = build_request([{"a": "x"}], 1)
    large = build_request([{"a": "y" * 3000, "b": i} for i in range(400)], 400)  # past the kept 1 MiB
    mid = build_request([{"a": "z" * 200, "b": i} for i in range(50)], 50)
    watched = frozenset({"a", "b"})
    results = []
    for raw in (mid, small, large, small, mid, small):
        view, expected = native_codec.scan(raw, watched), ORACLE.scan(raw, watched)
        edits = BatchEdits()
        for i in range(len(view.spans)):
            edits.span(i).sets.append(("set.here", i))
        got = native_codec.encode(view, edits)
        assert got == ORACLE.encode(expected, edits)
        results.append((got, ORACLE.encode(expected, edits)))
    assert all(got == want for got, want in results)  # earlier results unchanged by later calls

    failures = []

    def encode_many(raw: bytes, value: str) -> None:
        view, expected = native_codec.scan(raw, watched), ORACLE.scan(raw, watched)
        edits = BatchEdits()
        for i in range(len(view.spans)):
            edits.span(i).sets.append(("thread", value))
        want = ORACLE.encode(expected, edits)
        for _ in range(30):
            if native_codec.encode(view, edits) != want:
                failures.append(value)

    threads = [threading.Thread(target=encode_many, args=(raw, str(n))) for n, raw in enumerate((mid, large, small))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_edits_of_other_classes_than_the_first_converted():
    """The encoder reads SpanEdits' slots at their offsets, the layout found from the first
    edits object it converts: a subclass with a slot of its own seen first, then SpanEdits, then
    an object of no slots class; each read right (bytes equal to the oracle's)."""
    from dataclasses import dataclass

    @dataclass(slots=True)
    class Tagged(SpanEdits):
        tag: str = "t"

    class Loose:  # any object with the four attributes
        def __init__(self, sets):
            self.renames, self.deletes, self.sets, self.replace = [("a", "a2")], [], sets, None

    native_codec = pytest.importorskip("costctx.pdata.codec.native").NativeCodec()
    raw = build_request([{"a": "x", "b": 1}, {"a": "y"}, {"b": 2}], 3)
    watched = frozenset({"a", "b"})
    view, expected = native_codec.scan(raw, watched), ORACLE.scan(raw, watched)
    for order in ((Tagged, SpanEdits), (SpanEdits, Tagged)):
        edits = BatchEdits()
        edits.spans[0] = order[0](deletes=["b"], sets=[("n", 1)])
        edits.spans[1] = order[1](renames=[("a", "c")], sets=[("n", 2.5)])
        edits.spans[2] = Loose([("n", "three")])
        assert native_codec.encode(view, edits) == ORACLE.encode(expected, edits)
    unset = object.__new__(SpanEdits)  # no slot set: the getattr path raises, as Python does
    edits = BatchEdits()
    edits.spans[0] = unset
    with pytest.raises(AttributeError):
        native_codec.encode(view, edits)


def test_converter_kept_between_calls_forgets_each_calls_objects():
    """The edits' converter (objects by address) is kept between calls, emptied after each: a
    value object freed after one encode and a new one at the same address with another value
    (fresh floats, strs, lists) is written with its own value; a call that fails (a non-str key,
    an int past int64) leaves the next one right."""
    native_codec = pytest.importorskip("costctx.pdata.codec.native").NativeCodec()
    raw = build_request([{"a": "x"}, {"b": 1}], 2)
    watched = frozenset({"a", "b"})
    view, expected = native_codec.scan(raw, watched), ORACLE.scan(raw, watched)
    for i in range(60):
        edits = BatchEdits()
        # A varying number of fresh values first: an object seen in the call before (True, 7,
        # "same") would take another id in this one.
        edits.span(0).sets += [(f"p{j}", float(i * 10 + j)) for j in range(i % 4)]
        edits.span(0).sets += [("f", float(i) + 0.25), ("s", "-".join(["v", str(i)])), ("n", 1000 + i)]
        edits.span(1).sets += [("l", ["-".join(["e", str(i)])]), ("f", float(i) + 0.25), ("b", i % 2 == 0),
                               ("t", True), ("seven", 7), ("same", "same")]
        assert native_codec.encode(view, edits) == ORACLE.encode(expected, edits)
        del edits  # its objects freed: the next round's may take their addresses
        if i % 20 == 7:
            bad = BatchEdits()
            bad.span(0).sets += [("ok", "x" + str(i)), (1, "non-str key")]
            with pytest.raises(TypeError):
                native_codec.encode(view, bad)
            bad = BatchEdits()
            bad.span(1).sets += [("ok", "y" + str(i)), ("big", 2**70)]
            with pytest.raises(ValueError):
                native_codec.encode(view, bad)


_SHARED_TEXT = "shared-value-text"
_SHARED_LIST = ["a", "b"]
_pool_values = st.sampled_from([
    _SHARED_TEXT, "".join(["shared-", "value-text"]),  # the same object again, an equal other one
    True, 1, False, 0, 1.0, 0.0, -0.0, float("nan"), float("inf"), 2**63 - 1, -(2**63),
    "x" * 28, "y" * 29, "z" * 200, b"", b"\x00" * 40, _SHARED_LIST, ["a", "b"], ["a", 1, True, 1.0],
    [], KvList([("k", _SHARED_TEXT)]), {"d": 1}, EMPTY, None,
])
_pool_keys = st.sampled_from(["a", "b", "n", "owner.team", "owner.tier", "", "cost.usd", "k" * 40])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(per_span=st.lists(st.lists(st.tuples(_pool_keys, _pool_values), max_size=8), min_size=3, max_size=3),
       group=st.lists(st.tuples(_pool_keys, _pool_values), max_size=4))
def test_generated_sets_sharing_value_objects_agree_with_the_oracle(native, per_span, group):
    """Sets drawn from a pool where one value object recurs under different keys and spans,
    equal values are other objects, bools sit beside equal ints and floats, strings around the
    inline length: the native bytes equal the oracle's, and a second call with the same edits
    (the converter kept between calls) writes the same bytes."""
    raw = build_request([{"a": "x", "n": 3}, {"b": 1.5}, {}], 3)
    watched = frozenset({"a", "b", "n"})
    view, expected = native.scan(raw, watched), ORACLE.scan(raw, watched)
    edits = BatchEdits()
    for index, sets in enumerate(per_span):
        edits.span(index).sets += sets
    if group:
        edits.add_group(SpanEdits(sets=list(group)), [0, 2])
    want = ORACLE.encode(expected, edits)
    assert native.encode(view, edits) == want
    assert native.encode(view, edits) == want


def test_non_str_keys_rejected(native):
    raw = build_request([{"a": "x"}], 1)
    view = native.scan(raw, frozenset({"a"}))
    for key in (1, b"a", None, ("a",)):
        edits = BatchEdits()
        edits.span(0).sets.append((key, "v"))
        with pytest.raises(TypeError):
            native.encode(view, edits)
