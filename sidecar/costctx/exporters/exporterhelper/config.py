"""Retry and sending-queue settings every exporter shares (the Collector's exporterhelper names)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

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


class SendingQueueConfig(StrictModel):
    num_consumers: PositiveInt = 10
    queue_size: PositiveInt = 1000
    storage: QueueStorageConfig | None = None  # None: in memory, lost on a crash
