"""The refusal a route's admission check raises, apart from the HTTP body reader so the gRPC
path (receivers/otlp/ingest.py) can raise it without importing aiohttp."""

from __future__ import annotations


class Refused(Exception):
    """A retryable refusal from ROUTE_ADMISSION (memory pressure): 503 with Retry-After."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
