"""Which asyncio event loop `costctx run` serves on: uvloop's when it is installed, else asyncio's.

COSTCTX_EVENT_LOOP picks one: `uvloop`, `asyncio`, or `auto` (the default: uvloop if importable).
Everything the sidecar runs on the loop (grpc.aio's server and channels, aiohttp, redis.asyncio,
the exporters' coroutines) is written against asyncio's API only, so either loop serves; uvloop
is the cheaper one per callback and per socket event (libuv in C instead of selectors in Python).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

log = logging.getLogger("costctx")

CHOICES = ("auto", "uvloop", "asyncio")


def loop_factory(environ: dict[str, str] | None = None) -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """(name, factory) of the loop to serve on. A choice of uvloop that cannot be imported falls
    back to asyncio's loop with a warning: a missing optional speed-up never stops the sidecar."""
    env = os.environ if environ is None else environ
    choice = env.get("COSTCTX_EVENT_LOOP", "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        log.warning("COSTCTX_EVENT_LOOP=%s is none of %s; using auto", choice, ", ".join(CHOICES))
        choice = "auto"
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                log.warning("COSTCTX_EVENT_LOOP=uvloop but uvloop is not installed; serving on asyncio's loop")
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop


def run(coro, environ: dict[str, str] | None = None):
    """`asyncio.run(coro)` on the chosen loop."""
    name, factory = loop_factory(environ)
    log.info("event loop: %s", name)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)
