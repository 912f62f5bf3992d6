"""LiteLLM's `model_prices_and_context_window.json`, the price list many teams already keep.

Each key is a model name (sometimes provider-prefixed, `mistral/mistral-large-latest`);
each value has per-token USD rates: `input_cost_per_token`, `output_cost_per_token`,
`cache_read_input_token_cost`, `cache_creation_input_token_cost`,
`output_cost_per_reasoning_token`, `input_cost_per_audio_token`, `input_cost_per_image_token`
and `litellm_provider`. Rows without token prices (image, audio-per-second, the
`sample_spec` documentation row) are skipped, not errors.

The file carries no dates. A snapshot's period is given in the source's config
(`effective_from` / `effective_until`): every row of it is then a dated price, so several
snapshots layered one after another each price the spans of their own period.
"""

from __future__ import annotations

import json
from typing import Any

from costctx.pricing.money import rate_from_per_token
from costctx.pricing.table import DatedPrice, ModelPrice, PriceTable, content_digest, period_id

_FIELDS = {
    "input": "input_cost_per_token",
    "output": "output_cost_per_token",
    "cache_read": "cache_read_input_token_cost",
    "cache_creation": "cache_creation_input_token_cost",
    "reasoning": "output_cost_per_reasoning_token",
    "input_audio": "input_cost_per_audio_token",
    "input_image": "input_cost_per_image_token",
}


def parse_litellm(data: bytes, name: str = "litellm", version: str | None = None,
                  path: str | None = None, valid_from: int | None = None,
                  valid_until: int | None = None) -> PriceTable:
    try:
        raw: Any = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError("the top level must be an object of model name -> prices")
    models: dict[str, ModelPrice] = {}
    for model, entry in raw.items():
        if model == "sample_spec" or not isinstance(entry, dict):
            continue
        if entry.get(_FIELDS["input"]) is None and entry.get(_FIELDS["output"]) is None:
            continue  # priced per image / second / request: not a token price
        try:
            rates = {key: rate_from_per_token(entry[field]) for key, field in _FIELDS.items()
                     if entry.get(field) is not None}
        except ValueError as exc:
            raise ValueError(f"{model}: {exc}") from None
        rates.setdefault("input", 0)
        rates.setdefault("output", 0)
        provider = entry.get("litellm_provider")
        models[str(model).lower()] = ModelPrice.build(**rates, provider=str(provider) if provider else None)
    if not models:
        raise ValueError("no model with token prices found")
    if valid_from is None and valid_until is None:
        return PriceTable(name=name, version=version, digest=content_digest(data), models=models, path=path)
    dated = {model: (DatedPrice(price, valid_from, valid_until, period_id(model, valid_from, valid_until)),)
             for model, price in models.items()}
    return PriceTable(name=name, version=version, digest=content_digest(data), models={}, path=path, dated=dated)
