"""The YAML price format shared by the built-in table and users' override files.

```yaml
version: 2026-11-01              # optional; written into cost.price_source
unit: usd_per_million_tokens     # the only unit; stated so nobody reads figures as per-1k
providers:                        # rows grouped by provider (sets the cache-token mode)
  openai:
    gpt-4o: {input: 2.50, cache_read: 1.25, output: 10.00}
    o3:                           # prices with effective dates (UTC; `from` inclusive, `until` exclusive)
      - {until: 2025-06-10, input: 10.00, output: 40.00}
      - {from: 2025-06-10, input: 2.00, cache_read: 0.50, output: 8.00}
models:                           # rows with no provider, e.g. a self-hosted model
  acme-llama-70b: {input: 0.20, output: 0.20}
aliases:                          # span model name -> table model name
  my-gpt: gpt-4o
```
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from costctx.pricing.table import (
    DatedPrice,
    ModelPrice,
    PriceTable,
    content_digest,
    dated_prices,
    parse_instant,
    price_from_per_million,
)

UNIT = "usd_per_million_tokens"
_TOP_KEYS = {"version", "unit", "providers", "models", "aliases"}


def parse_yaml_table(data: bytes, name: str, version: str | None = None, path: str | None = None) -> PriceTable:
    """Parse and validate; raises ValueError naming the bad row so a reload failure says why."""
    try:
        raw: Any = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError("the top level must be a mapping with 'providers' and/or 'models'")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ValueError(f"unknown top-level keys {sorted(unknown)} (known: {', '.join(sorted(_TOP_KEYS))})")
    unit = raw.get("unit", UNIT)
    if unit != UNIT:
        raise ValueError(f"unit {unit!r} is not supported; write prices as {UNIT}")
    providers = raw.get("providers") or {}
    if not isinstance(providers, dict):
        raise ValueError("providers: expected a mapping of provider -> models")
    models: dict[str, ModelPrice] = {}
    dated: dict[str, tuple[DatedPrice, ...]] = {}
    for provider, rows in providers.items():
        if not isinstance(rows, dict):
            raise ValueError(f"providers.{provider}: expected a mapping of model -> prices")
        _add_rows(models, dated, rows, str(provider), f"providers.{provider}")
    _add_rows(models, dated, raw.get("models") or {}, None, "models")
    if not models and not dated:
        raise ValueError("no model prices found")
    aliases = raw.get("aliases") or {}
    if not isinstance(aliases, dict):
        raise ValueError("aliases: expected a mapping of name -> model")
    # YAML reads an unquoted 2026-11-01 as a date; the label is its text either way.
    file_version = raw.get("version")
    return PriceTable(
        name=name,
        version=version or (str(file_version) if file_version is not None else None),
        digest=content_digest(data),
        models=models,
        aliases={str(k).lower(): str(v).lower() for k, v in aliases.items()},
        path=path,
        dated=dated,
    )


def _add_rows(models: dict[str, ModelPrice], dated: dict[str, tuple[DatedPrice, ...]], rows: Any,
              provider: str | None, where: str) -> None:
    """A row is a mapping of rates (with optional `from`/`until`), or a list of such mappings:
    one model's prices over time. At most one of them may be undated (the fallback)."""
    if not isinstance(rows, dict):
        raise ValueError(f"{where}: expected a mapping of model -> prices")
    for model, entry in rows.items():
        name = str(model).lower()
        here = f"{where}.{model}"
        entries = entry if isinstance(entry, list) else [entry]
        if not entries:
            raise ValueError(f"{here}: an empty list of prices")
        periods: list[tuple[ModelPrice, int | None, int | None]] = []
        for i, item in enumerate(entries):
            at = f"{here}[{i}]" if isinstance(entry, list) else here
            try:
                price = price_from_per_million(item, provider)
            except ValueError as exc:
                raise ValueError(f"{at}: {exc}") from None
            start = parse_instant(item["from"], f"{at}.from") if item.get("from") is not None else None
            end = parse_instant(item["until"], f"{at}.until") if item.get("until") is not None else None
            if start is None and end is None:
                if name in models:
                    raise ValueError(f"{here}: more than one undated price (give each a 'from' or 'until')")
                models[name] = price
            else:
                periods.append((price, start, end))
        if periods:
            dated[name] = dated_prices(name, periods, here)


def builtin_bytes() -> bytes:
    return resources.files("costctx.pricing").joinpath("builtin_prices.yaml").read_bytes()


def load_builtin() -> PriceTable:
    """The dated table shipped in the package: `builtin@<version>#<digest>`."""
    return parse_yaml_table(builtin_bytes(), name="builtin")
