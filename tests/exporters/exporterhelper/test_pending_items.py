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
        return (await asyncio.wait_for(second, 2)).payload

    assert run(scenario) == b"batch 7"


def test_a_timed_take_returns_none_and_an_item_after_it_is_still_taken():
    async def scenario(loop: CountingLoop) -> tuple[object, bytes]:
        pending = PendingItems()
        nothing = await pending.take(timeout=0.01)
        pending.append(item(3))  # no waiter left behind by the timed take
        return nothing, (await asyncio.wait_for(pending.take(), 2)).payload

    assert run(scenario) == (None, b"batch 3")
