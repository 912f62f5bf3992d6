"""Re-measure issue 16's figures for items 1, 3, 5, 6, 7 and 8 against real sidecars.

    python bench/adversarial.py [--redis redis://127.0.0.1:6379/0] [--skip-kill]

Prints one line per figure. Uses only the sidecar's public surface (OTLP, the budget API,
/metrics) plus the `inherit` processor driven in process for the flood figures, so the same
script measures an older tree too (PYTHONPATH=<tree>/sidecar:<tree>).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from costctx.cli.sink import OtlpSink
from costctx.client.budget import BudgetClient
from tests.support.budget import budget_section
from tests.support.sidecar import sidecar_config, start_sidecar

MiB = 1024 * 1024
DAY = 86400.0
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def span_request(*, cost: float, workflow_id: str, tenant: str, end: float, reservation_id: str = "",
                 ids: tuple[bytes, bytes] | None = None, cost_key: str = "cost.usd") -> bytes:
    request = trace_service_pb2.ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id = ids or (uuid.uuid4().bytes, uuid.uuid4().bytes[:8])
    span.name = "chat gpt-4o"
    span.start_time_unix_nano, span.end_time_unix_nano = int((end - 1) * 1e9), int(end * 1e9)
    strings = {"workflow.id": workflow_id, "owner.tenant": tenant, "gen_ai.request.model": "gpt-4o"}
    if reservation_id:
        strings["budget.reservation_id"] = reservation_id
    for key, value in strings.items():
        kv = span.attributes.add()
        kv.key, kv.value.string_value = key, value
    kv = span.attributes.add()
    kv.key, kv.value.double_value = cost_key, cost
    for key, count in (("gen_ai.usage.input_tokens", 100), ("gen_ai.usage.output_tokens", 50)):
        kv = span.attributes.add()
        kv.key, kv.value.int_value = key, count
    return request.SerializeToString()


class BudgetSidecar:
    def __init__(self, sink: OtlpSink, backend: str, redis_url: str | None, policies: list[dict],
                 processors: tuple[str, ...] = ("budget",)) -> None:
        config = sidecar_config(sink.grpc_port, processors=list(processors))
        config["processors"]["budget"] = budget_section(backend, redis_url, policies)
        self.sink = sink
        self.runner = start_sidecar(config)
        target = f"127.0.0.1:{self.runner.sidecar.grpc_port}"
        self.client = BudgetClient(target)
        self.channel = grpc.insecure_channel(target)
        self.export = trace_service_pb2_grpc.TraceServiceStub(self.channel).Export

    def send(self, payload: bytes) -> None:
        before = self.sink.span_count()
        self.export(trace_service_pb2.ExportTraceServiceRequest.FromString(payload), timeout=5)
        self.sink.wait_for_spans(before + 1, timeout=10)

    def day_spent(self, tenant: str) -> float:
        response = self.client.check(tenant=tenant, policy_id="p", dry_run=True).response
        return next(u.spent for u in response.usages if u.dimension == "tenant.day_usd")

    def close(self) -> None:
        self.channel.close()
        self.client.close()
        self.runner.stop()


def budget_figures(backend: str, redis_url: str | None) -> None:
    with OtlpSink() as sink:
        # Item 1: $3/day, $0.10 calls whose spans are stamped 1-4 days away.
        rig = BudgetSidecar(sink, backend, redis_url, [{"id": "p", "tenant": {"day_usd": 3.0}}])
        who, admitted = f"t-{uuid.uuid4().hex[:8]}", 0
        for i in range(120):
            decision = rig.client.check(tenant=who, workflow_id=f"wf-{i}", policy_id="p", estimated_cost_usd=0.10)
            if decision.allowed:
                admitted += 1
                days = (1 + i % 4) * (-1 if i % 2 else 1)
                rig.send(span_request(cost=0.10, workflow_id=f"wf-{i}", tenant=who, end=time.time() + days * DAY,
                                      reservation_id=decision.reservation_id))
        print(f"[{backend}] item 1: skewed timestamps: {admitted}/120 calls admitted at $0.10 "
              f"(ceiling $3.00 = 30 calls); today's counter ${rig.day_spent(who):.2f} for ${admitted * 0.10:.2f} spent")
        rig.close()

        # Item 7: release someone else's reservation.
        rig = BudgetSidecar(sink, backend, redis_url, [{"id": "p", "tenant": {"day_usd": 1.0}}])
        victim = f"t-{uuid.uuid4().hex[:8]}"
        held = rig.client.check(tenant=victim, workflow_id="wf-v", policy_id="p", estimated_cost_usd=0.90)
        rig.send(span_request(cost=0.01, workflow_id="wf-a", tenant="attacker", end=time.time(),
                              reservation_id=held.reservation_id))
        again = rig.client.check(tenant=victim, workflow_id="wf-v2", policy_id="p", estimated_cost_usd=0.90)
        print(f"[{backend}] item 7: second $0.90 on a $1 limit after a foreign span named the first "
              f"reservation: {again.decision}")
        rig.close()

        # Item 7: squat the victim's span id with a $0.000001 copy.
        rig = BudgetSidecar(sink, backend, redis_url, [{"id": "p", "tenant": {"day_usd": 10.0}}])
        victim, ids = f"t-{uuid.uuid4().hex[:8]}", (uuid.uuid4().bytes, uuid.uuid4().bytes[:8])
        rig.send(span_request(cost=0.000001, workflow_id="wf-v", tenant=victim, end=time.time(), ids=ids))
        rig.send(span_request(cost=0.50, workflow_id="wf-v", tenant=victim, end=time.time(), ids=ids))
        print(f"[{backend}] item 7: victim's $0.50 call behind a squatted span id: committed "
              f"${rig.day_spent(victim):.6f}")
        rig.close()

        # Item 7: one span with a reported cost of $1e9 naming the victim's tenant.
        rig = BudgetSidecar(sink, backend, redis_url, [{"id": "p", "tenant": {"day_usd": 3.0}}],
                            processors=("price", "budget"))
        victim = f"t-{uuid.uuid4().hex[:8]}"
        rig.send(span_request(cost=1e9, workflow_id="wf-x", tenant=victim, end=time.time(),
                              cost_key="gen_ai.usage.cost"))
        after = rig.client.check(tenant=victim, workflow_id="wf-v", policy_id="p", estimated_cost_usd=0.10)
        print(f"[{backend}] item 7: after one $1e9 span naming the victim: victim's day ${rig.day_spent(victim):.6f}, "
              f"next $0.10 call {after.decision}")
        rig.close()

        # Item 8: a tenant holding a newline.
        rig = BudgetSidecar(sink, backend, redis_url, [{"id": "p", "tenant": {"day_usd": 1.0}}])
        try:
            first = rig.client.check(tenant="a\nb", policy_id="p", estimated_cost_usd=0.90)
            released = rig.client.release(first.reservation_id)
            second = rig.client.check(tenant="a\nb", policy_id="p", estimated_cost_usd=0.90)
            outcome = f"Release answered {released}, next $0.90 check {second.decision}"
        except grpc.RpcError as exc:
            outcome = f"refused at the API: {exc.code().name}"
        print(f"[{backend}] item 8: tenant 'a\\nb', $0.90 reserved then released on a $1 limit: {outcome}")
        rig.close()


def flood_figures() -> None:
    from tests.processors.inherit.test_inherit_bounds import CONTEXT, attrs, batch, make, names

    processor, _, _ = make(hold={"max_spans": 20_000})
    processor.process(batch([(t, 1000 + t, t, {}) for t in range(1, 801)], service="checkout"))
    for start in range(0, 20_000, 2_000):
        processor.process(batch([(10**6 + i, 10**7 + i, 10**8 + i, {}) for i in range(start, start + 2_000)],
                                service="noisy"))
    out = processor.process(batch([(t, t, None, CONTEXT) for t in range(1, 801)], service="checkout"))
    kept = sum(1 for n in names(out) if int(n[1:]) > 1000 and attrs(out, n).get("workflow.id") == "wf")
    print(f"item 5: 20,000 orphans from another service: {kept}/800 held children repaired when their parents came")

    processor, _, _ = make(cache={"max_entries": 50_000})
    processor.process(batch([(t, t, None, CONTEXT) for t in range(1, 801)], service="checkout"))
    for start in range(0, 50_000, 5_000):
        processor.process(batch([(10**6 + i, 10**7 + i, None, {}) for i in range(start, start + 5_000)],
                                service="noisy"))
    out = processor.process(batch([(t, 1000 + t, t, {}) for t in range(1, 801)], service="checkout"))
    kept = sum(1 for n in names(out) if attrs(out, n).get("workflow.id") == "wf")
    print(f"item 5: 50,000 junk spans from another service: {kept}/800 late children repaired on arrival")


def split_figures() -> None:
    from tests.support.otlp import grpc_call
    from tests.support.otlp_client import trace_request

    for exporter in ("otlp", "otlphttp"):
        with OtlpSink(http_port=0, max_request_bytes=4 * MiB) as sink:
            config = sidecar_config(sink.grpc_port, processors=[], exporter=exporter, sink_http_port=sink.http_port,
                                    receivers={"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0",
                                                                               "max_recv_msg_size_mib": 64}}}})
            runner = start_sidecar(config)
            for prefix, count, pad in (("six", 100, 60_000), ("twenty", 400, 50_000)):
                names = [f"{prefix}-{i}" for i in range(count)]
                request = trace_service_pb2.ExportTraceServiceRequest.FromString(trace_request(names))
                rng = random.Random(count)
                for span in request.resource_spans[0].scope_spans[0].spans:
                    kv = span.attributes.add()
                    kv.key, kv.value.string_value = "pad", rng.randbytes(pad // 2).hex()
                payload = request.SerializeToString()
                before = sink.span_count()
                _, error = grpc_call(runner.sidecar.grpc_port, EXPORT, payload, timeout=120)
                sink.wait_for_spans(before + count, timeout=120)
                got = sink.span_count() - before
                print(f"item 6: {exporter} to a 4 MiB downstream: {len(payload) / 1e6:.1f} MB request "
                      f"{'acknowledged' if error is None else error.code().name}, {got}/{count} spans delivered")
            runner.stop()


def kill_figures() -> None:
    from tests.processors.inherit.test_inherit_durable import ChildStreamer
    from tests.support.process import SidecarProcess, with_fixed_ports

    with OtlpSink() as sink, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        config = with_fixed_ports(sidecar_config(
            sink.grpc_port, processors=["inherit"], processor_config={"inherit": {"wait_duration": "3s"}},
            exporters={"otlp": {"sending_queue": {"storage": {"directory": str(workdir / "q"), "fsync": "always"}}}},
        ))
        processes = [SidecarProcess(config, workdir).start()]
        streamer = ChildStreamer(processes[0].grpc_target).start()
        for _ in range(2):
            time.sleep(2.0)
            processes[-1].kill()
            processes.append(SidecarProcess(config, workdir).start())
        time.sleep(1.0)
        acked = streamer.stop()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not acked <= {s.name for s in sink.spans()}:
            time.sleep(0.2)
        received = Counter(s.name for s in sink.spans())
        lost = len(acked - set(received))
        duplicates = sum(received.values()) - len(received)
        print(f"item 3: inherit + persistent queue, kill -9 twice: {len(acked)} acknowledged held children, "
              f"{len(acked) - lost} delivered, {lost} lost, {duplicates} duplicates")
        for process in processes:
            process.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", default=None)
    parser.add_argument("--skip-kill", action="store_true")
    args = parser.parse_args()
    import costctx

    print(f"costctx from {Path(costctx.__file__).parent}")
    budget_figures("memory", None)
    if args.redis:
        budget_figures("redis", args.redis)
    flood_figures()
    split_figures()
    if not args.skip_kill:
        kill_figures()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
