"""How a send attempt failed: retryable (with an optional server hint) or permanent."""

from __future__ import annotations


class SendError(Exception):
    def __init__(self, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


class RetryableSendError(SendError):
    """The downstream may accept the same batch later (UNAVAILABLE, 503, timeouts...)."""


class PermanentSendError(SendError):
    """Sending the same batch again cannot succeed (INVALID_ARGUMENT, 400...)."""


class TooLargeSendError(SendError):
    """The downstream refused the request for its size (gRPC RESOURCE_EXHAUSTED about the message
    size, HTTP 413): the same items may pass in smaller requests, so the exporter splits it."""
