"""SIGTERM: stop accepting, drain within the grace period, keep what could not be sent."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.error
import urllib.request

import grpc
import requests

from costctx.pdata.signals import TRACES
from tests.support.otlp_client import SpanStreamer, trace_request
from tests.support.process import SidecarProcess, with_fixed_ports
from tests.support.sidecar import sidecar_config
from tests.support.wait import wait_until


def acknowledged_at_least(streamer: SpanStreamer, count: int) -> bool:
    """Wait for the client's acknowledgements, not a fixed time a loaded machine may need more of."""
    return wait_until(lambda: len(streamer.ledger.acknowledged) >= count, timeout=60, interval=0.02)


def names_at(sink) -> set[str]:
    return {span.name for span in sink.spans()}


def test_sigterm_drains_everything_acknowledged(sink, tmp_path):
    config = with_fixed_ports(sidecar_config(sink.grpc_port, processors=[], service={"shutdown_grace": "20s"}))
    process = SidecarProcess(config, tmp_path).start()
    try:
        sink.refuse(30)  # a short stall, so a backlog is queued when the signal comes
        streamer = SpanStreamer(process.grpc_target, "term", batch_size=20, interval=0.005).start()
        assert acknowledged_at_least(streamer, 200)
        assert process.terminate(timeout=40) == 0
        acked = streamer.stop().acknowledged
        assert len(acked) > 100
        # Exit comes after the drain: everything acknowledged is already at the sink.
        assert names_at(sink) >= acked
        assert "still pending" not in process.log()
    finally:
        process.close()


def test_sigterm_keeps_what_could_not_be_sent_on_disk(sink, tmp_path):
    config = with_fixed_ports(sidecar_config(
        sink.grpc_port,
        processors=[],
        # Retries that would outlast any test: only the grace period can end the drain.
        exporters={"otlp": {"sending_queue": {"storage": {"directory": str(tmp_path / "queue")}},
                            "retry_on_failure": {"max_elapsed_time": "1h"}}},
        service={"shutdown_grace": "1s"},
    ))
    process = SidecarProcess(config, tmp_path).start()
    restarted = None
    try:
        sink.refuse(1_000_000)  # the downstream stays down through the shutdown
        streamer = SpanStreamer(process.grpc_target, "keep", batch_size=20, interval=0.005).start()
        assert acknowledged_at_least(streamer, 200)
        # The grace period bounds the shutdown: it ends although every send is still being retried
        # (the deadline is for a loaded machine; a stopwatch under 10 s failed on one in CI).
        assert process.terminate(timeout=60) == 0
        acked = streamer.stop().acknowledged
        assert len(acked) > 100 and not names_at(sink)
        assert "stay in" in process.log()

        sink.refuse(0)
        restarted = SidecarProcess(config, tmp_path).start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not names_at(sink) >= acked:
            time.sleep(0.1)
        assert names_at(sink) >= acked
    finally:
        process.close()
        if restarted is not None:
            restarted.close()


def test_memory_queue_counts_what_shutdown_could_not_send(make_sidecar, sink):
    runner = make_sidecar(processors=[])
    sidecar = runner.sidecar
    sink.refuse(1_000_000)
    streamer = SpanStreamer(f"127.0.0.1:{sidecar.grpc_port}", "lost", batch_size=10, interval=0.01).start()
    assert acknowledged_at_least(streamer, 50)
    acked = streamer.stop().acknowledged
    asyncio.run_coroutine_threadsafe(sidecar.stop(0.5), runner.loop).result(15)
    runner.sidecar = None  # stopped: the fixture only stops its loop
    registry = sidecar.metrics.registry
    # Without a persistent queue nothing survives the process, but nothing goes unaccounted.
    labels = {"signal": "traces", "exporter": "otlp"}
    failed = registry.get_sample_value("costctx_exporter_send_failed_items_total", labels)
    shutdown = registry.get_sample_value(
        "costctx_exporter_send_failed_batches_total", {**labels, "reason": "shutdown"}
    )
    # No processor merges requests: each acknowledged request of 10 spans is one failed batch.
    assert len(acked) >= 50 and failed == len(acked) and shutdown == len(acked) // 10


ACCEPTED, REFUSED, UNKNOWN = "accepted", "refused", "unknown"
# A probe's own deadline: a loaded machine may answer slowly, and a probe that timed out is
# neither acknowledged nor refused (it says nothing either way).
PROBE_TIMEOUT = 10


def _readyz(process: SidecarProcess) -> int | None:
    try:
        with urllib.request.urlopen(process.admin_url + "/readyz", timeout=PROBE_TIMEOUT) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None  # the admin port is closed


class LateProbes:
    """Requests sent after the signal, each named apart: one the receiver acknowledged must arrive,
    one it refused must not; one that ended otherwise (a deadline, a cancel as the server closed)
    was neither, and may or may not have got in."""

    def __init__(self, process: SidecarProcess, http_port: int) -> None:
        self.process, self.http_port = process, http_port
        self.outcomes: dict[str, set[str]] = {ACCEPTED: set(), REFUSED: set(), UNKNOWN: set()}

    @property
    def accepted(self) -> set[str]:
        return self.outcomes[ACCEPTED]

    @property
    def refused(self) -> set[str]:
        return self.outcomes[REFUSED]

    def _name(self, protocol: str) -> str:
        return f"late-{protocol}-{sum(len(names) for names in self.outcomes.values())}"

    def both_refused(self) -> bool:
        return self.grpc_refused() and self.http_refused()

    def grpc_refused(self) -> bool:
        name = self._name("grpc")
        outcome = _grpc_probe(self.process, name)
        self.outcomes[outcome].add(name)
        return outcome == REFUSED

    def http_refused(self) -> bool:
        name = self._name("http")
        outcome = _http_probe(self.http_port, name)
        self.outcomes[outcome].add(name)
        return outcome == REFUSED


def _grpc_probe(process: SidecarProcess, name: str) -> str:
    with grpc.insecure_channel(process.grpc_target) as channel:
        try:
            channel.unary_unary(TRACES.grpc_method)(trace_request([name]), timeout=PROBE_TIMEOUT)
        except grpc.RpcError as exc:
            return REFUSED if exc.code() == grpc.StatusCode.UNAVAILABLE else UNKNOWN
    return ACCEPTED


def _http_probe(port: int, name: str) -> str:
    try:
        response = requests.post(f"http://127.0.0.1:{port}/v1/traces", data=trace_request([name]),
                                 timeout=PROBE_TIMEOUT, headers={"Content-Type": "application/x-protobuf"})
    except requests.ConnectionError:
        return REFUSED
    except requests.Timeout:
        return UNKNOWN
    return ACCEPTED if response.ok else UNKNOWN


def test_sigterm_turns_readiness_false_and_closes_the_receivers_while_it_drains(sink, tmp_path):
    """README (graceful shutdown): on SIGTERM readiness goes false and the receivers stop
    accepting; the drain then runs (here held open by a refusing downstream) and ends the process."""
    # Retries outlast the test's waits: "queued" must not be given up on while the probes run.
    config = with_fixed_ports(sidecar_config(sink.grpc_port, processors=[], service={"shutdown_grace": "60s"},
                                             exporters={"otlp": {"retry_on_failure": {"max_elapsed_time": "1h"}}}))
    process = SidecarProcess(config, tmp_path).start()
    http_port = int(config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].rsplit(":", 1)[1])
    try:
        assert _readyz(process) == 200
        assert _grpc_probe(process, "early-grpc") == ACCEPTED and _http_probe(http_port, "early-http") == ACCEPTED
        sink.refuse(1_000_000)
        with grpc.insecure_channel(process.grpc_target) as channel:
            channel.unary_unary(TRACES.grpc_method)(trace_request(["queued"]), timeout=PROBE_TIMEOUT)  # acknowledged
        process.proc.send_signal(signal.SIGTERM)
        assert wait_until(lambda: _readyz(process) == 503, timeout=60), process.log()
        late = LateProbes(process, http_port)
        assert wait_until(late.both_refused, timeout=60)
        assert process.proc.poll() is None and _readyz(process) == 503  # draining, still observable
        sink.refuse(0)
        assert process.proc.wait(60) == 0
        # What was acknowledged arrived, even a request the closing receivers still took; what they
        # refused never got in.
        arrived = names_at(sink)
        assert {"early-grpc", "early-http", "queued"} | late.accepted <= arrived
        assert late.refused and not late.refused & arrived
    finally:
        process.close()
