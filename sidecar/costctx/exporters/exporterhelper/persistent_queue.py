"""A sending queue that survives restarts: batches live in an SQLite file until delivered.

Why SQLite (stdlib `sqlite3`): a well-kept embedded store with transactions, crash safety and
an fsync policy we can map one-to-one (`PRAGMA synchronous`), and no new dependency; a
hand-written append log would need its own framing, checksums and compaction.

Contract (at least once):
- `put` commits the batch to disk before it returns, and the receiver answers OK only after
  `put` returned, so an acknowledged batch is on disk (how durable depends on `fsync`).
- `ack` deletes it once the downstream accepted it (or the exporter gave up on it, counted).
- On start the queue reloads whatever is left and the exporter sends it again. A batch that
  was delivered but not yet deleted when the process died is sent twice: such resent batches
  are counted (`costctx_exporter_resent_batches`), never assumed to be new.

Only keys and sizes are kept in memory; payloads are read back when a consumer takes them,
so a large backlog costs disk, not RAM (which matters under the memory limiter).
"""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path

from costctx.exporters.exporterhelper.queue import PendingItems, QueueItem, item_count
from costctx.pdata.signals import SIGNALS

log = logging.getLogger("costctx.exporter.queue")

# fsync policy -> SQLite synchronous mode (WAL journal):
#   always: FULL, the WAL is fsynced at every commit: survives power loss.
#   batch:  NORMAL, fsync only at checkpoints: survives a killed process, may lose the
#           last commits on power loss.
#   never:  OFF, leave it to the OS.
SYNC_MODES = {"always": "FULL", "batch": "NORMAL", "never": "OFF"}


class PersistentQueue:
    durable = True

    def __init__(self, directory: str | Path, name: str, capacity: int, max_bytes: int, fsync: str = "always") -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.path = Path(directory) / f"{name.replace('/', '_')}.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One process per queue file: two sidecars sharing it would both resend every batch.
        # flock is released by the kernel when the process dies, even by SIGKILL.
        self._lock = open(self.path.with_suffix(".lock"), "a+b")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise OSError(f"persistent queue {self.path} is in use by another process") from None
        import sqlite3  # here, not at import: ~1.3 MB of RSS a sidecar without one never needs

        # Autocommit mode: each statement is its own transaction, committed before it returns.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={SYNC_MODES[fsync]}")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS batches ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT, signal TEXT NOT NULL, items INTEGER NOT NULL,"
            " payload BLOB NOT NULL)"
        )
        self._pending = PendingItems()
        self._sizes: dict[int, int] = {}  # key -> payload bytes, for everything on disk
        self._bytes = 0  # their sum, kept in step: `full()` runs on every request
        self.recovered: list[QueueItem] = []
        for key, signal, items, size in self._db.execute(
            "SELECT id, signal, items, length(payload) FROM batches ORDER BY id"
        ):
            item = QueueItem(SIGNALS[signal], b"", items, key=key, recovered=True)
            self._pending.append(item)
            self._sizes[key] = size
            self._bytes += size
            self.recovered.append(item)

    # -- size ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._pending)

    @property
    def stored_batches(self) -> int:
        return len(self._sizes)

    @property
    def stored_bytes(self) -> int:
        return self._bytes

    def full(self) -> bool:
        return len(self._sizes) >= self.capacity or self._bytes >= self.max_bytes

    # -- queue -----------------------------------------------------------------------------
    def put(self, item: QueueItem) -> None:
        if item.key is None:
            cursor = self._db.execute(
                "INSERT INTO batches (signal, items, payload) VALUES (?, ?, ?)",
                (item.signal.name, item.items, item.payload),
            )
            item.key = cursor.lastrowid
            self._sizes[item.key] = len(item.payload)
            self._bytes += len(item.payload)
            item.payload = b""  # on disk now; read back when a consumer takes it
        else:
            item.payload = b""  # put back by a cancelled consumer: it never left the disk
        self._pending.append(item)

    async def get(self, timeout: float | None = None) -> QueueItem | None:
        """The next item, its payload read back; None after `timeout` seconds without one."""
        item = await self._pending.take(timeout)
        if item is None:
            return None
        self._read_back(item)
        return item

    def get_nowait(self) -> QueueItem | None:
        item = self._pending.take_nowait()
        if item is not None:
            self._read_back(item)
        return item

    def _read_back(self, item: QueueItem) -> None:
        row = self._db.execute("SELECT payload FROM batches WHERE id = ?", (item.key,)).fetchone()
        item.payload = row[0] if row else b""

    async def wait_for(self, size: int, by_bytes: bool, timeout: float) -> None:
        """Until the queued items hold `size` bytes (as stored; else items), or `timeout` seconds."""
        await self._pending.wait_for(size, self._stored_size if by_bytes else item_count, timeout)

    def _stored_size(self, item: QueueItem) -> int:
        return self._sizes.get(item.key, 0) if item.key is not None else len(item.payload)

    def ack(self, item: QueueItem) -> None:
        """Delivered or given up on: delete it from disk."""
        if item.key is not None:
            self._db.execute("DELETE FROM batches WHERE id = ?", (item.key,))
            self._bytes -= self._sizes.pop(item.key, 0)
        item.payload = b""

    def drain_remaining(self) -> list[QueueItem]:
        """Nothing is lost on stop: what is left stays on disk for the next start."""
        self._pending.take_all()
        return []

    def close(self) -> None:
        self._db.close()
        self._lock.close()  # releases the flock
