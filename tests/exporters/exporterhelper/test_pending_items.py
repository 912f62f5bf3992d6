"""The queue's waiting consumers: one batch wakes one consumer, and no batch waits for a wake-up."""

from __future__ import annotations

import asyncio

from costctx.exporters.exporterhelper.queue import PendingItems, QueueItem
from costctx.pdata.signals import TRACES


class CountingLoop(asyncio.SelectorEventLoop):
    """Counts the callbacks scheduled with call_soon: each wakes a task (or resolves a future)."""

    scheduled = 0

    def call_soon(self, callback, *args, context=None):
        self.scheduled += 1
        return super().call_soon(callback, *args, context=context)


def item(n: int) -> QueueItem:
    return QueueItem(TRACES, b"batch %d" % n, 1)


def run(coro_fn):
    loop = CountingLoop()
    try:
        return loop.run_until_complete(coro_fn(loop))
    finally:
        loop.close()


def test_one_batch_wakes_one_of_ten_idle_consumers():
    async def scenario(loop: CountingLoop) -> tuple[int, int]:
        pending = PendingItems()
        consumers = [asyncio.create_task(pending.take()) for _ in range(10)]
        await asyncio.sleep(0.01)  # all ten waiting
        before = loop.scheduled
        pending.append(item(1))
        await asyncio.sleep(0.01)
        woken = loop.scheduled - before
        done = sum(c.done() for c in consumers)
        for c in consumers:
            c.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
        return woken, done

    woken, done = run(scenario)
    assert done == 1
    # The woken consumer's future, its task's step, the sleep's timer; ten consumers woken
    # by one shared event scheduled over ten.
    assert woken <= 4


def test_every_item_is_taken_once_in_order_by_busy_and_idle_consumers():
    async def scenario(loop: CountingLoop) -> list[bytes]:
        pending = PendingItems()
        taken: list[bytes] = []

        async def consumer() -> None:
            while True:
                taken.append((await pending.take()).payload)
                await asyncio.sleep(0)  # "sending"

        tasks = [asyncio.create_task(consumer()) for _ in range(3)]
        for n in range(5):  # before any consumer waited
            pending.append(item(n))
        await asyncio.sleep(0.01)
        for n in range(5, 20):  # while they wait, some in bursts
            pending.append(item(n))
            if n % 4 == 0:
                await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return taken

    assert run(scenario) == [b"batch %d" % n for n in range(20)]


def test_a_consumer_cancelled_after_its_wake_up_passes_the_item_on():
    async def scenario(loop: CountingLoop) -> bytes:
        pending = PendingItems()
        first = asyncio.create_task(pending.take())
        second = asyncio.create_task(pending.take())
        await asyncio.sleep(0.01)
        pending.append(item(7))  # wakes `first`...
        first.cancel()  # ...which is cancelled before it runs
        return (await asyncio.wait_for(second, 30)).payload

    assert run(scenario) == b"batch 7"


def test_a_timed_take_returns_none_and_an_item_after_it_is_still_taken():
    async def scenario(loop: CountingLoop) -> tuple[object, bytes]:
        pending = PendingItems()
        nothing = await pending.take(timeout=0.01)
        pending.append(item(3))  # no waiter left behind by the timed take
        return nothing, (await asyncio.wait_for(pending.take(), 30)).payload

    assert run(scenario) == (None, b"batch 3")


def test_wait_for_wakes_once_when_enough_is_queued_and_takes_nothing():
    async def scenario(loop: CountingLoop) -> tuple[list[bool], int, int]:
        pending = PendingItems()
        waiting = asyncio.create_task(pending.wait_for(5, lambda queued: queued.items, timeout=10))
        await asyncio.sleep(0.01)
        done_after: list[bool] = []
        before = loop.scheduled
        for n in range(5):
            pending.append(item(n))
            await asyncio.sleep(0)
            done_after.append(waiting.done())
        await asyncio.wait_for(waiting, 2)
        # Five sleep(0)s schedule five steps; the four appends before the fifth wake nothing.
        return done_after, loop.scheduled - before, len(pending)

    done_after, scheduled, queued = run(scenario)
    assert done_after[:4] == [False] * 4
    assert scheduled <= 5 + 3
    assert queued == 5


def test_wait_for_returns_at_its_timeout_and_leaves_no_watch():
    async def scenario(loop: CountingLoop) -> tuple[float, int]:
        pending = PendingItems()
        started = loop.time()
        await pending.wait_for(3, lambda queued: queued.items, timeout=0.05)
        waited = loop.time() - started
        pending.append(item(1))  # no watch left to feed
        return waited, pending.take_nowait().items

    waited, items = run(scenario)
    assert waited >= 0.04
    assert items == 1


def test_a_merging_consumer_is_not_woken_by_every_request():
    """The exporter's merge (flush_timeout, min_size) gathers many queued requests with a
    wake-up or two, not one per request (each armed and cancelled a timer as well)."""
    from costctx.exporters.otlp.config import OtlpGrpcExporterConfig
    from costctx.exporters.otlp.exporter import QueuedExporter
    from costctx.exporters.otlp.metrics import ExporterMetrics
    from costctx.telemetry.metrics import SidecarMetrics

    class Answering:
        description = "nowhere"
        sent: list[int] = []

        async def start(self) -> None: ...

        async def send(self, signal, payload):
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

            self.sent.append(len(payload))
            return ExportTraceServiceResponse()

        async def close(self) -> None: ...

    config = OtlpGrpcExporterConfig.model_validate({
        "endpoint": "127.0.0.1:1", "insecure": True,
        "sending_queue": {"num_consumers": 2, "batch": {"flush_timeout": "10s", "min_size": 40}}})

    async def scenario(loop: CountingLoop) -> tuple[int, list[int]]:
        sender = Answering()
        exporter = QueuedExporter("otlp", config, ExporterMetrics(SidecarMetrics()), sender=sender)
        await exporter.start()
        exporter.submit(TRACES, b"x" * 10, 1)  # the first: a merge starts gathering
        await asyncio.sleep(0.01)
        before = loop.scheduled
        for _ in range(39):  # one per loop iteration, as requests arrive over gRPC
            exporter.submit(TRACES, b"y" * 10, 1)
            await asyncio.sleep(0)
        await asyncio.wait_for(exporter.drain(5), 5)
        scheduled = loop.scheduled - before
        await exporter.stop()
        return scheduled, sender.sent

    scheduled, sent = run(scenario)
    assert sent == [400]  # all 40 in one request, at min_size, long before the flush timeout
    # 39 steps of this task's own; the gatherer woke once (not 39 times), then the send and
    # the drain's waits.
    assert scheduled < 39 + 15


def test_a_persistent_queue_counts_stored_bytes_while_the_payloads_are_on_disk(tmp_path):
    """Its queued items' payloads are on disk (b"" in memory): a merge by bytes counts what was stored."""
    from costctx.exporters.exporterhelper.persistent_queue import PersistentQueue

    async def scenario(loop: CountingLoop) -> tuple[bool, bool, bytes]:
        queue = PersistentQueue(tmp_path, "otlp", capacity=10, max_bytes=1 << 20, fsync="never")
        try:
            waiting = asyncio.create_task(queue.wait_for(25, by_bytes=True, timeout=10))
            await asyncio.sleep(0.01)
            queue.put(QueueItem(TRACES, b"x" * 10, 1))
            queue.put(QueueItem(TRACES, b"y" * 10, 1))
            await asyncio.sleep(0.01)
            after_twenty = waiting.done()
            queue.put(QueueItem(TRACES, b"z" * 10, 1))
            await asyncio.wait_for(waiting, 2)
            taken = queue.get_nowait()
            return after_twenty, waiting.done(), taken.payload
        finally:
            queue.close()

    after_twenty, done, payload = run(scenario)
    assert not after_twenty and done
    assert payload == b"x" * 10  # read back from disk
