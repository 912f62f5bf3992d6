"""Typed view of envelope.yaml: the one schema enforcement and attribution share."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources

import yaml


@dataclass(frozen=True)
class ContextField:
    key: str
    type: str
    required: bool
    inherit: bool
    meaning: str = ""
    resource_fallback: str | None = None


@dataclass(frozen=True)
class ReadinessCheck:
    id: int
    name: str
    all_of: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    otlp: str | None = None


@dataclass(frozen=True)
class Envelope:
    schema_version: str
    context_fields: tuple[ContextField, ...]
    usage_fields: dict[str, str]
    written_fields: dict[str, str]
    llm_span_markers: frozenset[str]
    outcomes: dict[str, str]
    readiness_checks: tuple[ReadinessCheck, ...]
    readiness_thresholds: dict[str, float] = field(default_factory=dict)

    @cached_property
    def context_keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.context_fields)

    @cached_property
    def default_required(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.context_fields if f.required)

    @cached_property
    def inheritable(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.context_fields if f.inherit)

    @cached_property
    def field_types(self) -> dict[str, str]:
        types = {f.key: f.type for f in self.context_fields}
        types.update(self.usage_fields)
        types.update(self.written_fields)
        return types

    def context_field(self, key: str) -> ContextField:
        for f in self.context_fields:
            if f.key == key:
                return f
        raise KeyError(key)


def load_envelope() -> Envelope:
    text = resources.files("costctx.envelope").joinpath("envelope.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    readiness = raw["readiness"]
    return Envelope(
        schema_version=str(raw["schema_version"]),
        context_fields=tuple(ContextField(**f) for f in raw["context_fields"]),
        usage_fields={f["key"]: f["type"] for f in raw["usage_fields"]},
        written_fields={f["key"]: f["type"] for f in raw["written_fields"]},
        llm_span_markers=frozenset(raw["llm_span_markers"]),
        outcomes=dict(raw["outcomes"]),
        readiness_checks=tuple(
            ReadinessCheck(
                id=c["id"],
                name=c["name"],
                all_of=tuple(c.get("all_of", ())),
                any_of=tuple(c.get("any_of", ())),
                otlp=c.get("otlp"),
            )
            for c in readiness["checks"]
        ),
        readiness_thresholds=dict(readiness["thresholds"]),
    )


ENVELOPE: Envelope = load_envelope()
