"""The `settle` processor's config section: the attribution window and the pending bounds."""

from __future__ import annotations

from pydantic import PositiveInt

from costctx.config.types import Duration, StrictModel

MiB = 1024 * 1024


class SettleConfig(StrictModel):
    # How long a span's spend waits for its context; past it the spend stays `unknown`.
    attribution_window: Duration = 3600.0
    max_entries: PositiveInt = 100_000
    max_bytes: PositiveInt = 64 * MiB
    # How often pending traces are looked up in the shared registry (one round trip).
    poll_interval: Duration = 1.0
    # Pending traces asked per poll (the oldest first).
    max_traces_per_poll: PositiveInt = 1000
