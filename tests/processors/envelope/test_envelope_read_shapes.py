"""envelope's per-batch reading (`read_shapes`): the Rust one (native/src/envelope.rs) gives
what the Python one (the oracle) gives: shape ids and shapes, counts per (resource, depth,
shape), spans to visit, and the schema stamp written alike (a span's own edit sets, the
group, appended and replace lists), over notes, "" and EMPTY values, odd depths, replaced and
removed spans, spans already stamped. The Rust one reads the lazy span list's records, or rows
from it (attr_values), or its views: views made and edited by an earlier processor, or not
made and edited through edit_attrs; the Python one rows from the views made afterwards: the
same, and no view made by the reading. The processor on the bench workload gives the same
output with either reading."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costctx.envelope.keys import COST_USD, HOP_DEPTH_KEY, SCHEMA_KEY
from costctx.pdata.attributes import set_any_value
from costctx.pdata.codec.api import EMPTY, SpanEdits, attr_values, edit_attrs, span_column
from costctx.processors.envelope.processor import _cost_pico_value
from costctx.processors.envelope.shapes import native_read_shapes, read_shapes, row_keys
from tests.support.codecs import available_codecs
from tests.support.processors import standalone_processor

NATIVE = [c for c in available_codecs() if c.name == "native"]
FIELDS = ("workflow.id", "workflow.name", "request.id", "owner.tenant", "owner.feature")
EXTRAS = ("gen_ai.provider.name", "gen_ai.usage.input_tokens")
MARKERS = ("gen_ai.request.model", "gen_ai.usage.input_tokens")
KEYS = (FIELDS, EXTRAS, MARKERS, HOP_DEPTH_KEY, COST_USD, ("owner.tenant", "owner.feature"), "workflow.name",
        "owner.tenant")
STAMP = (SCHEMA_KEY, "1")
ROW_KEYS = row_keys(KEYS, STAMP)
VALUES = st.one_of(st.sampled_from(["", "x", "wf-1", 0, 1, 2**62, 9_000_000, True, 1.5, -2, -0.0, 0.1, 1e7, 1e300,
                                    float("inf"), b"x", [1]]),
                   st.floats(min_value=0, allow_nan=False), st.text(max_size=3))
ATTR_KEYS = (*FIELDS, *EXTRAS, *MARKERS, HOP_DEPTH_KEY, COST_USD, SCHEMA_KEY, "other")
SPAN = st.fixed_dictionaries({
    "attrs": st.dictionaries(st.sampled_from(ATTR_KEYS), VALUES, max_size=8),
    "resource": st.integers(0, 2),
    # A note: (container, members, whether its name is a fresh str: equal, not the interned one).
    "notes": st.one_of(st.none(), st.dictionaries(
        st.sampled_from(("renamed", "repaired", "conflict", "other")),
        st.tuples(st.sampled_from(("set", "set", "frozenset", "list")),
                  st.sets(st.sampled_from((*FIELDS, "other")), max_size=3), st.booleans()),
        max_size=4)),
    "edit": st.sampled_from(["none", "own", "replace"]),
    "blank": st.one_of(st.none(), st.tuples(st.sampled_from((*FIELDS, HOP_DEPTH_KEY)),
                                            st.sampled_from([EMPTY, "", 2**70, -2**70, True, None]))),
    "removed": st.booleans(),
})


def build(spans: list[dict]) -> bytes:
    request = ExportTraceServiceRequest()
    scopes = [request.resource_spans.add().scope_spans.add() for _ in range(3)]
    for n, spec in enumerate(spans):
        span = scopes[spec["resource"]].spans.add(trace_id=b"\x01" * 16, span_id=(n + 1).to_bytes(8, "big"),
                                                  name="s", start_time_unix_nano=1, end_time_unix_nano=2)
        for key, value in spec["attrs"].items():
            if type(value) is list:
                span.attributes.add(key=key).value.array_value.values.add(int_value=value[0])
            else:
                set_any_value(span.attributes.add(key=key).value, value)
    return request.SerializeToString()


def prepared(codec, raw: bytes, specs: list[dict]):
    """A fresh view with the specs' notes, edits and blanked values: what envelope meets (a
    value blanked on the view of even spans, through edit_attrs on odd ones: not made yet on
    the native codec's lazy list)."""
    view = codec.scan(raw, standalone_processor("envelope").watched_keys())
    notes, edits, indices = {}, {}, []
    spans = view.spans
    position = {span_id: i for i, span_id in enumerate(_span_ids(codec, raw))}
    for n, spec in enumerate(specs):
        index = position[(n + 1).to_bytes(8, "big")]
        if spec["removed"]:
            continue
        indices.append(index)
        if spec["notes"] is not None:
            notes[index] = {_name(name, note): _note(note) for name, note in spec["notes"].items()}
        if spec["blank"] is not None:
            if n % 2:
                edit_attrs(spans, [index], (), (), [spec["blank"]])
            else:
                spans[index].attrs[spec["blank"][0]] = spec["blank"][1]
        if spec["edit"] == "own":
            edits[index] = SpanEdits(sets=[("x.y", 1)])
        elif spec["edit"] == "replace":
            edits[index] = SpanEdits(replace={"x.y": 1})
    return spans, sorted(indices), notes, edits


_CONTAINERS = {"set": set, "frozenset": frozenset, "list": lambda keys: sorted(keys)}


def _note(note) -> object:
    """A note's members as a spec gives them: a set, or (container, members, fresh name)."""
    return set(note) if not isinstance(note, tuple) else _CONTAINERS[note[0]](note[1])


def _name(name: str, note) -> str:
    """The note's name, or an equal str that is not the same (interned) object."""
    if isinstance(note, tuple) and note[2]:
        fresh = "".join(list(name))
        assert fresh == name and fresh is not name
        return fresh
    return name


def _span_ids(codec, raw: bytes) -> list[bytes]:
    return [span.span_id for span in codec.scan(raw, frozenset()).spans]


def columns(spans) -> tuple:
    return tuple(span_column(spans, name) for name in ("resource", "start", "end"))


def from_views(spans) -> list[tuple]:
    return [tuple(map(span.attrs.get, ROW_KEYS)) for span in spans]


def state(edits) -> dict:
    return {i: (list(e.sets), e.replace) for i, e in edits.items()}


@pytest.mark.skipif(not NATIVE or native_read_shapes is None, reason="costctx_native not built")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(SPAN, max_size=25))
def test_native_read_shapes_is_the_python_one(specs):
    raw = build(specs)
    got_spans, indices, notes, got_edits = prepared(NATIVE[0], raw, specs)
    want_spans, _, _, want_edits = prepared(NATIVE[0], raw, specs)
    made = got_spans.made_count()
    got = native_read_shapes(attr_values(got_spans, ROW_KEYS), ROW_KEYS, columns(got_spans), indices, notes,
                             got_edits, KEYS, EMPTY, STAMP, _cost_pico_value)
    assert got_spans.made_count() == made  # read without making a view
    want_views = list(want_spans)
    want = read_shapes(from_views(want_views), ROW_KEYS, columns(want_views), indices, notes, want_edits, KEYS,
                       EMPTY, STAMP, _cost_pico_value)
    assert got == want
    assert state(got_edits) == state(want_edits)
    # The lazy list itself: the native reading reads its records (views made, or pending
    # edit_attrs changes, read as a view has them), making no view.
    list_spans, _, _, list_edits = prepared(NATIVE[0], raw, specs)
    made = list_spans.made_count()
    assert native_read_shapes(list_spans, ROW_KEYS, None, indices, notes, list_edits, KEYS, EMPTY, STAMP,
                              _cost_pico_value) == want
    assert list_spans.made_count() == made
    assert state(list_edits) == state(want_edits)
    # A list of views made already (a reader before was not columnar): read as they are.
    views_spans, _, _, views_edits = prepared(NATIVE[0], raw, specs)
    views = list(views_spans)
    assert native_read_shapes(views, ROW_KEYS, None, indices, notes, views_edits, KEYS, EMPTY, STAMP,
                              _cost_pico_value) == want
    assert state(views_edits) == state(want_edits)
    python_spans, _, _, python_edits = prepared(NATIVE[0], raw, specs)
    python_views = list(python_spans)
    assert read_shapes(python_views, ROW_KEYS, None, indices, notes, python_edits, KEYS, EMPTY, STAMP,
                       _cost_pico_value) == want


def test_shapes_tell_notes_blank_values_and_markers_apart():
    spans, indices, notes, edits = prepared(NATIVE[0] if NATIVE else available_codecs()[0], build([
        {"attrs": {"workflow.id": "a"}, "resource": 0, "notes": None, "edit": "none", "blank": None, "removed": False},
        {"attrs": {"workflow.id": "b"}, "resource": 0, "notes": None, "edit": "none", "blank": None, "removed": False},
        {"attrs": {"workflow.id": "b"}, "resource": 0, "notes": {"renamed": {"workflow.id"}}, "edit": "own",
         "blank": None, "removed": False},
        {"attrs": {"workflow.id": "b"}, "resource": 1, "notes": None, "edit": "replace",
         "blank": ("workflow.id", EMPTY), "removed": False},
        {"attrs": {"gen_ai.request.model": "m", COST_USD: 0.5, SCHEMA_KEY: "1"}, "resource": 1, "notes": None,
         "edit": "none", "blank": None, "removed": False},
    ]), [{"notes": n, "edit": e, "blank": b, "removed": False} for n, e, b in [
        (None, "none", None), (None, "none", None), ({"renamed": {"workflow.id"}}, "own", None),
        (None, "replace", ("workflow.id", EMPTY)), (None, "none", None)]])
    ids, shapes, counts, llm, spend, to_stamp, appended, slow = read_shapes(
        from_views(spans), ROW_KEYS, columns(spans), indices, notes, edits, KEYS, EMPTY, STAMP, _cost_pico_value)
    assert ids == [0, 0, 1, 2, 3]
    assert shapes[0][0] == 1 and shapes[1][0] == 3 and shapes[2][0] == 0 and shapes[3][len(FIELDS)] == 1
    assert [(r, n) for r, _, _, n in counts] == [(0, 2), (0, 1), (1, 1), (1, 1)]
    assert llm == {(None, 3, True): 1} and spend == {(None, (None, None), False): [500_000_000_000, 1]}
    assert to_stamp == [0, 1] and appended == [2] and slow == [3]
    assert edits[2].sets[-1] == STAMP and spans[4].attrs[SCHEMA_KEY] == "1"


@pytest.mark.skipif(not NATIVE or native_read_shapes is None, reason="costctx_native not built")
def test_the_python_reading_on_native_views_gives_the_golden_output(monkeypatch):
    # The bench workload through the whole pipeline on the native codec, envelope reading
    # with the Python twin: the same spans, metrics and survival counts as recorded.
    from costctx.processors.envelope import processor as envelope_processor
    from tests.golden import harness, inputs
    from tests.service.test_golden import assert_same

    monkeypatch.setenv("COSTCTX_CODEC", "native")
    monkeypatch.setattr(envelope_processor, "native_read_shapes", read_shapes)
    assert_same(harness.load(harness.DATA / "workload.json.gz"), harness.run(inputs.workload_requests()))


class _EqualsBlank:
    """A value a Python processor could leave on a view: equal to "" (so not present)."""

    def __eq__(self, other) -> bool:
        return other == ""

    __hash__ = object.__hash__


class _Text(str):
    """A str subclass (not an exact str): presence asked of the value itself."""


@pytest.mark.skipif(not NATIVE or native_read_shapes is None, reason="costctx_native not built")
@pytest.mark.parametrize("value", ["", "x", _Text(""), _Text("x"), _EqualsBlank(), 0, 0.0, False, None, EMPTY,
                                   float("nan"), b"", [], 2**70])
def test_a_field_value_on_a_view_reads_as_the_python_one(value):
    # The Rust reading decides a dict value's presence in its walk for None, EMPTY and exact
    # str, int, float and bool, and asks any other value (as the Python one does): each
    # kind, on a made view and on a kept dict (edit_attrs on a span not made), under a
    # context field and under an extra key of a model call.
    specs = [{"attrs": {"workflow.id": "a", "gen_ai.request.model": "m", "gen_ai.provider.name": "p"}, "resource": 0,
              "notes": None, "edit": "none", "blank": None, "removed": False} for _ in range(4)]
    raw = build(specs)
    for key in ("workflow.id", "gen_ai.provider.name"):
        got_spans, indices, notes, got_edits = prepared(NATIVE[0], raw, specs)
        want_spans, _, _, want_edits = prepared(NATIVE[0], raw, specs)
        for spans in (got_spans, want_spans):
            spans[0].attrs[key] = value  # a made view
            edit_attrs(spans, [1], (), (), [(key, value)])  # not made: a pending change
        got = native_read_shapes(got_spans, ROW_KEYS, None, indices, notes, got_edits, KEYS, EMPTY, STAMP,
                                 _cost_pico_value)
        want = read_shapes(list(want_spans), ROW_KEYS, None, indices, notes, want_edits, KEYS, EMPTY, STAMP,
                           _cost_pico_value)
        assert got == want
        assert got[1][got[0][0]] == got[1][got[0][1]]  # the view and the pending change read alike
