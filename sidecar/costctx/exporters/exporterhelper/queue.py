"""The bounded sending queue between the pipeline and the sender.

Bounded in batches like the Collector's `sending_queue.queue_size`. Receivers check
`has_capacity` before they accept a request, so a full queue is a retryable refusal to
the client, never a silent drop. Spans that were already acknowledged (released from a
hold) are queued past capacity and counted instead.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from costctx.pdata.signals import Signal


@dataclass
class QueueItem:
    signal: Signal
    payload: bytes  # a serialized Export*ServiceRequest
    items: int  # spans, data points or log records in it
    key: int | None = None  # storage key for persistent queues
    attempts: int = field(default=0)
    recovered: bool = False  # reloaded from a persistent queue after a restart: may be a duplicate


class _Watch:
    """A wait for `missing` more size (by `size_of`) to be queued (PendingItems.wait_for)."""

    __slots__ = ("waiter", "missing", "size_of")

    def __init__(self, waiter: asyncio.Future[None], missing: int, size_of: Callable[[QueueItem], int]) -> None:
        self.waiter = waiter
        self.missing = missing
        self.size_of = size_of


class PendingItems:
    """Items in arrival order that consumers can wait for: what both queues keep in memory.

    An item wakes one waiting consumer, not all of them: with one shared event each batch
    woke every idle consumer (10 by default), nine of which found the queue empty again,
    ~0.1 ms of the event loop per batch for nothing. A consumer merging items waits for
    enough of them at once (`wait_for`), not woken by each one."""

    def __init__(self) -> None:
        self._items: collections.deque[QueueItem] = collections.deque()
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._watch: _Watch | None = None

    def __len__(self) -> int:
        return len(self._items)

    def append(self, item: QueueItem) -> None:
        self._items.append(item)
        if self._waiters:
            self._wake_one()
        watch = self._watch
        if watch is not None:
            watch.missing -= watch.size_of(item)
            if watch.missing <= 0 and not watch.waiter.done():
                watch.waiter.set_result(None)

    def take_nowait(self) -> QueueItem | None:
        """The next item if one is queued, else None (no waiting)."""
        return self._items.popleft() if self._items else None

    async def wait_for(self, size: int, size_of: Callable[[QueueItem], int], timeout: float) -> None:
        """Return once the queued items' sizes add up to `size`, or after `timeout` seconds:
        one wake-up for many items (each item woke the merging consumer, and armed and
        cancelled a timer, ~10 us of the event loop per request). Takes nothing."""
        missing = size - sum(size_of(item) for item in self._items)
        if missing <= 0 or timeout <= 0:
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._watch = _Watch(waiter, missing, size_of)
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._watch = None

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def take(self, timeout: float | None = None) -> QueueItem | None:
        """The next item; None once `timeout` seconds passed without one (never with None).
        The timer resolves the wait instead of cancelling it: an item is never taken and lost."""
        timer = None
        while not self._items:
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            self._waiters.append(waiter)
            if timeout is not None:
                if timeout <= 0:
                    self._waiters.remove(waiter)
                    return None
                timer = loop.call_later(timeout, _expire, waiter)
                timeout = 0  # after this wait, once more only if an item is there
            try:
                await waiter
            except asyncio.CancelledError:
                # Woken, then cancelled before taking the item: pass the wake-up on.
                if waiter.done() and not waiter.cancelled() and self._items:
                    self._wake_one()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                raise
            finally:
                if timer is not None:
                    timer.cancel()
        item = self._items.popleft()
        if self._items:
            self._wake_one()  # more waiting than one wake-up announced (appended before any waited)
        return item

    def take_all(self) -> list[QueueItem]:
        items = list(self._items)
        self._items.clear()
        return items


def payload_size(item: QueueItem) -> int:
    return len(item.payload)


def item_count(item: QueueItem) -> int:
    return item.items


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class MemoryQueue:
    durable = False  # what is left at stop is lost (and counted)

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items = PendingItems()

    def __len__(self) -> int:
        return len(self._items)

    def full(self) -> bool:
        return len(self._items) >= self.capacity

    def put(self, item: QueueItem) -> None:
        self._items.append(item)

    async def get(self, timeout: float | None = None) -> QueueItem | None:
        """The next item; None after `timeout` seconds without one."""
        return await self._items.take(timeout)

    def get_nowait(self) -> QueueItem | None:
        return self._items.take_nowait()

    async def wait_for(self, size: int, by_bytes: bool, timeout: float) -> None:
        """Until the queued items hold `size` bytes (else items), or `timeout` seconds."""
        await self._items.wait_for(size, payload_size if by_bytes else item_count, timeout)

    def ack(self, item: QueueItem) -> None:
        """The item left the sidecar (sent or given up on); nothing to free in memory."""

    def drain_remaining(self) -> list[QueueItem]:
        return self._items.take_all()

    def close(self) -> None:
        """Nothing to close in memory."""
