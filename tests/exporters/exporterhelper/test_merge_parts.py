"""A merged request handed to a sender that joins it (`joins_parts`, exporterhelper/parts.py):
the sender gets the queued payloads as Parts, whose join is the merged request; a downstream's
size refusal splits the joined request in halves as before; a sender without the flag, or an
exporter with split limits, gets the joined bytes as before."""

from __future__ import annotations

import asyncio

from costctx.exporters.exporterhelper.errors import TooLargeSendError
from costctx.exporters.exporterhelper.parts import Parts, joined
from costctx.exporters.otlp.config import OtlpGrpcExporterConfig
from costctx.exporters.otlp.exporter import QueuedExporter
from costctx.exporters.otlp.metrics import ExporterMetrics
from costctx.pdata.signals import TRACES, EmptyResponse, count_items
from costctx.telemetry.metrics import SidecarMetrics
from tests.support.otlp_client import trace_request


class FakeSender:
    """Answers every send; refuses as too large any request of more than `max_items` spans."""

    description = "fake"

    def __init__(self, joins_parts: bool, max_items: int | None = None) -> None:
        self.joins_parts = joins_parts
        self.max_items = max_items
        self.got: list[bytes | Parts] = []

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, signal, payload: bytes | Parts):
        self.got.append(payload)
        if self.max_items is not None and count_items(TRACES, TRACES.request_type.FromString(joined(payload))) \
                > self.max_items:
            raise TooLargeSendError("too_large", "RESOURCE_EXHAUSTED: received message larger than max")
        return EmptyResponse(signal)


def _run(sender: FakeSender, bodies: list[bytes], batch: dict) -> ExporterMetrics:
    config = OtlpGrpcExporterConfig.model_validate({
        "endpoint": "127.0.0.1:1", "insecure": True, "compression": "none",
        "sending_queue": {"num_consumers": 1, "batch": batch}})
    metrics = ExporterMetrics(SidecarMetrics())
    exporter = QueuedExporter("otlp", config, metrics, sender=sender)

    async def scenario() -> None:
        await exporter.start()
        for body in bodies:
            exporter.submit(TRACES, body, 2)
            await asyncio.sleep(0)
        assert await exporter.drain(10)
        await exporter.stop()

    asyncio.run(scenario())
    return metrics


def _forwarded(metrics: ExporterMetrics) -> float:
    return metrics.items_forwarded.labels("traces", "otlp")._value.get()


def _names(payload: bytes | Parts) -> list[str]:
    request = TRACES.request_type.FromString(joined(payload))
    return [s.name for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


BODIES = [trace_request([f"a{n}", f"b{n}"]) for n in range(4)]
ALL = [name for body in BODIES for name in _names(body)]


def test_a_sender_that_joins_parts_gets_the_merge_as_parts_whose_join_is_the_request():
    sender = FakeSender(joins_parts=True)
    metrics = _run(sender, BODIES, {"flush_timeout": "10s", "min_size": 8})
    (payload,) = sender.got
    assert isinstance(payload, Parts) and list(payload) == BODIES
    assert payload.size() == len(payload.joined()) == sum(map(len, BODIES))
    assert _names(payload) == ALL and _forwarded(metrics) == 8


def test_a_size_refusal_of_parts_splits_the_joined_request_in_halves():
    sender = FakeSender(joins_parts=True, max_items=4)
    metrics = _run(sender, BODIES, {"flush_timeout": "10s", "min_size": 8})
    assert isinstance(sender.got[0], Parts)
    delivered = [name for payload in sender.got[1:] for name in _names(payload)]
    assert sorted(delivered) == sorted(ALL) and _forwarded(metrics) == 8
    assert metrics.export_splits.labels("traces", "otlp")._value.get() == 1


def test_a_sender_without_the_flag_or_split_limits_get_joined_bytes():
    plain = FakeSender(joins_parts=False)
    _run(plain, BODIES, {"flush_timeout": "10s", "min_size": 8})
    assert [type(p) for p in plain.got] == [bytes] and _names(plain.got[0]) == ALL
    limited = FakeSender(joins_parts=True)
    _run(limited, BODIES, {"flush_timeout": "10s", "min_size": 8, "max_size": 6})
    assert all(type(p) is bytes for p in limited.got)
    assert sorted(n for p in limited.got for n in _names(p)) == sorted(ALL)
