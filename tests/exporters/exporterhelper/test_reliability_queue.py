"""Lose nothing: a downstream outage, a SIGKILL mid-stream, and the persistent queue's books."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from costctx.cli.sink import OtlpSink
from costctx.exporters.exporterhelper.persistent_queue import PersistentQueue
from costctx.exporters.exporterhelper.queue import QueueItem
from costctx.pdata.signals import TRACES
from costctx.service.config.loader import build_config
from tests.support.otlp_client import SpanStreamer, trace_request
from tests.support.process import SidecarProcess, with_fixed_ports
from tests.support.sidecar import sidecar_config
from tests.support.sink import PatientSink
from tests.support.wait import wait_until


def sink_names(*sinks: OtlpSink) -> Counter:
    return Counter(span.name for sink in sinks for span in sink.spans())


def sample(sidecar, name: str, **labels: str) -> float:
    return sidecar.metrics.registry.get_sample_value(name, labels) or 0.0


def persistent(directory, **storage) -> dict:
    return {"otlp": {"sending_queue": {"storage": {"directory": str(directory), **storage}}}}


# -- the queue on its own ------------------------------------------------------------------
def test_persistent_queue_keeps_unacked_batches_across_reopen(tmp_path):
    queue = PersistentQueue(tmp_path, "otlp", capacity=100, max_bytes=10_000)
    for i in range(3):
        queue.put(QueueItem(TRACES, trace_request([f"s{i}"]), 1))
    assert queue.stored_batches == 3 and len(queue) == 3
    queue.close()

    reopened = PersistentQueue(tmp_path, "otlp", capacity=100, max_bytes=10_000)
    assert [item.recovered for item in reopened.recovered] == [True, True, True]
    assert reopened.stored_batches == 3
    reopened.close()


def test_persistent_queue_is_bounded_in_bytes(tmp_path):
    queue = PersistentQueue(tmp_path, "otlp", capacity=1000, max_bytes=2_000)
    payload = trace_request(["a"], pad=900)
    queue.put(QueueItem(TRACES, payload, 1))
    assert not queue.full()
    queue.put(QueueItem(TRACES, payload, 1))
    assert queue.full() and queue.stored_bytes == 2 * len(payload)

    async def take_and_ack() -> None:
        queue.ack(await queue.get())

    asyncio.run(take_and_ack())
    assert not queue.full() and queue.stored_bytes == len(payload)
    queue.close()
    reopened = PersistentQueue(tmp_path, "otlp", capacity=1000, max_bytes=2_000)
    assert reopened.stored_bytes == len(payload)
    reopened.close()


def test_one_process_per_queue_file(tmp_path):
    queue = PersistentQueue(tmp_path, "otlp", capacity=10, max_bytes=10_000)
    with pytest.raises(OSError, match="in use by another process"):
        PersistentQueue(tmp_path, "otlp", capacity=10, max_bytes=10_000)
    queue.close()
    PersistentQueue(tmp_path, "otlp", capacity=10, max_bytes=10_000).close()


def test_storage_config_is_validated(tmp_path):
    config = build_config(sidecar_config(4317, processors=[], exporters=persistent(tmp_path, fsync="batch")), {})
    assert config.exporters["otlp"].sending_queue.storage.fsync == "batch"
    with pytest.raises(ValueError, match="fsync"):
        build_config(sidecar_config(4317, processors=[], exporters=persistent(tmp_path, fsync="sometimes")), {})


# -- a downstream outage -------------------------------------------------------------------
@pytest.mark.parametrize("queue", ["memory", "persistent"])
def test_every_span_arrives_after_a_sustained_downstream_outage(sink, make_sidecar, tmp_path, queue):
    overrides = persistent(tmp_path / "queue") if queue == "persistent" else {}
    runner = make_sidecar(processors=[], exporters=overrides)
    sidecar = runner.sidecar
    port = sink.grpc_port
    streamer = SpanStreamer(f"127.0.0.1:{sidecar.grpc_port}", "outage", batch_size=20, interval=0.02).start()

    acknowledged = streamer.ledger.acknowledged
    assert wait_until(lambda: len(acknowledged) >= 400, 60)
    sink.stop()  # the collector goes away: connection refused
    before_outage = len(acknowledged)
    # The outage lasts until the exporter has retried and the client has been acknowledged a
    # backlog meanwhile (events, not a fixed time).
    retries = "costctx_exporter_retries_total"
    assert wait_until(lambda: sample(sidecar, retries, exporter="otlp", reason="unavailable") >= 3, 60)
    assert wait_until(lambda: len(acknowledged) >= before_outage + 600, 60)
    during_outage = len(acknowledged) - before_outage
    back = PatientSink(grpc_port=port).start()  # and comes back on the same port
    try:
        assert wait_until(lambda: len(back.spans()) >= 200, 60)
        ledger = streamer.stop()
        acked = ledger.acknowledged
        assert wait_until(lambda: set(sink_names(sink, back)) >= acked, 60), "acknowledged spans missing"
        received = sink_names(sink, back)
        # Counted end to end: the client's ledger, the sidecar's counters and the sink agree.
        assert len(acked) >= before_outage + during_outage >= 1000
        assert set(received) == acked
        # At least once, not exactly once: a batch the collector recorded in the instant it went
        # away gets no answer and is resent. Only batches in flight then (10 consumers x 20
        # spans) can arrive twice; the suite saw this happen once in many runs.
        duplicates = sum(received.values()) - len(acked)
        assert 0 <= duplicates <= 10 * 20
        assert sample(sidecar, "costctx_receiver_accepted_items_total", signal="traces", transport="grpc") == len(acked)
        sent = "costctx_exporter_sent_items_total"
        assert wait_until(lambda: sample(sidecar, sent, signal="traces", exporter="otlp") == len(acked), 60)
        assert sample(sidecar, "costctx_exporter_retries_total", exporter="otlp", reason="unavailable") > 0
        assert sample(sidecar, "costctx_exporter_send_failed_items_total", signal="traces", exporter="otlp") == 0
        assert not ledger.errors
    finally:
        back.stop()


# -- SIGKILL mid-stream --------------------------------------------------------------------
def test_sigkill_mid_stream_loses_no_acknowledged_span(sink, tmp_path):
    queue_dir = tmp_path / "queue"
    config = with_fixed_ports(
        sidecar_config(sink.grpc_port, processors=[], exporters=persistent(queue_dir, fsync="always"))
    )
    process = SidecarProcess(config, tmp_path).start()
    restarted = None
    try:
        streamer = SpanStreamer(process.grpc_target, "kill", batch_size=25, interval=0.01).start()
        acknowledged = streamer.ledger.acknowledged
        assert wait_until(lambda: len(acknowledged) >= 100, 60)
        sink.refuse(10_000)  # the downstream stalls, so a backlog sits in the queue when we kill
        stalled_at = len(acknowledged)
        assert wait_until(lambda: len(acknowledged) >= stalled_at + 150, 60)
        process.kill()  # SIGKILL: no shutdown code runs
        ledger = streamer.stop()
        acked = ledger.acknowledged
        assert len(acked) > 200
        assert queue_dir.joinpath("otlp.sqlite3").exists()

        sink.refuse(0)
        restarted = SidecarProcess(config, tmp_path)
        restarted.start()
        assert wait_until(lambda: set(sink_names(sink)) >= acked, 60), (
            f"{len(acked - set(sink_names(sink)))} acknowledged spans never arrived"
        )
        received = sink_names(sink)
        duplicates = sum(received.values()) - len(received)
        resent = restarted.metric("costctx_exporter_resent_items_total", {"exporter": "otlp"})
        assert resent > 0, "the backlog was resent after the restart"
        # Every duplicate at the sink is accounted for by the resent counter (at least once).
        assert duplicates <= resent
        assert "resending" in restarted.log()
    finally:
        process.close()
        if restarted is not None:
            restarted.close()


def test_a_full_persistent_queue_refuses_retryably_and_loses_nothing(sink, make_sidecar, tmp_path):
    runner = make_sidecar(processors=[], exporters=persistent(tmp_path / "queue", max_bytes=60_000))
    sink.refuse(1_000_000)
    streamer = SpanStreamer(f"127.0.0.1:{runner.sidecar.grpc_port}", "full", batch_size=20, pad=200).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not streamer.ledger.refusals.get("UNAVAILABLE"):
        time.sleep(0.05)
    ledger = streamer.stop()
    assert ledger.refusals.get("UNAVAILABLE"), "a full queue is a retryable refusal"
    assert not ledger.errors
    stored = runner.sidecar.metrics.registry.get_sample_value(
        "costctx_exporter_queue_stored_bytes", {"exporter": "otlp"}
    )
    assert 60_000 <= stored < 60_000 + 20 * 400  # bounded: at most one batch past the limit
    sink.refuse(0)
    assert wait_until(lambda: set(sink_names(sink)) >= ledger.acknowledged, 30)


@pytest.mark.parametrize(("fsync", "synchronous"), [("always", 2), ("batch", 1), ("never", 0)])
def test_each_fsync_mode_sets_the_sqlite_durability_the_readme_names(make_sidecar, tmp_path, fsync, synchronous):
    """README: `always` is SQLite synchronous=FULL (2), `batch` NORMAL (1), `never` OFF (0), all
    in WAL mode; from the config through a running sidecar's exporter to its queue file."""
    runner = make_sidecar(processors=[], exporters=persistent(tmp_path / "queue", fsync=fsync))
    queue = runner.sidecar.exporters["otlp"].queue
    pragma = runner.call(lambda: (queue._db.execute("PRAGMA synchronous").fetchone()[0],
                                  queue._db.execute("PRAGMA journal_mode").fetchone()[0]))
    assert pragma == (synchronous, "wal")
    assert queue.path.parent == tmp_path / "queue"
