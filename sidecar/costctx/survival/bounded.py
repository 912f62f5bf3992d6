"""Bounded label values: a metric label keeps at most N distinct values, the rest become `other`.

Tenants, features, models and workflow names come from span attributes, which clients
control; without a bound one misbehaving client could create millions of time series.
"""

from __future__ import annotations

OTHER = "other"
UNKNOWN = "unknown"
DEFAULT_MAX_LABEL_VALUES = 100
# Longer values are cut: a label value is a name, and one huge value would bloat every scrape.
MAX_VALUE_LENGTH = 128


class BoundedLabel:
    """Maps raw values to label values: the first `max_values` distinct values as they are,
    later ones to `other`. `unknown` (no value) and `other` never count against the bound."""

    __slots__ = ("name", "max_values", "_kept", "overflowed")

    def __init__(self, name: str, max_values: int = DEFAULT_MAX_LABEL_VALUES) -> None:
        if max_values < 1:
            raise ValueError("max_values must be at least 1")
        self.name = name
        self.max_values = max_values
        self._kept: set[str] = set()
        # How many raw values were folded into `other` (distinct values are not tracked:
        # tracking them would be the unbounded set the bound exists to avoid).
        self.overflowed = 0

    def __call__(self, value: str | None) -> str:
        if not value or value == UNKNOWN:
            return UNKNOWN
        if len(value) > MAX_VALUE_LENGTH:
            value = value[:MAX_VALUE_LENGTH]
        if value in self._kept or value == OTHER:
            return value
        if len(self._kept) < self.max_values:
            self._kept.add(value)
            return value
        self.overflowed += 1
        return OTHER

    def __len__(self) -> int:
        return len(self._kept)
