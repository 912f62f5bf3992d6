"""The exporter's large copies leave the event loop's thread: the gRPC send runs on a worker
thread (grpc's blocking client releases the GIL while it copies and writes the request), and a
merged request of 1 MiB or more is joined on one (CPython joins that much without the GIL).
What arrives, and the OTLP retry rules, are unchanged (the exporter tests around this one)."""

from __future__ import annotations

import asyncio
import threading

from costctx.exporters.otlp.config import OtlpGrpcExporterConfig
from costctx.exporters.otlp.exporter import JOIN_OFF_LOOP, QueuedExporter
from costctx.exporters.otlp.grpc_sender import GrpcSender
from costctx.exporters.otlp.metrics import ExporterMetrics
from costctx.pdata.signals import TRACES, count_items
from costctx.telemetry.metrics import SidecarMetrics
from tests.support.otlp_client import trace_request
from tests.support.sink import PatientSink


def _config(port: int, batch: dict | None = None) -> OtlpGrpcExporterConfig:
    queue = {"num_consumers": 2} | ({"batch": batch} if batch else {})
    return OtlpGrpcExporterConfig.model_validate({"endpoint": f"127.0.0.1:{port}", "insecure": True,
                                                   "compression": "none", "sending_queue": queue})


def test_the_grpc_send_runs_off_the_event_loop_thread():
    with PatientSink() as sink:
        sender = GrpcSender(_config(sink.grpc_port))
        threads: list[int] = []
        real_call = sender._call

        def recording_call(signal):
            call = real_call(signal)

            def called(*args, **kwargs):
                threads.append(threading.get_ident())
                return call(*args, **kwargs)

            return called

        sender._call = recording_call

        async def send() -> tuple[int, object]:
            await sender.start()
            try:
                response = await sender.send(TRACES, trace_request(["a", "b", "c"]))
            finally:
                await sender.close()
            return threading.get_ident(), response

        loop_thread, response = asyncio.run(send())
        assert sink.wait_for_spans(3, timeout=10)
        assert not response.HasField("partial_success")
        assert threads and loop_thread not in threads


class RecordingLoop(asyncio.SelectorEventLoop):
    """Records what is handed to run_in_executor."""

    def __init__(self) -> None:
        super().__init__()
        self.handed: list[object] = []

    def run_in_executor(self, executor, func, *args):
        self.handed.append(func)
        return super().run_in_executor(executor, func, *args)


def test_a_merged_request_of_a_mebibyte_is_joined_off_the_loop_and_arrives_whole():
    pad = JOIN_OFF_LOOP // 8
    with PatientSink() as sink:
        exporter = QueuedExporter("otlp", _config(sink.grpc_port, {"flush_timeout": "10s", "min_size": 10}),
                                  ExporterMetrics(SidecarMetrics()))
        bodies = [trace_request([f"s{n}"], pad=pad) for n in range(10)]
        assert sum(map(len, bodies)) >= JOIN_OFF_LOOP

        async def scenario() -> None:
            await exporter.start()
            for body in bodies:
                exporter.submit(TRACES, body, 1)
                await asyncio.sleep(0)
            assert await exporter.drain(10)
            await exporter.stop()

        loop = RecordingLoop()
        try:
            loop.run_until_complete(scenario())
        finally:
            loop.close()
        assert sink.wait_for_spans(10, timeout=10)
        assert [count_items(TRACES, r) for r in sink.requests["traces"]] == [10]  # one merged request
        assert sorted(s.name for s in sink.spans()) == [f"s{n}" for n in range(10)]
        assert b"".join in loop.handed
