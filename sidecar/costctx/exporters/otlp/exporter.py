"""A queued OTLP exporter: consumers take batches off the queue and send them with retries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Protocol

from prometheus_client import Gauge

from costctx.exporters.debug.config import DebugExporterConfig
from costctx.exporters.exporterhelper.backoff import Backoff
from costctx.exporters.exporterhelper.config import RetryConfig
from costctx.exporters.exporterhelper.errors import (
    PermanentSendError,
    RetryableSendError,
    SendError,
    TooLargeSendError,
)
from costctx.exporters.exporterhelper.parts import Parts, joined
from costctx.exporters.exporterhelper.persistent_queue import PersistentQueue
from costctx.exporters.exporterhelper.queue import MemoryQueue, QueueItem
from costctx.exporters.exporterhelper.split import halves, split_to_max
from costctx.exporters.otlp.config import OtlpGrpcExporterConfig, OtlpHttpExporterConfig
from costctx.exporters.otlp.metrics import ExporterMetrics
from costctx.pdata.signals import Signal

if TYPE_CHECKING:
    from google.protobuf.message import Message

log = logging.getLogger("costctx.exporter")

# Merged payloads of at least this many bytes are joined on a worker thread: CPython's
# bytes.join releases the GIL from 1 MiB on (below it the thread would hold the GIL anyway).
JOIN_OFF_LOOP = 1 << 20


class Sender(Protocol):
    description: str

    async def start(self) -> None: ...
    async def send(self, signal: Signal, payload: bytes) -> Message: ...
    async def close(self) -> None: ...


def _by_signal(items: list[QueueItem]) -> list[list[QueueItem]]:
    """Items grouped by signal, each group in queue order, groups in order of first arrival."""
    groups: dict[str, list[QueueItem]] = {}
    for item in items:
        groups.setdefault(item.signal.name, []).append(item)
    return list(groups.values())


def _by_signal_flat(items: list[QueueItem]) -> list[QueueItem]:
    """The items in the order `_consume` sends them."""
    return [item for group in _by_signal(items) for item in group]


def build_sender(config: OtlpGrpcExporterConfig | OtlpHttpExporterConfig | DebugExporterConfig) -> Sender:
    if isinstance(config, DebugExporterConfig):
        from costctx.exporters.debug.sender import DebugSender

        return DebugSender(config)
    if isinstance(config, OtlpGrpcExporterConfig):
        from costctx.exporters.otlp.grpc_sender import GrpcSender

        return GrpcSender(config)
    from costctx.exporters.otlp.http_sender import HttpSender

    return HttpSender(config)


def build_queue(name: str, config: OtlpGrpcExporterConfig | OtlpHttpExporterConfig) -> MemoryQueue | PersistentQueue:
    queue = config.sending_queue
    if queue.storage is None:
        return MemoryQueue(queue.queue_size)
    storage = queue.storage
    return PersistentQueue(storage.directory, name, queue.queue_size, storage.max_bytes, storage.fsync)


class QueuedExporter:
    def __init__(
        self,
        name: str,
        config: OtlpGrpcExporterConfig | OtlpHttpExporterConfig,
        metrics: ExporterMetrics,
        sender: Sender | None = None,
        queue: MemoryQueue | PersistentQueue | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.metrics = metrics
        self.sender = sender or build_sender(config)
        # `is None`, not `or`: a queue given empty has len() 0, and `or` replaced it.
        self.queue = queue if queue is not None else build_queue(name, config)
        self._retry: RetryConfig = config.retry_on_failure
        batch = config.sending_queue.batch
        self._max_items, self._max_bytes = batch.limits() if batch is not None else (None, None)
        self._merge = batch if batch is not None and batch.flush_timeout > 0 else None
        self._gathering = asyncio.Lock()  # one consumer gathers a merged request at a time
        self._gathered = 0  # items taken off the queue into a merge not yet sent: still pending
        self._flush_now = False  # draining: a merge being gathered leaves without waiting
        self._consumers: list[asyncio.Task] = []
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        metrics.queue_capacity.labels(name).set(self.queue.capacity)
        # Set on every submit and send: the series bound on first use (a series appears once it
        # is set), not `.labels()` each time (~2 us).
        self._queue_size: Gauge | None = None
        self._stored_bytes: Gauge | None = None

    # -- admission -------------------------------------------------------------------------
    def has_capacity(self) -> bool:
        return not self.queue.full()

    def submit(self, signal: Signal, payload: bytes, items: int, acknowledged: bool = False) -> bool:
        """Queue a batch. Refuses (False) when full, unless it was already acknowledged."""
        if self.queue.full():
            if not acknowledged:
                return False
            self.metrics.queue_overflow.labels(self.name).inc()
            log.warning(
                "exporter %s: queue full, queuing %d acknowledged %s past capacity", self.name, items, signal.name
            )
        self.queue.put(QueueItem(signal, payload, items))
        self._idle.clear()
        self._update_gauges()
        return True

    def _update_gauges(self) -> None:
        if self._queue_size is None:
            self._queue_size = self.metrics.queue_size.labels(self.name)
            if self.queue.durable:
                self._stored_bytes = self.metrics.queue_stored_bytes.labels(self.name)
        self._queue_size.set(len(self.queue))
        if self._stored_bytes is not None:
            self._stored_bytes.set(self.queue.stored_bytes)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        await self.sender.start()
        recovered = getattr(self.queue, "recovered", [])
        if recovered:
            self._idle.clear()
            log.warning(
                "exporter %s: resending %d batches (%d items) left in %s by the previous run; "
                "the downstream may already have some of them (at least once)",
                self.name,
                len(recovered),
                sum(item.items for item in recovered),
                self.queue.path,
            )
        self._update_gauges()
        for i in range(self.config.sending_queue.num_consumers):
            self._consumers.append(asyncio.create_task(self._consume(), name=f"{self.name}-consumer-{i}"))

    def pending(self) -> int:
        return len(self.queue) + self._in_flight + self._gathered

    async def drain(self, timeout: float) -> bool:
        """Wait until everything queued was sent or given up on; False on timeout."""
        deadline = time.monotonic() + timeout
        self._flush_now = True
        while self.pending():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout=min(remaining, 0.05))
        return True

    async def stop(self) -> None:
        for task in self._consumers:
            task.cancel()
        await asyncio.gather(*self._consumers, return_exceptions=True)
        self._consumers.clear()
        if self.queue.durable and self.queue.stored_batches:
            stored = self.queue.stored_batches
            self.metrics.queue_persisted_on_stop.labels(self.name).inc(stored)
            log.warning(
                "exporter %s: %d batches unsent at shutdown stay in %s and are sent on the next start",
                self.name,
                stored,
                self.queue.path,
            )
        left = self.queue.drain_remaining()
        if left:
            lost = sum(item.items for item in left)
            for item in left:
                self._give_up(item, item.items, "shutdown", "sidecar stopped before the batch could be sent")
                self.queue.ack(item)
            log.error("exporter %s: stopped with %d batches (%d items) unsent", self.name, len(left), lost)
        self.queue.close()
        await self.sender.close()

    # -- sending ---------------------------------------------------------------------------
    async def _consume(self) -> None:
        while True:
            # The batch lives in `_send_items`' frame only: a local of this loop would keep the
            # last batch sent (a merge of ~20 requests, ~2 MB at the bench's settings) alive while
            # the consumer waits for the next one, ~20 MB across 10 idle consumers.
            await self._send_items(await self._next())

    async def _send_items(self, items: list[QueueItem]) -> None:
        """Send one batch taken off the queue (several items when merging)."""
        self._in_flight += len(items)
        self._update_gauges()
        sent = 0
        try:
            for group in _by_signal(items):
                if len(group) == 1:
                    await self._send_with_retry(group[0])
                else:
                    await self._send_merged(group)
                sent += len(group)
        except asyncio.CancelledError:
            # Put back what was not sent so stop() accounts for it instead of losing it silently.
            for item in _by_signal_flat(items)[sent:]:
                self.queue.put(item)
            raise
        finally:
            self._in_flight -= len(items)
            if not self.pending():
                self._idle.set()

    async def _next(self) -> list[QueueItem]:
        """The next item, or with `batch.flush_timeout` the items queued within it after the
        first (up to `min_size`): gathered by one consumer at a time while the others send."""
        if self._merge is None:
            return [await self.queue.get()]
        async with self._gathering:
            first = await self.queue.get()
            items = [first]
            self._gathered = 1
            try:
                size = self._size(first)
                by_bytes = self._merge.sizer == "bytes"
                deadline = time.monotonic() + self._merge.flush_timeout
                while size < self._merge.min_size and not self._flush_now:
                    item = self.queue.get_nowait()
                    if item is not None:
                        items.append(item)
                        self._gathered += 1
                        size += self._size(item)
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    # Woken once what is queued completes the merge, not by every request; in
                    # steps, so that a drain (shutdown) need not wait out a long flush_timeout.
                    await self.queue.wait_for(self._merge.min_size - size, by_bytes, min(remaining, 0.05))
            except asyncio.CancelledError:
                for item in items:  # back on the queue, so stop() accounts for them
                    self.queue.put(item)
                raise
            finally:
                self._gathered = 0
            return items

    def _size(self, item: QueueItem) -> int:
        return len(item.payload) if self._merge is not None and self._merge.sizer == "bytes" else item.items

    async def _send_merged(self, group: list[QueueItem]) -> None:
        """Queued requests of one signal sent as one (concatenated OTLP requests are one
        request), then each taken off the queue: given up on or delivered together."""
        payloads = [item.payload for item in group]
        items = sum(i.items for i in group)
        self.metrics.merged_batches.labels(group[0].signal.name, self.name).inc(len(group))
        if getattr(self.sender, "joins_parts", False) and self._max_items is None and self._max_bytes is None:
            # Joined by the sender where it sends them (gRPC: on the sending thread, one hand-over
            # instead of two); nothing to split, so the joined request is never needed here.
            await self._send_piece(QueueItem(group[0].signal, b"", items), Parts(payloads), items)
        else:
            if sum(map(len, payloads)) >= JOIN_OFF_LOOP:
                # CPython joins this much without the GIL: the copy, and the page faults of its
                # fresh mapping (~500 for the bench's ~2 MB), leave the event loop's thread.
                payload = await asyncio.get_running_loop().run_in_executor(None, b"".join, payloads)
            else:
                payload = b"".join(payloads)
            await self._send_with_retry(QueueItem(group[0].signal, payload, items), ack=False)
        for item in group:
            if item.recovered:
                self.metrics.resent_batches.labels(item.signal.name, self.name).inc()
                self.metrics.resent_items.labels(item.signal.name, self.name).inc(item.items)
            self.queue.ack(item)
        self._update_gauges()

    async def _send_with_retry(self, item: QueueItem, ack: bool = True) -> None:
        """Send the item (split to `sending_queue.batch` limits), then take it off the queue:
        a persistent queue keeps it until every piece was delivered or given up on."""
        pieces = [(item.payload, item.items)]
        if self._max_items is not None or self._max_bytes is not None:
            try:
                pieces = split_to_max(item.signal, item.payload, item.items, self._max_items, self._max_bytes)
            except Exception:  # a bug here must not kill the consumer: send it whole instead
                log.exception("exporter %s: could not split a %s request; sending it whole", self.name,
                              item.signal.name)
        for payload, items in pieces:
            await self._send_piece(item, payload, items)
        if not ack:
            return
        if item.recovered:
            self.metrics.resent_batches.labels(item.signal.name, self.name).inc()
            self.metrics.resent_items.labels(item.signal.name, self.name).inc(item.items)
        self.queue.ack(item)
        self._update_gauges()

    async def _send_piece(self, item: QueueItem, payload: bytes | Parts, items: int) -> None:
        """Send `payload` (`items` of `item`'s) with retries; a Parts only to a sender that joins
        them (rejoined on each attempt: only the parts, already queued, live between retries)."""
        backoff = Backoff(self._retry)
        deadline = time.monotonic() + self._retry.max_elapsed_time
        while True:
            item.attempts += 1
            try:
                response = await self.sender.send(item.signal, payload)
            except TooLargeSendError as exc:
                # The downstream takes smaller requests: send each half (split again if need be).
                try:
                    parts = halves(item.signal, joined(payload))
                except Exception:  # a bug here must not kill the consumer: count the loss instead
                    log.exception("exporter %s: could not split a %s request", self.name, item.signal.name)
                    parts = None
                if parts is None:
                    self._give_up(item, items, exc.reason, f"one item larger than the downstream accepts: {exc}")
                    return
                self.metrics.export_splits.labels(item.signal.name, self.name).inc()
                log.info("exporter %s: downstream refused %d %s as too large; sending them in halves",
                         self.name, items, item.signal.name)
                for part, part_items in parts:
                    await self._send_piece(item, part, part_items)
                return
            except RetryableSendError as exc:
                delay = backoff.next_delay(exc.retry_after)
                if not self._retry.enabled or time.monotonic() + delay > deadline:
                    self._give_up(item, items, exc.reason, f"retries exhausted after {item.attempts} attempts: {exc}")
                    return
                self.metrics.export_retries.labels(self.name, exc.reason).inc()
                log.info("exporter %s: %s send failed (%s), retrying in %.2fs", self.name, item.signal.name, exc, delay)
                await asyncio.sleep(delay)
                continue
            except PermanentSendError as exc:
                self._give_up(item, items, exc.reason, f"not retryable: {exc}")
                return
            except SendError as exc:  # pragma: no cover - subclasses above cover it
                self._give_up(item, items, exc.reason, str(exc))
                return
            self._record_success(item, response, items)
            return

    def _record_success(self, item: QueueItem, response: Message, items: int) -> None:
        rejected = 0
        if response.HasField("partial_success"):
            rejected = getattr(response.partial_success, item.signal.rejected_field)
            if rejected or response.partial_success.error_message:
                log.warning(
                    "exporter %s: downstream rejected %d of %d %s: %s",
                    self.name,
                    rejected,
                    items,
                    item.signal.name,
                    response.partial_success.error_message,
                )
                self.metrics.items_rejected_downstream.labels(item.signal.name, self.name).inc(rejected)
        self.metrics.items_forwarded.labels(item.signal.name, self.name).inc(max(items - rejected, 0))

    def _give_up(self, item: QueueItem, items: int, reason: str, message: str) -> None:
        """Count `items` of `item` as lost (the caller takes the item off the queue)."""
        log.error(
            "exporter %s: dropping %s batch of %d items to %s: %s",
            self.name,
            item.signal.name,
            items,
            self.sender.description,
            message,
        )
        self.metrics.export_failures.labels(item.signal.name, self.name, reason).inc()
        self.metrics.export_failed_items.labels(item.signal.name, self.name).inc(items)
