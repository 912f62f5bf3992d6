"""What a span's attributes say about one model call, read from plain values (decoded
attributes: str, int, float, bool), for re-pricing a recorded span outside the pipeline."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from costctx.pricing.calc import Usage

PROVIDER = "gen_ai.provider.name"
OPERATION = "gen_ai.operation.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
INPUT = "gen_ai.usage.input_tokens"
OUTPUT = "gen_ai.usage.output_tokens"
CACHE_READ = "gen_ai.usage.cache_read.input_tokens"
CACHE_CREATION = "gen_ai.usage.cache_creation.input_tokens"
CACHE_WRITE = "gen_ai.usage.cache_write.input_tokens"  # pending rename of cache_creation
REASONING = "gen_ai.usage.reasoning.output_tokens"
TEXT_INPUT = "gen_ai.usage.text.input_tokens"
IMAGE_INPUT = "gen_ai.usage.image.input_tokens"
AUDIO_INPUT = "gen_ai.usage.audio.input_tokens"
COST_USD = "cost.usd"
COST_SOURCE = "cost.price_source"
COST_ORIGIN = "cost.origin"
INPUT_ONLY_OPERATIONS = frozenset({"embeddings"})


@dataclass(frozen=True)
class SpanCall:
    response_model: str | None
    request_model: str | None
    provider: str | None
    usage: Usage | None
    recorded_usd: float | None
    recorded_source: str | None
    recorded_origin: str | None


def token_count(value: Any) -> int | None:
    """A count as the price processor reads it: a non-negative int, an integral double, or digits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() and value >= 0 else None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def read_call(attributes: Mapping[str, Any]) -> SpanCall:
    def text(key: str) -> str | None:
        value = attributes.get(key)
        return value if isinstance(value, str) and value else None

    def count(*keys: str) -> int | None:
        for key in keys:
            if key in attributes:
                return token_count(attributes[key])
        return None

    image, audio = count(IMAGE_INPUT) or 0, count(AUDIO_INPUT) or 0
    input_tokens = count(INPUT)
    if input_tokens is None and (image or audio or TEXT_INPUT in attributes):
        text_tokens = count(TEXT_INPUT) if TEXT_INPUT in attributes else 0
        input_tokens = None if text_tokens is None else text_tokens + image + audio
    output_tokens = count(OUTPUT)
    if output_tokens is None and text(OPERATION) in INPUT_ONLY_OPERATIONS:
        output_tokens = 0
    usage = None
    if input_tokens is not None and output_tokens is not None:
        usage = Usage(input_tokens, output_tokens, count(CACHE_READ) or 0,
                      count(CACHE_CREATION, CACHE_WRITE) or 0, count(REASONING) or 0, image, audio)
    recorded = attributes.get(COST_USD)
    return SpanCall(
        response_model=text(RESPONSE_MODEL), request_model=text(REQUEST_MODEL), provider=text(PROVIDER),
        usage=usage,
        recorded_usd=float(recorded) if isinstance(recorded, int | float) and not isinstance(recorded, bool) else None,
        recorded_source=text(COST_SOURCE), recorded_origin=text(COST_ORIGIN),
    )


def attributes_from_json(document: Any) -> tuple[dict[str, Any], int | None]:
    """A span's attributes and start time from JSON: either a flat object of attributes, or an
    OTLP/JSON span (`attributes: [{key, value: {stringValue|intValue|doubleValue|boolValue}}]`,
    `startTimeUnixNano`)."""
    if not isinstance(document, dict):
        raise ValueError("expected a JSON object: a span's attributes, or an OTLP/JSON span")
    if isinstance(document.get("attributes"), list):
        attributes: dict[str, Any] = {}
        for item in document["attributes"]:
            if not isinstance(item, dict) or not isinstance(item.get("key"), str):
                raise ValueError("each OTLP/JSON attribute needs a key and a value")
            attributes[item["key"]] = _any_value(item.get("value") or {})
        start = document.get("startTimeUnixNano")
        return attributes, int(start) if start is not None else None
    return dict(document), None


def _any_value(value: dict[str, Any]) -> Any:
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])  # OTLP/JSON writes 64-bit integers as strings
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [_any_value(v) for v in value["arrayValue"].get("values", [])]
    return None
