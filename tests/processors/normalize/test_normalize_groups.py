"""normalize decides once per group of alike spans (codec.groups) and writes one group edit
per decision: the output, notes and counters stay those of the protobuf path, including when
spans alike in keys and value kinds differ in an enum value, when a span was edited or removed
before normalize, and across batches on one processor (decisions kept per group)."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costctx.pdata.view_batch import ViewBatch
from tests.processors.normalize.test_normalize_view import CODECS, CONFIG, build, counters, through_protobuf
from tests.support.processors import standalone_processor


def span(*attrs):
    return (list(attrs), [], "s")


ALIKE = [span(("gen_ai.system", "openai"), ("llm.token_count.prompt", 5), ("workflow.id", "w"))] * 6
# Same keys and value kinds as ALIKE, but an enum value normalize maps: a different decision.
MAPPED = [span(("gen_ai.system", "Vertex_AI"), ("llm.token_count.prompt", 5), ("workflow.id", "w"))] * 3
PLAIN = [span(("gen_ai.request.model", "m"), ("workflow.id", "w"))] * 4
COERCE = [span(("gen_ai.system", "openai"), ("llm.token_count.prompt", "12"), ("workflow.id", "w"))] * 2


def run(codec, processor, spans, before=None):
    raw = build([([], [("", spans)], "")])
    batch = ViewBatch(codec, raw, processor.watched_keys())
    if before is not None:
        before(batch)
    processor.process_view(batch)
    notes = [sorted(batch.notes.get(i, {}).get("renamed", ())) for i in range(len(spans))]
    return batch, ExportTraceServiceRequest.FromString(batch.payload()).SerializeToString(), notes


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_alike_spans_share_one_group_edit_and_match_the_protobuf_path(codec):
    processor = standalone_processor("normalize", CONFIG)
    spans = [s for trio in zip(ALIKE, MAPPED + PLAIN, COERCE + ALIKE, strict=False) for s in trio] + ALIKE
    for _ in range(2):  # the second batch decides from the kept group decisions
        batch, out, notes = run(codec, processor, spans)
        want_out, want_notes, _ = through_protobuf(build([([], [("", spans)], "")]))
        assert (out, notes) == (want_out, want_notes)
        assert batch.edits.groups, "alike spans renamed by a group edit"
        grouped = {i for g in batch.edits.groups for i in g.spans}
        assert len(grouped) >= len([s for s in spans if s is ALIKE[0]])
        # the spans to coerce took the exact path, one by one
        assert {i for i, s in enumerate(spans) if s is COERCE[0]} <= set(batch.edits.spans)
    fresh = standalone_processor("normalize", CONFIG)
    run(codec, fresh, spans)
    run(codec, fresh, spans)
    assert counters(fresh) == counters(processor)
    assert counters(processor) == {k: 2 * v for k, v in through_protobuf(build([([], [("", spans)], "")]))[2].items()}


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_spans_edited_or_removed_before_normalize_are_not_decided_as_grouped(codec):
    processor = standalone_processor("normalize", CONFIG)
    spans = ALIKE + MAPPED

    def before(batch):
        batch.set(1, "gen_ai.system", "Vertex_AI")  # now alike MAPPED, not ALIKE
        batch.edits.removed.add(2)

    batch, out, _ = run(codec, processor, spans, before)

    spans_then = list(spans)
    spans_then[1] = MAPPED[0]
    del spans_then[2]
    want = through_protobuf(build([([], [("", spans_then)], "")]))[0]
    assert out == want


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_a_second_normalize_sees_spans_a_group_edit_renamed_as_they_now_are(codec):
    """Two normalize processors in a row: the second must not decide on the scan's groups of
    spans the first renamed by a group edit (their attrs are no longer as scanned)."""
    spans = ALIKE + PLAIN
    raw = build([([], [("", spans)], "")])
    first, second = standalone_processor("normalize", CONFIG), standalone_processor("normalize", CONFIG)
    batch = ViewBatch(codec, raw, first.watched_keys())
    first.process_view(batch)
    assert batch.edits.groups
    second.process_view(batch)
    out = ExportTraceServiceRequest.FromString(batch.payload()).SerializeToString()
    once, _, _ = through_protobuf(raw)
    assert out == through_protobuf(once)[0]
    assert not [k for k in counters(second) if k[0] == "costctx_normalize_renamed_total"]


def test_a_columnar_normalize_makes_no_span_view_for_groups_it_decided_before():
    """On the native codec's lazy spans (the pipeline marks normalize `columnar`), a group
    seen before is decided by its key and written by a group edit: no SpanView is made for
    its spans, even renamed ones, and the output, notes and views are the protobuf path's."""
    native = next((c for c in CODECS if c.name == "native"), None)
    if native is None:
        pytest.skip("costctx_native not built")
    processor = standalone_processor("normalize", CONFIG)
    assert processor.columnar
    spans = ALIKE + MAPPED + PLAIN + ALIKE
    made = []
    for _ in range(2):
        raw = build([([], [("", spans)], "")])
        batch = ViewBatch(native, raw, processor.watched_keys())
        batch.lazy_spans = True
        processor.process_view(batch)
        made.append(batch.view.spans.made_count())
        notes = [sorted(batch.notes.get(i, {}).get("renamed", ())) for i in range(len(spans))]
        out = ExportTraceServiceRequest.FromString(batch.payload()).SerializeToString()
        want_out, want_notes, _ = through_protobuf(raw)
        assert (out, notes) == (want_out, want_notes)
        batch.lazy_spans = False  # the next processor reads every span: the views carry the renames
        expected = ViewBatch(native, want_out, processor.watched_keys()).view.spans
        assert [sorted(s.attrs) for s in batch.view.spans] == [sorted(s.attrs) for s in expected]
    # A view per group the first time; after, only for the spans an enum value maps, which
    # are decided one by one.
    assert made[0] < len(spans) / 2 and made[1] == len(MAPPED), made


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_kept_group_decisions_stay_bounded_and_exact_when_the_table_is_cleared(codec, monkeypatch):
    """Group decisions are kept by group key in a table cleared when full (with the numbers
    it hands out): batch after batch of new enum values, the table stays bounded and every
    batch's output, notes and counts stay the protobuf path's."""
    from costctx.processors.normalize import processor as normalize_module

    monkeypatch.setattr(normalize_module, "MAX_GROUP_DECISIONS", 4)
    processor = standalone_processor("normalize", CONFIG)
    wanted: dict = {}
    for n in range(6):
        # A new model name each batch: new group keys (gen_ai.request.model splits groups)
        fresh = [span(("gen_ai.system", "openai"), ("llm.token_count.prompt", 5), ("gen_ai.request.model", f"m{n}"),
                      ("workflow.id", "w"))] * 3
        spans = ALIKE[:2] + fresh + PLAIN[:2] + MAPPED[:1] + COERCE[:1]
        batch, out, notes = run(codec, processor, spans)
        want_out, want_notes, want_counts = through_protobuf(build([([], [("", spans)], "")]))
        assert (out, notes) == (want_out, want_notes)
        assert len(processor._table_of_groups) <= 4 + len(spans)
        assert len(processor._decisions) <= 2 + 4 + len(spans)
        for key, value in want_counts.items():
            wanted[key] = wanted.get(key, 0) + value
    assert counters(processor) == wanted
