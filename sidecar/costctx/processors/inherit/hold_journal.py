"""The hold on disk: held spans survive a kill -9 when the pipeline's queue is persistent.

A held span was already acknowledged to its client. With a persistent sending queue configured,
the client trusts that an acknowledged span survives a crash; the hold kept it only in memory.
The journal writes every span the hold detaches from its batch (one transaction per batch,
before `process` returns, so before the receiver acknowledges), and forgets it once it has been
released and handed on: lazily, at the start of the next batch or tick, when the pipeline run
that carried it has queued it in the persistent queue. On start, what is left is restored and
held again (at least once: a span released just before the kill may arrive twice).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from costctx.processors.inherit.hold import HeldSpan

log = logging.getLogger("costctx.processor.inherit")

SYNCHRONOUS = {"always": "FULL", "batch": "NORMAL", "never": "OFF"}


class HoldJournal:
    def __init__(self, directory: str, processor_name: str, fsync: str = "always") -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", processor_name)
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.path = Path(directory) / f"{safe}-hold.sqlite3"
        import sqlite3  # here, not at import: ~1.3 MB of RSS a sidecar without one never needs

        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={SYNCHRONOUS.get(fsync, 'FULL')}")
        self._db.execute("CREATE TABLE IF NOT EXISTS held (key BLOB PRIMARY KEY, payload BLOB NOT NULL)")
        self._forget: set[bytes] = set()

    def write(self, spans: list[HeldSpan]) -> None:
        """Store spans just detached into the hold (each as its one-span request, the bytes
        the hold keeps)."""
        rows = []
        for held in spans:
            if held.payload is None:
                continue
            rows.append((held.key, held.payload))
            self._forget.discard(held.key)  # held again (a restored or re-sent span): keep it
        if rows:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO held (key, payload) VALUES (?, ?)", rows)

    def forget_later(self, key: bytes) -> None:
        """The span left the hold; it is deleted once the run carrying it has finished."""
        self._forget.add(key)

    def flush(self) -> None:
        if not self._forget:
            return
        keys, self._forget = self._forget, set()
        with self._db:
            self._db.executemany("DELETE FROM held WHERE key = ?", [(k,) for k in keys])

    def restore(self) -> list[tuple[bytes, bytes]]:
        """(key, one-span request) of every span left by a previous run, oldest first. The
        caller holds them again (rewritten) or hands them on and forgets them."""
        return self._db.execute("SELECT key, payload FROM held ORDER BY rowid").fetchall()

    def close(self) -> None:
        self.flush()
        self._db.close()
