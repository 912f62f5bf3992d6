"""The bounded sending queue between the pipeline and the sender.

Bounded in batches like the Collector's `sending_queue.queue_size`. Receivers check
`has_capacity` before they accept a request, so a full queue is a retryable refusal to
the client, never a silent drop. Spans that were already acknowledged (released from a
hold) are queued past capacity and counted instead.
"""

from __future__ import annotations

import asyncio
import collections
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


class PendingItems:
    """Items in arrival order that consumers can wait for: what both queues keep in memory."""

    def __init__(self) -> None:
        self._items: collections.deque[QueueItem] = collections.deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def append(self, item: QueueItem) -> None:
        self._items.append(item)
        self._ready.set()

    async def take(self) -> QueueItem:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def take_all(self) -> list[QueueItem]:
        items = list(self._items)
        self._items.clear()
        return items


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

    async def get(self) -> QueueItem:
        return await self._items.take()

    def ack(self, item: QueueItem) -> None:
        """The item left the sidecar (sent or given up on); nothing to free in memory."""

    def drain_remaining(self) -> list[QueueItem]:
        return self._items.take_all()

    def close(self) -> None:
        """Nothing to close in memory."""
