"""The `envelope` processor: check the canonical context envelope on every span.

Stamps `costctx.schema` and appends required fields still missing to `costctx.missing`,
and records one survival outcome per (hop, context field, span). Placed last in the
traces pipeline, it sees each span as it leaves, after renaming and repair.
"""

from __future__ import annotations

from collections import Counter

from pydantic import Field, field_validator

from sidecar.config.types import StrictModel
from sidecar.envelope import ENVELOPE
from sidecar.pdata import TraceBatch
from sidecar.processors.base import Processor

SCHEMA_KEY = "costctx.schema"
MISSING_KEY = "costctx.missing"


class EnvelopeConfig(StrictModel):
    # Which context fields are required; the contract's defaults unless configured.
    required_fields: list[str] = Field(default_factory=lambda: list(ENVELOPE.default_required))
    # Record field-survival outcomes (turn off only to measure the cost of counting).
    record_outcomes: bool = True

    @field_validator("required_fields")
    @classmethod
    def _known_fields(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in ENVELOPE.context_keys]
        if unknown:
            raise ValueError(f"not context fields of the envelope: {', '.join(unknown)}")
        return value


class EnvelopeProcessor(Processor):
    type_name = "envelope"
    config_model = EnvelopeConfig
    config: EnvelopeConfig

    def __init__(self, name, config, context) -> None:
        super().__init__(name, config, context)
        self._required = tuple(config.required_fields)
        self._fields = self.context.envelope.context_keys
        self._schema = self.context.envelope.schema_version

    def process(self, batch: TraceBatch) -> TraceBatch:
        outcomes: Counter[tuple[str, str, str]] = Counter()
        required = self._required
        record = self.config.record_outcomes
        for span in batch.records:
            attrs = span.attrs
            span.set(SCHEMA_KEY, self._schema)
            missing = [key for key in required if key not in attrs or not span.has(key)]
            if missing:
                span.append_strings(MISSING_KEY, missing)
            if record:
                self._count(span, outcomes)
        if outcomes:
            self.context.survival.record_many(outcomes)
        return batch

    def _count(self, span, outcomes: Counter) -> None:
        hop = span.hop
        notes = span.notes
        renamed = notes.get("renamed", ()) if notes else ()
        repaired = notes.get("repaired", ()) if notes else ()
        conflict = notes.get("conflict", ()) if notes else ()
        for key in self._fields:
            if key in conflict:
                outcome = "conflict"
            elif key in repaired:
                outcome = "inherited"
            elif key in renamed:
                outcome = "renamed"
            elif span.has(key):
                outcome = "present"
            else:
                outcome = "missing"
            outcomes[(hop, key, outcome)] += 1
