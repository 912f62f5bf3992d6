"""The one place processors record each (hop, field, outcome), per ../shared/ENVELOPE.md."""

from __future__ import annotations

import threading
from collections import Counter

OUTCOMES = ("present", "renamed", "inherited", "missing", "conflict")


class SurvivalRecorder:
    """Counts outcomes per (hop, field). Cheap to call: one dict update per call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._listeners: list = []

    def record_many(self, outcomes: Counter[tuple[str, str, str]]) -> None:
        """Add a batch's worth of outcomes at once (processors aggregate per batch)."""
        with self._lock:
            self._counts.update(outcomes)
        for listener in self._listeners:
            listener(outcomes)

    def add_listener(self, listener) -> None:
        """Called with each batch's Counter; the metrics layer subscribes here."""
        self._listeners.append(listener)

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            return dict(self._counts)
