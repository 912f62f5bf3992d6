"""Acknowledged spans held by `inherit` survive kill -9 when the queue is persistent (issue 16
item 3). Real `costctx run` processes, a real gRPC client keeping books of what was acknowledged,
two SIGKILLs mid-stream: every acknowledged span reaches the sink, duplicates bounded by what
was restored or resent. (Before: held spans lived only in memory: 18 of 1,200 lost.)"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import Counter

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.support.process import SidecarProcess, with_fixed_ports
from tests.support.sidecar import sidecar_config
from tests.support.wait import wait_until

RECONNECT_FAST = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                  ("grpc.max_reconnect_backoff_ms", 1000)]
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED}


def child_batch(names: list[str]) -> bytes:
    """Spans lacking every context field whose parents never come: `inherit` holds each one."""
    request = trace_service_pb2.ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "worker"
    spans = rs.scope_spans.add().spans
    now = time.time_ns()
    for name in names:
        spans.append(trace_pb2.Span(trace_id=os.urandom(16), span_id=os.urandom(8), parent_span_id=os.urandom(8),
                                    name=name, start_time_unix_nano=now, end_time_unix_nano=now + 1000))
    return request.SerializeToString()


class ChildStreamer:
    """Sends batches of held-to-be children until stopped, retrying each until acknowledged,
    and keeps the names the sidecar acknowledged and how often each was sent. Follows the
    sidecar across restarts (same port)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.acknowledged: set[str] = set()
        # A resend after an error the sidecar answered too late or not at all (its deadline, a
        # kill) is another copy it may have taken: the client's own at-least-once.
        self.sends: Counter[str] = Counter()
        self._stop = threading.Event()
        self._counter = itertools.count()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ChildStreamer:
        self._thread.start()
        return self

    def acknowledged_more(self, count: int) -> bool:
        """Wait until `count` more spans are acknowledged than now (by a sidecar that may be
        starting): a fixed time gets a loaded machine too few."""
        target = len(self.acknowledged) + count
        return wait_until(lambda: len(self.acknowledged) >= target, timeout=60)

    def stop(self) -> set[str]:
        self._stop.set()
        self._thread.join(30)
        return self.acknowledged

    def _run(self) -> None:
        # Back on a restarted sidecar within a second (gRPC's default reconnect backoff grows
        # 1 s, 1.6 s, 2.6 s... while the sidecar is down: a loaded restart left it idle for seconds).
        with grpc.insecure_channel(self.target, options=RECONNECT_FAST) as channel:
            export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                                         request_serializer=None, response_deserializer=None)
            while not self._stop.is_set():
                names = [f"child-{next(self._counter)}" for _ in range(10)]
                payload = child_batch(names)
                while not self._stop.is_set():
                    self.sends.update(names)
                    try:
                        export(payload, timeout=10)
                    except grpc.RpcError as exc:
                        if exc.code() not in RETRYABLE:
                            raise
                        self._stop.wait(0.05)
                        continue
                    self.acknowledged.update(names)
                    break
                self._stop.wait(0.02)


def test_held_spans_survive_two_kill_9_restarts(sink, tmp_path):
    queue_dir = tmp_path / "queue"
    config = with_fixed_ports(sidecar_config(
        sink.grpc_port, processors=["inherit"],
        processor_config={"inherit": {"wait_duration": "3s"}},
        exporters={"otlp": {"sending_queue": {"storage": {"directory": str(queue_dir), "fsync": "always"}}}},
    ))
    processes = [SidecarProcess(config, tmp_path).start()]
    try:
        streamer = ChildStreamer(processes[0].grpc_target).start()
        for _ in range(2):
            time.sleep(2.0)  # children pile up in the hold (3 s wait): many are held at the kill...
            assert streamer.acknowledged_more(100)  # ...by this process, however slow it is
            processes[-1].kill()
            assert (queue_dir / "inherit-hold.sqlite3").exists()
            processes.append(SidecarProcess(config, tmp_path).start())
        assert streamer.acknowledged_more(50)
        acked = streamer.stop()
        assert len(acked) > 200

        def missing() -> set[str]:
            return acked - {s.name for s in sink.spans()}

        assert wait_until(lambda: not missing(), 60), f"{len(missing())} of {len(acked)} acknowledged spans lost"
        received = Counter(s.name for s in sink.spans())
        duplicates = sum(received.values()) - len(received)
        last = processes[-1]
        restored = last.metric("costctx_inherit_restored_spans_total")
        assert restored > 0, "the last restart held again what the kill left"
        assert "holding again" in last.log()
        # At least once: a duplicate is a span released (or queued) just before a kill and
        # restored or resent after it, so a span arrives at most once more per restart than the
        # client sent it (a resend after a missed deadline or a kill is a copy the sidecar may
        # already have taken: a full-suite run under load saw one batch arrive 4 times with 2
        # kills). How many are in flight at a kill depends on the machine's load (2-26% of those
        # acknowledged were seen twice), so the bound is per span, not a share of the stream.
        kills = len(processes) - 1
        over = {name: (count, streamer.sends[name]) for name, count in received.items()
                if count > streamer.sends[name] + kills}
        assert not over, f"(arrived, sent) beyond one copy per restart: {sorted(over.items())[:5]}"
        assert duplicates < len(acked)
    finally:
        for process in processes:
            process.close()
