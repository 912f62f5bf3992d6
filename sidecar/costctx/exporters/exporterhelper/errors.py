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
