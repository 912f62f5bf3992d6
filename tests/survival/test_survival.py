"""Field survival, readiness verdicts and spend: a known workload through a real sidecar.

Spans are sent with the real OpenTelemetry SDK over OTLP/gRPC; the counts are read back from
/metrics (parsed with prometheus_client's parser), /survival and the rendered table.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import urllib.error
import urllib.request
from decimal import Decimal

from opentelemetry import trace
from prometheus_client.parser import text_string_to_metric_families

from costctx.cli.demo import run_demo
from costctx.cli.main import main
from costctx.cli.survival import demo_section as survival_section
from costctx.service.app import Sidecar
from costctx.service.config.loader import build_config
from costctx.survival.recorder import NO_POLICY
from costctx.survival.render import render_report
from tests.support.sdk import tracer_provider
from tests.support.sidecar import sidecar_config, token_auth
from tests.support.wait import wait_until

OWNER = {
    "workflow.id": "wf-1",
    "workflow.name": "answer",
    "request.id": "req-1",
    "owner.tenant": "acme",
    "owner.feature": "chat",
    "owner.user": "u-1",
    "policy.id": "pol-1",
}
LLM = {
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o",
    "gen_ai.usage.input_tokens": 100,
    "gen_ai.usage.output_tokens": 10,
    "cost.price_source": "test@1",
}


def get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.read()


def samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = get(port, "/metrics").decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(all_samples: dict, name: str, **labels: str) -> float:
    return all_samples.get((name, tuple(sorted(labels.items()))), 0.0)


def send_known_workload(grpc_port: int) -> int:
    """Two hops. gateway (depth 0): a root with the whole envelope and two model calls, one
    without owner.tenant. worker (depth 1): one model call with only ids and owner.feature.
    Costs are carried as an upstream costctx would have stamped them. Returns spans sent."""
    gateway = tracer_provider(grpc_port=grpc_port, service="gateway")
    worker = tracer_provider(grpc_port=grpc_port, service="worker")
    tracer, worker_tracer = gateway.get_tracer("t"), worker.get_tracer("t")
    with tracer.start_as_current_span("POST /answer", attributes={**OWNER, "workflow.hop_depth": 0}) as root:
        with tracer.start_as_current_span(
            "chat 1", attributes={**OWNER, **LLM, "cost.usd": 0.0125, "workflow.hop_depth": 0}
        ):
            pass
        no_tenant = {k: v for k, v in OWNER.items() if k != "owner.tenant"}
        with tracer.start_as_current_span(
            "chat 2", attributes={**no_tenant, **LLM, "cost.usd": 0.0025, "workflow.hop_depth": 0}
        ):
            pass
        ids_only = {k: OWNER[k] for k in ("workflow.id", "workflow.name", "request.id", "owner.feature")}
        with worker_tracer.start_as_current_span(
            "chat 3",
            context=trace.set_span_in_context(root),
            attributes={**ids_only, **LLM, "cost.usd": 0.001, "workflow.hop_depth": 1},
        ):
            pass
    for provider in (gateway, worker):
        provider.force_flush()
        provider.shutdown()
    return 4


# (hop, field) -> (present, missing) for the known workload; every other outcome is 0.
EXPECTED = {
    ("gateway", "workflow.id"): (3, 0),
    ("gateway", "workflow.name"): (3, 0),
    ("gateway", "request.id"): (3, 0),
    ("gateway", "retry.attempt"): (0, 3),
    ("gateway", "owner.tenant"): (2, 1),
    ("gateway", "owner.team"): (0, 3),
    ("gateway", "owner.feature"): (3, 0),
    ("gateway", "owner.user"): (3, 0),
    ("gateway", "owner.cost_center"): (0, 3),
    ("gateway", "owner.version"): (0, 3),
    ("gateway", "policy.id"): (3, 0),
    ("worker", "workflow.id"): (1, 0),
    ("worker", "workflow.name"): (1, 0),
    ("worker", "request.id"): (1, 0),
    ("worker", "retry.attempt"): (0, 1),
    ("worker", "owner.tenant"): (0, 1),
    ("worker", "owner.team"): (0, 1),
    ("worker", "owner.feature"): (1, 0),
    ("worker", "owner.user"): (0, 1),
    ("worker", "owner.cost_center"): (0, 1),
    ("worker", "owner.version"): (0, 1),
    ("worker", "policy.id"): (0, 1),
}


def test_known_workload_exact_counts_in_metrics_survival_and_table(sink, make_sidecar):
    runner = make_sidecar(processors=["envelope"])
    sidecar = runner.sidecar
    sent = send_known_workload(sidecar.grpc_port)
    assert sink.wait_for_spans(sent)
    port = sidecar.admin_port

    # /metrics: every (hop, field, outcome) series, zeros included, and spend by tenant/feature.
    metrics = samples(port)
    for (hop, key), (present, missing) in EXPECTED.items():
        expected = {"present": present, "missing": missing, "renamed": 0, "inherited": 0, "conflict": 0}
        for outcome, count in expected.items():
            assert sample(metrics, "costctx_field_outcomes_total", hop=hop, field=key, outcome=outcome) == count, (
                hop, key, outcome)
    assert sample(metrics, "costctx_hop_spans_total", hop="gateway") == 3
    assert sample(metrics, "costctx_hop_spans_total", hop="worker") == 1
    assert sample(metrics, "costctx_spend_usd_total", tenant="acme", feature="chat") == 0.0125
    assert sample(metrics, "costctx_spend_usd_total", tenant="unknown", feature="chat") == 0.0035
    assert sample(metrics, "costctx_spend_recovered_usd_total", tenant="unknown", feature="chat") == 0
    assert sample(metrics, "costctx_readiness_llm_spans", workflow="answer") == 3
    assert sample(metrics, "costctx_readiness_verdict", workflow="answer", verdict="fail") == 1
    assert sample(metrics, "costctx_readiness_verdict", workflow="answer", verdict="pass") == 0
    assert sample(metrics, "costctx_receiver_accepted_items_total", signal="traces", transport="grpc") == 4

    # /survival: hops ordered by depth, counts and rates per cell, the verdict and spend.
    report = json.loads(get(port, "/survival"))
    assert [(h["hop"], h["depth"], h["spans"]) for h in report["matrix"]["hops"]] == [
        ("gateway", 0, 3), ("worker", 1, 1)]
    rows = {row["field"]: row["hops"] for row in report["matrix"]["fields"]}
    for (hop, key), (present, missing) in EXPECTED.items():
        cell = rows[key][hop]
        assert (cell["present"], cell["missing"], cell["inherited"], cell["renamed"], cell["conflict"]) == (
            present, missing, 0, 0, 0)
        assert cell["rate_before_repair"] == cell["rate_after_repair"] == present / cell["spans"]
        assert cell["gap"] == ("drop gap" if missing else "none")
    [answer] = report["readiness"]["workflows"]
    assert answer["workflow"] == "answer" and answer["llm_spans"] == 3
    assert answer["verdict"] == "fail"
    assert answer["failing_fields"] == ["owner.user", "policy.id"]
    # No budget policy here: the verdict says why policy.id can be missing (the app alone sets it).
    assert answer["why"] == {"policy.id": NO_POLICY}
    checks = {c["id"]: c for c in answer["checks"]}
    assert checks[3]["rate_after_repair"] == checks[9]["rate_after_repair"] == 2 / 3
    assert all(checks[i]["passed"] for i in (1, 2, 4, 5, 6, 7, 8, 10))
    spend = report["spend"]
    assert spend["total_usd"] == 0.016
    assert spend["unknown_tenant_usd"] == 0.0035
    assert spend["recovered_by_repair_usd"] == 0
    assert {(r["workflow"], r["tenant"], r["usd"]) for r in spend["by_workflow_tenant"]} == {
        ("answer", "acme", 0.0125), ("answer", "unknown", 0.0035)}

    # The table: hops as columns in depth order, each cell the rate and the gap it names.
    table = render_report(report, include_spend=True)
    lines = table.splitlines()
    header = next(line for line in lines if line.strip().startswith("field"))
    assert header.index("gateway") < header.index("worker")
    tenant_line = next(line for line in lines if line.strip().startswith("owner.tenant"))
    assert tenant_line.split()[1:] == ["66.7%", "drop", "gap", "0%", "drop", "gap"]
    id_line = next(line for line in lines if line.strip().startswith("workflow.id"))
    assert id_line.split()[1:] == ["100%", "100%"]
    verdict_line = next(line for line in lines if line.strip().startswith("answer"))
    assert verdict_line.split()[:3] == ["answer", "3", "FAIL"]
    assert "owner.user 66.7%" in verdict_line and "policy.id 66.7%" in verdict_line
    assert f"  policy.id: {NO_POLICY}" in lines
    # The tables name the key their first column holds: the workflow's name, not its id.
    starts = [line.split()[:3] for line in lines]
    assert ["workflow.name", "LLM", "spans"] in starts and ["workflow.name", "tenant", "spend"] in starts
    assert not [start for start in starts if start[:1] == ["workflow"]]
    assert "$0.012500" in table and "$0.003500" in table


def test_with_a_budget_policy_a_missing_policy_id_is_not_excused(sink, make_sidecar):
    policy = {"id": "agent", "workflow": {"cost_usd": 100.0}}
    runner = make_sidecar(processors=["budget", "envelope"], processor_config={"budget": {"policies": [policy]}})
    sent = send_known_workload(runner.sidecar.grpc_port)
    assert sink.wait_for_spans(sent)
    [answer] = json.loads(get(runner.sidecar.admin_port, "/survival"))["readiness"]["workflows"]
    assert "policy.id" in answer["failing_fields"] and answer["why"] == {}


def test_spans_keep_their_envelope_stamps(sink, make_sidecar):
    runner = make_sidecar(processors=["envelope"])
    sent = send_known_workload(runner.sidecar.grpc_port)
    assert sink.wait_for_spans(sent)
    by_name = {s.name: s for s in sink.spans()}
    assert by_name["chat 2"].attributes["costctx.missing"] == ["owner.tenant"]
    assert "costctx.missing" not in by_name["chat 1"].attributes
    assert by_name["chat 3"].attributes["costctx.schema"] == "1"


def readyz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_health_and_readiness_follow_a_real_start_and_stop(sink, make_sidecar):
    """Not ready before start; ready once listening; not ready as soon as stop begins (the admin
    port serves until the end of the drain, which a refusing downstream holds open)."""
    assert Sidecar(build_config(sidecar_config(sink.grpc_port, processors=["envelope"]), {})).readiness()[0] is False
    runner = make_sidecar(processors=["envelope"])
    sidecar = runner.sidecar
    port = sidecar.admin_port
    assert json.loads(get(port, "/healthz")) == {"status": "ok"}
    assert readyz(port) == (200, {"ready": True, "reason": "receivers listening, exporters configured"})

    sink.refuse(1_000_000)
    send_llm_spans(sidecar.grpc_port, 1)  # acknowledged, then stuck in the exporter's retries
    stopping = asyncio.run_coroutine_threadsafe(sidecar.stop(30.0), runner.loop)
    assert wait_until(lambda: readyz(port)[0] == 503)
    assert readyz(port)[1] == {"ready": False, "reason": "starting or stopping"}
    assert not stopping.done()  # still draining: the 503 came from the stop, not the end
    sink.refuse(0)
    stopping.result(30)
    runner.sidecar = None  # stopped here: the fixture only stops its loop


def send_llm_spans(grpc_port: int, count: int, service: str = "gateway", **attributes) -> None:
    provider = tracer_provider(grpc_port=grpc_port, service=service)
    tracer = provider.get_tracer("t")
    for i in range(count):
        attrs = {**LLM, "cost.usd": 0.001}
        for key, value in attributes.items():
            attrs[key] = value(i) if callable(value) else value
        with tracer.start_as_current_span(f"chat {i}", attributes=attrs):
            pass
        if i % 500 == 499:  # stay below the SDK's span queue (2048)
            provider.force_flush()
    provider.force_flush()
    provider.shutdown()


def test_cardinality_stays_bounded_with_thousands_of_tenants(sink, make_sidecar):
    bound = 50
    tenants = 3000
    runner = make_sidecar(processors=["envelope"],
                          service={"telemetry": {"metrics": {"max_label_values": bound}}})
    send_llm_spans(runner.sidecar.grpc_port, tenants, **{
        **OWNER,
        "owner.tenant": lambda i: f"tenant-{i}",
        "workflow.name": lambda i: f"route-{i}",
    })
    assert sink.wait_for_spans(tenants, timeout=30)
    metrics = samples(runner.sidecar.admin_port)
    spend = {labels: v for (name, labels), v in metrics.items() if name == "costctx_spend_usd_total"}
    tenant_values = {dict(labels)["tenant"] for labels in spend}
    assert len(tenant_values) == bound + 1  # the first 50 tenants and `other`
    assert "other" in tenant_values
    # Nothing is lost by folding: the spend of every tenant is still counted.
    assert round(sum(spend.values()), 9) == 3.0
    # Exact sums (Decimal inside): 2950 spans of $0.001 folded into `other`.
    assert sample(metrics, "costctx_spend_usd_total", tenant="other", feature="chat") == 2.95
    assert sample(metrics, "costctx_label_overflow_total", label="tenant") == tenants - bound
    workflows = {dict(labels)["workflow"] for (name, labels) in metrics if name == "costctx_readiness_verdict"}
    assert len(workflows) == bound + 1 and "other" in workflows
    assert len(metrics) < 2000  # every family together, not thousands of series per tenant
    report = json.loads(get(runner.sidecar.admin_port, "/survival"))
    assert len(report["readiness"]["workflows"]) == bound + 1
    assert len(report["spend"]["by_dimensions"]) == bound + 1


def test_spend_rows_have_a_joint_bound(sink, make_sidecar):
    """50 tenants x 50 features stay within each label's bound, but their product does not."""
    bound, spans = 50, 2500
    runner = make_sidecar(processors=["envelope"],
                          service={"telemetry": {"metrics": {"max_label_values": bound}}})
    send_llm_spans(runner.sidecar.grpc_port, spans, **{
        **OWNER,
        "owner.tenant": lambda i: f"tenant-{i % bound}",
        "owner.feature": lambda i: f"feature-{i // bound}",
    })
    assert sink.wait_for_spans(spans, timeout=30)
    metrics = samples(runner.sidecar.admin_port)
    spend = {labels: v for (name, labels), v in metrics.items() if name == "costctx_spend_usd_total"}
    rows = bound * 10  # the joint bound: max_label_values x 10
    assert len(spend) == rows + 1
    assert sample(metrics, "costctx_spend_usd_total", tenant="other", feature="other") == round(
        (spans - rows) * 0.001, 9)
    assert round(sum(spend.values()), 9) == 2.5
    assert sample(metrics, "costctx_label_overflow_total", label="spend_row") == spans - rows
    assert sample(metrics, "costctx_label_overflow_total", label="tenant") == 0


def test_verdict_flips_from_fail_to_pass_when_the_missing_field_arrives(sink, make_sidecar):
    runner = make_sidecar(processors=["envelope"], processor_config={"envelope": {"readiness": {"window": "60s"}}})
    check_verdict_flip(runner, sink)


def check_verdict_flip(runner, sink) -> None:
    sidecar = runner.sidecar
    now = [1000.0]
    runner.call(lambda: setattr(sidecar.survival, "clock", lambda: now[0]))
    without_policy = {k: v for k, v in OWNER.items() if k != "policy.id"}

    def verdict() -> dict:
        [route] = json.loads(get(sidecar.admin_port, "/survival"))["readiness"]["workflows"]
        return route

    send_llm_spans(sidecar.grpc_port, 20, **without_policy)
    assert sink.wait_for_spans(20)
    route = verdict()
    assert (route["workflow"], route["verdict"], route["failing_fields"]) == ("answer", "fail", ["policy.id"])

    # policy.id starts arriving: within the same window the old spans still count.
    send_llm_spans(sidecar.grpc_port, 20, **OWNER)
    assert sink.wait_for_spans(40)
    route = verdict()
    assert (route["llm_spans"], route["verdict"]) == (40, "fail")

    # Once the spans without it leave the window, the route passes.
    now[0] += 61
    send_llm_spans(sidecar.grpc_port, 20, **OWNER)
    assert sink.wait_for_spans(60)
    route = verdict()
    assert (route["llm_spans"], route["verdict"], route["failing_fields"]) == (20, "pass", [])
    metrics = samples(sidecar.admin_port)
    assert sample(metrics, "costctx_readiness_verdict", workflow="answer", verdict="pass") == 1
    assert sample(metrics, "costctx_readiness_verdict", workflow="answer", verdict="fail") == 0
    # The matrix is cumulative: policy.id was present on 40 of 60 spans.
    assert sample(metrics, "costctx_field_outcomes_total", hop="gateway", field="policy.id", outcome="present") == 40


def send_repair_workload(grpc_port: int) -> int:
    """gateway: a root with the envelope and a model call with no context at all (an old
    `gen_ai.system` key); worker: a model call through a remote parent, with only `user.id`.
    Prices come from the price processor. Returns spans sent."""
    gateway = tracer_provider(grpc_port=grpc_port, service="gateway")
    worker = tracer_provider(grpc_port=grpc_port, service="worker")
    tracer, worker_tracer = gateway.get_tracer("t"), worker.get_tracer("t")
    call = {k: v for k, v in LLM.items() if k not in ("gen_ai.provider.name", "cost.price_source")}
    call["gen_ai.system"] = "openai"
    with tracer.start_as_current_span("POST /answer", attributes=OWNER) as root:
        with tracer.start_as_current_span("chat 1", attributes=call):
            pass
        with worker_tracer.start_as_current_span(
            "chat 2", context=trace.set_span_in_context(root), attributes={**call, "user.id": "u-1"}
        ):
            pass
    for provider in (gateway, worker):
        provider.force_flush()
        provider.shutdown()
    return 3


def test_repair_shows_as_inherited_and_renamed_and_recovers_spend(sink, make_sidecar):
    runner = make_sidecar(processors=["normalize", "inherit", "price", "envelope"])
    sent = send_repair_workload(runner.sidecar.grpc_port)
    assert sink.wait_for_spans(sent)
    port = runner.sidecar.admin_port
    metrics = samples(port)

    def outcomes(hop: str, key: str) -> dict[str, float]:
        return {o: sample(metrics, "costctx_field_outcomes_total", hop=hop, field=key, outcome=o)
                for o in ("present", "renamed", "inherited", "missing", "conflict")}

    zero = dict.fromkeys(("present", "renamed", "inherited", "missing", "conflict"), 0)
    for key in OWNER:
        assert outcomes("gateway", key) == {**zero, "present": 1, "inherited": 1}, key
        expected_worker = {**zero, "renamed": 1} if key == "owner.user" else {**zero, "inherited": 1}
        assert outcomes("worker", key) == expected_worker, key
    for key in ("owner.team", "owner.cost_center", "owner.version", "retry.attempt"):
        assert outcomes("gateway", key) == {**zero, "missing": 2}
        assert outcomes("worker", key) == {**zero, "missing": 1}

    report = json.loads(get(port, "/survival"))
    assert [(h["hop"], h["depth"]) for h in report["matrix"]["hops"]] == [("gateway", 0), ("worker", 1)]
    rows = {row["field"]: row["hops"] for row in report["matrix"]["fields"]}
    tenant = rows["owner.tenant"]["gateway"]
    assert (tenant["rate_before_repair"], tenant["rate_after_repair"], tenant["gap"]) == (
        0.5, 1.0, "drop gap, repaired")
    user = rows["owner.user"]["worker"]
    assert (user["rate_before_repair"], user["rate_after_repair"], user["gap"]) == (1.0, 1.0, "translation gap")
    [route] = report["readiness"]["workflows"]
    assert (route["workflow"], route["llm_spans"], route["verdict"], route["verdict_before_repair"]) == (
        "answer", 2, "pass", "fail")

    # Every priced span's owner.tenant was repaired: all of it would have been unknown.
    costs = [Decimal(repr(s.attributes["cost.usd"])) for s in sink.spans() if "cost.usd" in s.attributes]
    assert len(costs) == 2
    total = float(sum(costs))
    spend = report["spend"]
    assert spend["total_usd"] == spend["recovered_by_repair_usd"] == total
    assert (spend["unknown_tenant_usd"], spend["unknown_without_repair_share"]) == (0, 1.0)
    assert sample(metrics, "costctx_spend_recovered_usd_total", tenant="acme", feature="chat") == total

    table = render_report(report)
    tenant_line = next(line for line in table.splitlines() if line.strip().startswith("owner.tenant"))
    assert tenant_line.split()[1:] == ["50.0%->100%", "drop", "gap,", "repaired", "0%->100%", "drop", "gap,",
                                       "repaired"]


def test_survival_command_renders_table_and_json(sink, make_sidecar, capsys):
    runner = make_sidecar(processors=["envelope"])
    sent = send_known_workload(runner.sidecar.grpc_port)
    assert sink.wait_for_spans(sent)
    url = f"http://127.0.0.1:{runner.sidecar.admin_port}"

    assert main(["survival", "--url", url]) == 0
    table = capsys.readouterr().out
    assert table == render_report(json.loads(get(runner.sidecar.admin_port, "/survival")))
    assert "owner.tenant       66.7% drop gap  0% drop gap" in table

    assert main(["survival", "--url", url, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [h["hop"] for h in document["matrix"]["hops"]] == ["gateway", "worker"]
    assert document["readiness"]["workflows"][0]["verdict"] == "fail"

    # Nothing listening: a clear message and status 1, not a traceback.
    assert main(["survival", "--url", "127.0.0.1:1"]) == 1
    assert "cannot read http://127.0.0.1:1/survival" in capsys.readouterr().err


def test_survival_command_sends_the_bearer_token(make_sidecar, tmp_path, capsys):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    runner = make_sidecar(processors=["envelope"], **token_auth(token_file))
    url = f"127.0.0.1:{runner.sidecar.admin_port}"
    assert main(["survival", "--url", url]) == 1
    assert "Unauthorized" in capsys.readouterr().err
    assert main(["survival", "--url", url, "--token", "s3cret-token", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["matrix"]["hops"] == []


def test_demo_ends_with_matrix_verdicts_and_spend():
    out = io.StringIO()
    assert run_demo(out, extra_sections=[survival_section]) == 0
    text = out.getvalue()
    lines = text.splitlines()
    header = next(line for line in lines if line.strip().startswith("field"))
    assert header.split() == ["field", "agent-gateway", "research-agent"]  # by hop depth
    tenant = next(line for line in lines if line.strip().startswith("owner.tenant"))
    # The root carries the tenant (1 of the gateway's 7 spans); the rest are repaired.
    assert tenant.split() == ["owner.tenant", "14.3%->100%", "drop", "gap,", "repaired",
                              "0%->100%", "drop", "gap,", "repaired"]
    verdict = next(line for line in lines if line.strip().startswith("support-answer") and "LLM" not in line
                   and "$" not in line)
    assert verdict.split()[:4] == ["support-answer", "4", "PASS", "FAIL"]
    costs = [Decimal(m) for m in re.findall(r" cost\.usd=([0-9.e-]+)", text)]
    assert len(costs) == 4
    spend = next(line for line in lines if line.strip().startswith("total $"))
    assert spend.split()[1] == f"${float(sum(costs)):,.6f};"
    assert spend.endswith("would have been unknown without repair 100%")


def test_an_absurd_cost_usd_is_summed_not_a_failed_batch():
    # cost.usd * 10^12 overflows a double past ~1.8e296: the envelope must still count the batch.
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from costctx.pdata import TraceBatch
    from tests.support.processors import standalone_processor

    processor = standalone_processor("envelope")
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for cost in (1e300, 0.25):
        spans.add(name="call").attributes.add(key="cost.usd").value.double_value = cost
    processor.process(TraceBatch(request))
    [row] = processor.context.survival.snapshot_all().spend.values()
    assert (row.total, row.spans) == (int(1e300) * 10**12 + 250_000_000_000, 2)
