"""Known component types: processors (imported on demand, so a config names only what it
uses), exporters and extensions (their config models)."""

from __future__ import annotations

import importlib

from costctx.component.processor import Processor
from costctx.config.types import StrictModel
from costctx.exporters.debug.config import DebugExporterConfig
from costctx.exporters.otlp.config import ExporterCommonConfig, OtlpGrpcExporterConfig, OtlpHttpExporterConfig
from costctx.extensions.bearertokenauth.config import BearerTokenAuthConfig

RECEIVER_TYPES: tuple[str, ...] = ("otlp",)

EXPORTER_TYPES: dict[str, type[ExporterCommonConfig]] = {
    "otlp": OtlpGrpcExporterConfig,
    "otlphttp": OtlpHttpExporterConfig,
    "debug": DebugExporterConfig,  # logs each batch, sends nothing (bare defaults without an endpoint)
}

EXTENSION_TYPES: dict[str, type[StrictModel]] = {
    "bearertokenauth": BearerTokenAuthConfig,
}

# type name -> "module:Class"
PROCESSOR_TYPES: dict[str, str] = {
    "normalize": "costctx.processors.normalize.processor:NormalizeProcessor",
    "inherit": "costctx.processors.inherit.processor:InheritProcessor",
    "envelope": "costctx.processors.envelope.processor:EnvelopeProcessor",
    "price": "costctx.processors.price.processor:PriceProcessor",
    "budget": "costctx.processors.budget.processor:BudgetProcessor",
    "memory_limiter": "costctx.processors.memory_limiter.processor:MemoryLimiterProcessor",
    "limits": "costctx.processors.limits.processor:LimitsProcessor",
    "settle": "costctx.processors.settle.processor:SettleProcessor",
}

# The traces pipeline when no config names one. Order matters: rename before anything
# reads keys, repair before pricing, and check the envelope last so `costctx.missing`
# reflects the span as it leaves.
# `limits` right after renaming, so it recognises the envelope keys it must keep, and before
# anything holds or indexes unbounded spans.
# `settle` after `envelope`: it reads the span as it left (it never changes one).
DEFAULT_TRACE_PROCESSORS: list[str] = ["normalize", "limits", "inherit", "price", "budget", "envelope", "settle"]


def processor_type(name: str) -> str:
    """`normalize/custom` -> `normalize`, as Collector component ids work."""
    return name.split("/", 1)[0]


def processor_class(type_name: str) -> type[Processor]:
    try:
        target = PROCESSOR_TYPES[type_name]
    except KeyError:
        known = ", ".join(sorted(PROCESSOR_TYPES))
        raise KeyError(f"unknown processor type {type_name!r} (known: {known})") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)
