"""The exporter's large copies leave the event loop's thread: a large request is sent from a
worker thread (grpc's blocking client releases the GIL while it copies and writes it), and a
merged request of 1 MiB or more is joined on one (CPython joins that much without the GIL).
What arrives, and the OTLP retry rules, are unchanged (the exporter tests around this one)."""

from __future__ import annotations

import asyncio
import threading

from costctx.exporters.otlp.config import OtlpGrpcExporterConfig
from costctx.exporters.otlp.exporter import JOIN_OFF_LOOP, QueuedExporter
from costctx.exporters.otlp.grpc_sender import OFF_LOOP_BYTES, GrpcSender
from costctx.exporters.otlp.metrics import ExporterMetrics
from costctx.pdata.signals import TRACES, count_items
from costctx.telemetry.metrics import SidecarMetrics
from tests.support.otlp_client import trace_request
from tests.support.sink import PatientSink


def _config(port: int, batch: dict | None = None) -> OtlpGrpcExporterConfig:
    queue = {"num_consumers": 2} | ({"batch": batch} if batch else {})
    return OtlpGrpcExporterConfig.model_validate({"endpoint": f"127.0.0.1:{port}", "insecure": True,
                                                   "compression": "none", "sending_queue": queue})


def _recording(sender: GrpcSender, name: str, threads: list[tuple[str, int]]) -> None:
    """Record, per call made through `sender.<name>`, the thread the call was made on."""
    real = getattr(sender, name)

    def recording_call(signal):
        call = real(signal)

        def called(*args, **kwargs):
            threads.append((name, threading.get_ident()))
            return call(*args, **kwargs)

        return called

    setattr(sender, name, recording_call)


def test_a_large_request_is_sent_off_the_event_loop_thread_and_a_small_one_on_it():
    large = trace_request(["big"], pad=OFF_LOOP_BYTES)
    small = trace_request(["a", "b", "c"])
    assert len(large) >= OFF_LOOP_BYTES > len(small)
    with PatientSink() as sink:
        sender = GrpcSender(_config(sink.grpc_port))
        threads: list[tuple[str, int]] = []
        _recording(sender, "_call", threads)
        _recording(sender, "_blocking_call", threads)

        async def send() -> tuple[int, list]:
            await sender.start()
            try:
                responses = [await sender.send(TRACES, large), await sender.send(TRACES, small)]
            finally:
                await sender.close()
            return threading.get_ident(), responses

        loop_thread, responses = asyncio.run(send())
        assert sink.wait_for_spans(4, timeout=10)
        assert sorted(s.name for s in sink.spans()) == ["a", "b", "big", "c"]
        assert not any(r.HasField("partial_success") for r in responses)
        (large_via, large_thread), (small_via, small_thread) = threads
        assert large_via == "_blocking_call" and large_thread != loop_thread
        assert small_via == "_call" and small_thread == loop_thread


def test_a_large_request_refused_is_classified_by_the_otlp_retry_rules():
    """From the blocking client as from grpc.aio's: nothing listening is UNAVAILABLE, retryable."""
    from costctx.exporters.exporterhelper.errors import RetryableSendError
    from tests.support.process import free_port

    sender = GrpcSender(_config(free_port()))

    async def send() -> None:
        await sender.start()
        try:
            await sender.send(TRACES, trace_request(["big"], pad=OFF_LOOP_BYTES))
        finally:
            await sender.close()

    try:
        asyncio.run(send())
    except RetryableSendError as refused:
        assert refused.reason == "unavailable"
    else:
        raise AssertionError("a send to a closed port succeeded")


class RecordingLoop(asyncio.SelectorEventLoop):
    """Records what is handed to run_in_executor."""

    def __init__(self) -> None:
        super().__init__()
        self.handed: list[object] = []

    def run_in_executor(self, executor, func, *args):
        self.handed.append(func)
        return super().run_in_executor(executor, func, *args)


def test_a_merged_request_of_a_mebibyte_is_joined_on_the_sending_thread_and_arrives_whole():
    """One hand-over to a worker thread per merged send, which joins and sends: not a join on
    one thread and the send on another (bench/send_cost.py: ~190 us less of the loop's CPU)."""
    pad = JOIN_OFF_LOOP // 8
    with PatientSink() as sink:
        exporter = QueuedExporter("otlp", _config(sink.grpc_port, {"flush_timeout": "10s", "min_size": 10}),
                                  ExporterMetrics(SidecarMetrics()))
        sent: list[tuple[int, object]] = []
        real = exporter.sender._blocking_call

        def recording_call(signal):
            call = real(signal)

            def called(payload, **kwargs):
                sent.append((threading.get_ident(), payload))
                return call(payload, **kwargs)

            return called

        exporter.sender._blocking_call = recording_call
        bodies = [trace_request([f"s{n}"], pad=pad) for n in range(10)]
        assert sum(map(len, bodies)) >= JOIN_OFF_LOOP

        async def scenario() -> int:
            await exporter.start()
            for body in bodies:
                exporter.submit(TRACES, body, 1)
                await asyncio.sleep(0)
            assert await exporter.drain(10)
            await exporter.stop()
            return threading.get_ident()

        loop = RecordingLoop()
        try:
            loop_thread = loop.run_until_complete(scenario())
        finally:
            loop.close()
        assert sink.wait_for_spans(10, timeout=10)
        assert [count_items(TRACES, r) for r in sink.requests["traces"]] == [10]  # one merged request
        assert sorted(s.name for s in sink.spans()) == [f"s{n}" for n in range(10)]
        assert len(loop.handed) == 1 and b"".join not in loop.handed  # one hand-over: join and send
        ((thread, payload),) = sent
        assert thread != loop_thread
        assert type(payload) is bytes and payload == b"".join(bodies)
