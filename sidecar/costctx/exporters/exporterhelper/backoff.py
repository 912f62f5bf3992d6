"""Exponential backoff with jitter, as the Collector's retry_on_failure computes it."""

from __future__ import annotations

import random

from costctx.exporters.exporterhelper.config import RetryConfig

# One generator for every Backoff: seeding a new Random reads os.urandom, and a Backoff is
# made for every batch sent (it showed in a py-spy profile of the sidecar under load).
_SHARED_RNG = random.Random()


class Backoff:
    def __init__(self, config: RetryConfig, rng: random.Random | None = None) -> None:
        self._config = config
        self._interval = config.initial_interval
        self._rng = rng or _SHARED_RNG

    def next_delay(self, server_hint: float | None = None) -> float:
        """The wait before the next attempt; a server's Retry-After/RetryInfo wins if longer."""
        cfg = self._config
        spread = self._interval * cfg.randomization_factor
        delay = self._rng.uniform(self._interval - spread, self._interval + spread)
        self._interval = min(self._interval * cfg.multiplier, cfg.max_interval)
        if server_hint is not None:
            delay = max(delay, min(server_hint, cfg.max_interval))
        return max(delay, 0.0)
