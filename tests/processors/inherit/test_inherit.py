# ruff: noqa: SIM117 - nested `with` blocks mirror the span trees under test
"""The `inherit` processor with the real SDK, a real sidecar and a real sink.

The SDK exports a span when it ends: children reach the sidecar before the root that
carries the envelope, here in separate export batches (force_flush between groups).
"""

from __future__ import annotations

import threading

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import DefaultGetter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.trace import Link
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from costctx.envelope import ENVELOPE as SCHEMA
from costctx.pdata.view_batch import ViewBatch
from tests.support.codecs import available_codecs
from tests.support.otlp import kv
from tests.support.processors import standalone_processor
from tests.support.sdk import tracer_provider
from tests.support.sidecar import sidecar_config, start_sidecar

CONTEXT = {
    "workflow.id": "wf-1",
    "workflow.name": "support-chat",
    "request.id": "req-1",
    "owner.tenant": "acme",
    "owner.feature": "chat",
    "owner.team": "growth",
    "policy.id": "pol-7",
}
PIPELINE = ["inherit", "envelope"]


def _sample(runner, name: str, **labels) -> float:
    registry = runner.sidecar.metrics.registry
    value = runner.call(lambda: registry.get_sample_value(name, {"processor": "inherit", **labels}))
    return value or 0.0


def _inherit(runner):
    return runner.sidecar.traces.processors[0]


def _by_name(sink) -> dict:
    return {s.name: s for s in sink.spans()}


def test_nested_calls_exported_before_root_are_repaired_across_batches(make_sidecar, sink):
    runner = make_sidecar(processors=PIPELINE, processor_config={"inherit": {"wait_duration": "30s"}})
    provider = tracer_provider(
        grpc_port=runner.sidecar.grpc_port, service="agent", max_export_batch_size=2,
        resource_attributes={"service.version": "3.1.0"},
    )
    tracer = provider.get_tracer("agent")
    with tracer.start_as_current_span("root", attributes=CONTEXT):
        with tracer.start_as_current_span("plan"):
            with tracer.start_as_current_span("llm.plan", attributes={"gen_ai.request.model": "gpt-4o"}):
                pass
            provider.force_flush()  # batch 1: the innermost model call alone
            with tracer.start_as_current_span("tool.search"):
                with tracer.start_as_current_span("llm.summarize", attributes={"owner.user": "u-9"}):
                    pass
        provider.force_flush()  # batch 2 (and more: 2 spans per export)
        with tracer.start_as_current_span("llm.answer"):
            pass
        provider.force_flush()  # batch 3
        # Nothing reaches the sink before the root: every one of these lacks required fields.
        assert runner.call(lambda: _inherit(runner).hold.span_count) == 5
    provider.force_flush()
    provider.shutdown()

    assert sink.wait_for_spans(6)
    spans = _by_name(sink)
    assert len(sink.spans()) == 6
    inherited = [k for k in SCHEMA.inheritable if k in CONTEXT] + ["owner.version"]
    for name in ("plan", "llm.plan", "tool.search", "llm.answer"):
        attrs = spans[name].attributes
        for key, value in CONTEXT.items():
            assert attrs[key] == value, (name, key)
        assert attrs["owner.version"] == "3.1.0"
        assert sorted(attrs["costctx.repaired"]) == sorted(inherited), name
        assert "costctx.missing" not in attrs
        assert attrs["workflow.hop_depth"] == 0
    # Its own value is kept and not reported as repaired.
    summarize = spans["llm.summarize"].attributes
    assert summarize["owner.user"] == "u-9"
    assert sorted(summarize["costctx.repaired"]) == sorted(inherited)
    # The root had everything but the version, which comes from its resource.
    assert spans["root"].attributes["costctx.repaired"] == ["owner.version"]
    assert _sample(runner, "costctx_inherit_released_spans_total", reason="ancestor") == 5
    assert _sample(runner, "costctx_inherit_held_spans_total") == 5
    assert _sample(runner, "costctx_inherit_repaired_fields_total", field="workflow.id", source="ancestor") == 5
    survival = runner.sidecar.survival.snapshot()
    assert survival[("agent", "workflow.id", "inherited")] == 5
    assert survival[("agent", "workflow.id", "present")] == 1


def test_subagent_on_another_thread_and_service_with_remote_parent(make_sidecar, sink):
    runner = make_sidecar(processors=PIPELINE, processor_config={"inherit": {"wait_duration": "30s"}})
    port = runner.sidecar.grpc_port
    main = tracer_provider(grpc_port=port, service="orchestrator")
    sub = tracer_provider(grpc_port=port, service="research-agent")
    main_tracer, sub_tracer = main.get_tracer("orchestrator"), sub.get_tracer("research")
    propagator = TraceContextTextMapPropagator()

    def run_subagent(carrier: dict, linked_only: bool) -> None:
        remote = propagator.extract(carrier, getter=DefaultGetter())
        if linked_only:
            # A framework that starts a new trace per agent run and links to its caller.
            parent_ctx = trace.get_current_span(remote).get_span_context()
            start = sub_tracer.start_as_current_span(
                "subagent.run", context=otel_context.Context(), links=[Link(parent_ctx)]
            )
        else:
            start = sub_tracer.start_as_current_span("subagent.run", context=remote)
        with start, sub_tracer.start_as_current_span("subagent.llm"):
            pass
        sub.force_flush()

    with main_tracer.start_as_current_span("root", attributes=CONTEXT):
        with main_tracer.start_as_current_span("delegate"):
            for linked_only in (False, True):
                carrier: dict = {}
                propagator.inject(carrier)
                worker = threading.Thread(target=run_subagent, args=(carrier, linked_only))
                worker.start()
                worker.join()
        main.force_flush()
    main.force_flush()

    assert sink.wait_for_spans(6)
    spans = sink.spans()
    root = next(s for s in spans if s.name == "root")
    subagent = [s for s in spans if s.service == "research-agent"]
    assert len(subagent) == 4
    for span in subagent:
        assert span.attributes["workflow.id"] == "wf-1"
        assert span.attributes["owner.tenant"] == "acme"
        assert "costctx.missing" not in span.attributes
        # One service boundary from the workflow's first span.
        assert span.attributes["workflow.hop_depth"] == 1
    same_trace = [s for s in subagent if s.trace_id == root.trace_id]
    linked = [s for s in subagent if s.trace_id != root.trace_id]
    assert len(same_trace) == 2 and len(linked) == 2
    delegate = next(s for s in spans if s.name == "delegate")
    assert delegate.attributes["workflow.hop_depth"] == 0
    assert root.attributes["workflow.hop_depth"] == 0
    main.shutdown()
    sub.shutdown()


def test_retry_chain_keeps_its_own_attempts(make_sidecar, sink):
    runner = make_sidecar(processors=PIPELINE, processor_config={"inherit": {"wait_duration": "30s"}})
    provider = tracer_provider(grpc_port=runner.sidecar.grpc_port, service="tools", max_export_batch_size=3)
    tracer = provider.get_tracer("tools")
    with tracer.start_as_current_span("root", attributes={**CONTEXT, "retry.attempt": 0}):
        with tracer.start_as_current_span("tool.fetch"):
            for attempt in range(3):
                with tracer.start_as_current_span(f"attempt-{attempt}", attributes={"retry.attempt": attempt}):
                    with tracer.start_as_current_span(f"http-{attempt}"):
                        pass
                provider.force_flush()
    provider.force_flush()
    provider.shutdown()

    assert sink.wait_for_spans(8)
    spans = _by_name(sink)
    for attempt in range(3):
        retry = spans[f"attempt-{attempt}"].attributes
        assert retry["retry.attempt"] == attempt
        assert retry["workflow.id"] == "wf-1" and retry["request.id"] == "req-1"
        assert "retry.attempt" not in retry["costctx.repaired"]
        http = spans[f"http-{attempt}"].attributes
        assert http["workflow.id"] == "wf-1"
        assert "retry.attempt" not in http  # never inherited
    # Six waited; tool.fetch came in the root's own batch and was repaired in place.
    assert _sample(runner, "costctx_inherit_released_spans_total", reason="ancestor") == 6
    assert spans["tool.fetch"].attributes["workflow.id"] == "wf-1"


def test_two_workflows_in_one_trace_count_conflicts_and_keep_the_nearest(make_sidecar, sink):
    runner = make_sidecar(processors=PIPELINE, processor_config={"inherit": {"wait_duration": "30s"}})
    provider = tracer_provider(grpc_port=runner.sidecar.grpc_port, service="planner")
    tracer = provider.get_tracer("planner")
    with tracer.start_as_current_span("root", attributes=CONTEXT):
        # A nested workflow: its own id, the rest to inherit.
        with tracer.start_as_current_span("subflow", attributes={"workflow.id": "wf-2"}):
            with tracer.start_as_current_span("subflow.llm"):
                pass
        with tracer.start_as_current_span("main.llm"):
            pass
        provider.force_flush()
    provider.force_flush()
    provider.shutdown()

    assert sink.wait_for_spans(4)
    spans = _by_name(sink)
    subflow = spans["subflow"].attributes
    assert subflow["workflow.id"] == "wf-2"  # its own value is never overwritten
    assert subflow["owner.tenant"] == "acme"
    assert "workflow.id" not in subflow["costctx.repaired"]
    assert subflow["workflow.hop_depth"] == 0  # a new workflow starts here
    assert spans["subflow.llm"].attributes["workflow.id"] == "wf-2"  # nearest ancestor wins
    assert spans["main.llm"].attributes["workflow.id"] == "wf-1"
    assert _sample(runner, "costctx_inherit_conflicts_total", field="workflow.id") == 1
    assert runner.sidecar.survival.snapshot()[("planner", "workflow.id", "conflict")] == 1


def test_span_whose_ancestors_never_come_is_released_after_the_wait_and_counted(make_sidecar, sink):
    runner = make_sidecar(processors=PIPELINE, processor_config={"inherit": {"wait_duration": "300ms"}})
    provider = tracer_provider(grpc_port=runner.sidecar.grpc_port, service="worker")
    tracer = provider.get_tracer("worker")
    lost_root = tracer.start_span("lost-root", attributes=CONTEXT)  # never ends, never exported
    with trace.use_span(lost_root, end_on_exit=False):
        with tracer.start_as_current_span("orphan"):
            pass
    provider.force_flush()

    assert sink.wait_for_spans(1)
    orphan = sink.spans()[0].attributes
    assert "workflow.id" not in orphan
    assert set(orphan["costctx.missing"]) == set(SCHEMA.default_required)
    assert _sample(runner, "costctx_inherit_released_spans_total", reason="timeout") == 1
    assert _sample(runner, "costctx_inherit_missing_spans_total", reason="timeout") == 1
    provider.shutdown()


def test_trace_fallback_fills_the_workflow_when_no_ancestor_has_it(make_sidecar, sink):
    runner = make_sidecar(processors=PIPELINE, processor_config={"inherit": {"wait_duration": "300ms"}})
    provider = tracer_provider(grpc_port=runner.sidecar.grpc_port, service="worker")
    tracer = provider.get_tracer("worker")
    lost_root = tracer.start_span("lost-root")  # never ends, never exported
    with trace.use_span(lost_root, end_on_exit=False):
        with tracer.start_as_current_span("branch-with-context", attributes=CONTEXT):
            pass
        with tracer.start_as_current_span("branch-without"):
            pass
    provider.force_flush()

    assert sink.wait_for_spans(2)
    spans = _by_name(sink)
    without = spans["branch-without"].attributes
    assert without["workflow.id"] == "wf-1"
    assert "workflow.id" in without["costctx.repaired"]
    assert "owner.tenant" not in without  # the fallback is for the workflow, per the contract
    assert _sample(runner, "costctx_inherit_repaired_fields_total", field="workflow.id", source="trace") == 1
    assert _sample(runner, "costctx_inherit_repaired_fields_total", field="workflow.id", source="ancestor") == 0
    provider.shutdown()


def test_spans_that_need_no_repair_leave_with_their_batch(make_sidecar, sink):
    """Order, not time: the complete span reaches the sink while its batch-mate is still held."""
    runner = make_sidecar(processors=PIPELINE, processor_config={"inherit": {"wait_duration": "60s"}})
    provider = tracer_provider(grpc_port=runner.sidecar.grpc_port, service="svc")
    tracer = provider.get_tracer("svc")
    root = tracer.start_span("root", attributes=CONTEXT)
    with trace.use_span(root, end_on_exit=False):
        with tracer.start_as_current_span("complete", attributes=CONTEXT):
            pass
        with tracer.start_as_current_span("needs-repair"):
            pass
    provider.force_flush()  # one export batch with both children

    assert sink.wait_for_spans(1)
    assert [s.name for s in sink.spans()] == ["complete"]
    assert runner.call(lambda: _inherit(runner).hold.span_count) == 1
    root.end()
    provider.force_flush()
    assert sink.wait_for_spans(3)
    names = [s.name for s in sink.spans()]
    assert names[0] == "complete" and set(names[1:]) == {"needs-repair", "root"}
    complete = sink.spans()[0].attributes
    assert "costctx.repaired" not in complete and "workflow.hop_depth" not in complete  # parent unknown then
    assert _by_name(sink)["needs-repair"].attributes["workflow.id"] == "wf-1"
    provider.shutdown()


def test_overflow_and_shutdown_release_held_spans_never_dropping_them(sink):
    config = sidecar_config(
        sink.grpc_port, processors=PIPELINE,
        processor_config={"inherit": {"wait_duration": "60s", "hold": {"max_spans": 3}}},
    )
    runner = start_sidecar(config)
    provider = tracer_provider(grpc_port=runner.sidecar.grpc_port, service="svc")
    tracer = provider.get_tracer("svc")
    for i in range(5):  # five traces, each a child of a root that is never exported
        lost = tracer.start_span(f"lost-{i}", context=otel_context.Context())
        with trace.use_span(lost, end_on_exit=False), tracer.start_as_current_span(f"orphan-{i}"):
            pass
        provider.force_flush()
    # The hold keeps 3; the two oldest were released on overflow, not dropped.
    assert sink.wait_for_spans(2)
    assert sorted(s.name for s in sink.spans()) == ["orphan-0", "orphan-1"]
    assert runner.call(lambda: _inherit(runner).hold.span_count) == 3
    assert _sample(runner, "costctx_inherit_released_spans_total", reason="overflow") == 2
    assert _sample(runner, "costctx_inherit_released_spans_total", reason="shutdown") == 0
    registry = runner.sidecar.metrics.registry
    runner.stop()  # shutdown releases everything still held
    assert sink.wait_for_spans(5)
    assert sorted(s.name for s in sink.spans()) == [f"orphan-{i}" for i in range(5)]
    # ... and counts them (README: held spans released on shutdown, by reason).
    released = registry.get_sample_value("costctx_inherit_released_spans_total",
                                         {"processor": "inherit", "reason": "shutdown"})
    assert released == 3
    provider.shutdown()


def test_default_pipeline_keeps_normalize_notes_on_held_spans(make_sidecar, sink):
    """normalize renames before the span is held; the rename still counts when it is released."""
    runner = make_sidecar(processor_config={"inherit": {"wait_duration": "30s"}})  # the default pipeline
    names = [p.name for p in runner.sidecar.traces.processors]
    assert names.index("normalize") < names.index("inherit") < names.index("envelope")
    provider = tracer_provider(grpc_port=runner.sidecar.grpc_port, service="chat")
    tracer = provider.get_tracer("chat")
    with tracer.start_as_current_span("root", attributes=CONTEXT):
        with tracer.start_as_current_span("llm", attributes={"user.id": "u-1"}):
            pass
        provider.force_flush()
        assert runner.call(lambda: runner.sidecar.traces.processors[names.index("inherit")].hold.span_count) == 1
    provider.force_flush()
    provider.shutdown()

    assert sink.wait_for_spans(2)
    llm = _by_name(sink)["llm"].attributes
    assert llm["owner.user"] == "u-1" and "user.id" not in llm
    assert llm["costctx.renamed"] == ["owner.user"]
    assert llm["workflow.id"] == "wf-1"
    survival = runner.sidecar.survival.snapshot()
    assert survival[("chat", "owner.user", "renamed")] == 1
    assert survival[("chat", "workflow.id", "inherited")] == 1


def test_async_tool_call_outliving_its_parent_is_repaired_from_the_cache_without_waiting(make_sidecar, sink):
    runner = make_sidecar(processors=PIPELINE, processor_config={"inherit": {"wait_duration": "30s"}})
    provider = tracer_provider(grpc_port=runner.sidecar.grpc_port, service="svc")
    tracer = provider.get_tracer("svc")
    with tracer.start_as_current_span("root", attributes=CONTEXT):
        background = tracer.start_span("tool.async")  # fire and forget: ends after the root
    provider.force_flush()
    assert sink.wait_for_spans(1)
    background.end()
    provider.force_flush()
    assert sink.wait_for_spans(2)
    tool = _by_name(sink)["tool.async"].attributes
    assert tool["workflow.id"] == "wf-1" and tool["policy.id"] == "pol-7"
    assert "workflow.id" in tool["costctx.repaired"]
    assert _sample(runner, "costctx_inherit_held_spans_total") == 0  # its ancestor was known
    provider.shutdown()


def test_a_kvlist_context_value_is_inherited_not_a_batch_failure(make_sidecar, sink):
    """A client may send a context field as a kvlist (the SDK cannot, raw OTLP can): children copy it."""
    from tests.support.otlp import TRACE_METHOD, grpc_call, traces_request

    runner = make_sidecar(processors=PIPELINE)
    parent = traces_request(1, attributes={**CONTEXT})
    parent_span = parent.resource_spans[0].scope_spans[0].spans[0]
    team = next(kv for kv in parent_span.attributes if kv.key == "owner.team")
    team.value.ClearField("value")
    entry = team.value.kvlist_value.values.add()
    entry.key, entry.value.string_value = "name", "growth"
    child = traces_request(1, trace_id=parent_span.trace_id)
    child.resource_spans[0].scope_spans[0].spans[0].parent_span_id = parent_span.span_id

    assert grpc_call(runner.sidecar.grpc_port, TRACE_METHOD, parent.SerializeToString())[1] is None
    assert grpc_call(runner.sidecar.grpc_port, TRACE_METHOD, child.SerializeToString())[1] is None
    assert sink.wait_for_spans(2)
    repaired = [s for s in sink.spans() if s.parent_span_id == parent_span.span_id.hex()][0].attributes
    assert repaired["owner.team"] == {"name": "growth"}
    assert repaired["workflow.id"] == "wf-1"
    errors = runner.sidecar.metrics.registry.get_sample_value(
        "costctx_processor_errors_total", {"processor": "inherit"})
    assert not errors


def test_a_root_and_an_orphan_with_the_same_fields_in_one_batch_are_decided_apart(make_sidecar, sink):
    """Spans with no known parent share a decision per batch: a trace's root (hop depth 0)
    must not share one with a batch-mate whose parent is merely unknown (no depth)."""
    runner = make_sidecar(processors=PIPELINE, processor_config={"inherit": {"wait_duration": "60s"}})
    provider = tracer_provider(grpc_port=runner.sidecar.grpc_port, service="svc")
    tracer = provider.get_tracer("svc")
    with tracer.start_as_current_span("root", attributes=CONTEXT):
        middle = tracer.start_span("middle")  # never ended, so never exported: its child's parent is unknown
        with trace.use_span(middle), tracer.start_as_current_span("complete", attributes=CONTEXT):
            pass
    provider.force_flush()  # one export batch: the orphan first, then the root

    assert sink.wait_for_spans(2)
    spans = _by_name(sink)
    assert "middle" not in spans
    assert "workflow.hop_depth" not in spans["complete"].attributes  # its parent never came
    assert spans["root"].attributes["workflow.hop_depth"] == 0
    provider.shutdown()


def test_a_child_before_its_parent_in_one_batch_is_resolved_in_place(make_sidecar, sink):
    """Children end, and are exported, before their parents: a child whose parent is later in
    the same batch is resolved after it (parent first) and leaves in its place. A child that
    needs nothing from it (it carries every field) still gets its hop depth from it; it was
    decided before its parent, with no depth, when spans were resolved in batch order."""
    runner = make_sidecar(processors=PIPELINE, processor_config={"inherit": {"wait_duration": "60s"}})
    provider = tracer_provider(grpc_port=runner.sidecar.grpc_port, service="svc")
    tracer = provider.get_tracer("svc")
    with tracer.start_as_current_span("root", attributes=CONTEXT):
        with tracer.start_as_current_span("agent"):
            with tracer.start_as_current_span("tool", attributes=CONTEXT):
                pass
            with tracer.start_as_current_span("model", attributes={"workflow.id": CONTEXT["workflow.id"]}):
                pass
    provider.force_flush()  # one export batch: tool, model, agent, root

    assert sink.wait_for_spans(4)
    assert [s.name for s in sink.spans()] == ["tool", "model", "agent", "root"]  # in place, not appended
    spans = _by_name(sink)
    for name in ("root", "agent", "tool", "model"):
        attributes = spans[name].attributes
        assert attributes["workflow.hop_depth"] == 0, name
        assert attributes["owner.tenant"] == CONTEXT["owner.tenant"], name
    provider.shutdown()


def test_a_client_span_before_its_parent_in_one_batch_is_registered():
    """A CLIENT span carrying workflow.id but lacking other required fields, before its parent
    in one batch, is resolved after it (not held) and registered under its own ids (a remote
    child may name it as its parent); held, it was never registered."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(kv("service.name", "svc"))
    scope = resource_spans.scope_spans.add()
    call = scope.spans.add(name="call", trace_id=b"\x01" * 16, span_id=b"\x02" * 8, parent_span_id=b"\x03" * 8,
                           kind=Span.SPAN_KIND_CLIENT)
    call.attributes.append(kv("workflow.id", "wf-1"))
    root = scope.spans.add(name="root", trace_id=b"\x01" * 16, span_id=b"\x03" * 8)
    root.attributes.extend(kv(k, v) for k, v in CONTEXT.items())
    for codec in available_codecs():
        processor = standalone_processor("inherit")
        batch = ViewBatch(codec, request.SerializeToString(), processor.watched_keys())
        processor.process_view(batch)
        assert not batch.edits.removed  # not held
        assert processor.registry.registry.local(b"\x01" * 16 + b"\x02" * 8) == {"workflow.id": "wf-1"}


def test_every_client_span_of_a_trace_in_one_batch_is_registered(make_sidecar, sink):
    """The trace is learned once per batch; each CLIENT span (a remote child may name it as
    its parent) is still remembered under its own ids."""
    runner = make_sidecar(processors=PIPELINE)
    provider = tracer_provider(grpc_port=runner.sidecar.grpc_port, service="svc")
    tracer = provider.get_tracer("svc")
    with tracer.start_as_current_span("root", attributes=CONTEXT):
        for name in ("call-1", "call-2", "call-3"):
            with tracer.start_as_current_span(name, kind=trace.SpanKind.CLIENT, attributes=CONTEXT):
                pass
    provider.force_flush()  # one export batch
    assert sink.wait_for_spans(4)
    registry = _inherit(runner).registry.registry
    for span in sink.spans():
        if span.name.startswith("call-"):
            key = bytes.fromhex(span.trace_id) + bytes.fromhex(span.span_id)
            assert runner.call(lambda k=key: registry.local(k))["workflow.id"] == "wf-1", span.name
    provider.shutdown()
