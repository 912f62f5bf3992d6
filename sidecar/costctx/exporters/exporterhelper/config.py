"""Retry and sending-queue settings every exporter shares (the Collector's exporterhelper names)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, field_validator

from costctx.config.types import Duration, StrictModel

MiB = 1024 * 1024


class RetryConfig(StrictModel):
    """Exponential backoff on retryable errors only; defaults are the Collector's."""

    enabled: bool = True
    initial_interval: Duration = 5.0
    max_interval: Duration = 30.0
    max_elapsed_time: Duration = 300.0
    multiplier: float = Field(default=1.5, ge=1.0)
    randomization_factor: float = Field(default=0.5, ge=0.0, le=1.0)


class QueueStorageConfig(StrictModel):
    """A persistent sending queue (the Collector's `storage: file_storage`), in one SQLite file."""

    directory: str
    max_bytes: PositiveInt = 1024 * MiB  # bound on disk; when full, clients get retryable refusals
    fsync: Literal["always", "batch", "never"] = "always"


class BatchConfig(StrictModel):
    """`sending_queue.batch` (the Collector's exporter batcher): requests above `max_size` (items,
    or serialized bytes with `sizer: bytes`) are split before they are sent. `max_size_bytes`
    bounds bytes as well when the sizer counts items.

    With `flush_timeout` above 0, queued requests of a signal are also merged into one until
    `min_size` (same sizer) or `flush_timeout` after the first: the OTLP requests concatenated,
    which is one request holding all their resources. Fewer, larger sends: each costs the
    sidecar ~0.3 ms of CPU however small it is. Off (0) unless set, so a configuration that
    only splits keeps its behaviour (the Collector's batcher defaults to 200ms and 8192)."""

    sizer: Literal["items", "bytes"] = "items"
    max_size: PositiveInt | None = None
    max_size_bytes: PositiveInt | None = None
    flush_timeout: Duration = 0.0
    min_size: PositiveInt = 8192

    @field_validator("flush_timeout")
    @classmethod
    def _not_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError("flush_timeout must be 0 (off) or more")
        return value

    def limits(self) -> tuple[int | None, int | None]:
        """(max items, max bytes) per request."""
        if self.sizer == "bytes":
            return None, self.max_size
        return self.max_size, self.max_size_bytes


class SendingQueueConfig(StrictModel):
    num_consumers: PositiveInt = 10
    queue_size: PositiveInt = 1000
    storage: QueueStorageConfig | None = None  # None: in memory, lost on a crash
    # Split requests above a size before sending (the Collector's exporter batcher); requests the
    # downstream refuses as too large are split in halves whether or not this is set.
    batch: BatchConfig | None = None
