"""`costctx price`: the cost of one call, with the rates and the source that produced it."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from costctx.pricing.book import PriceBook
from costctx.pricing.calc import ADDITIVE, Usage
from costctx.pricing.money import format_usd
from costctx.pricing.resolve import candidates
from costctx.pricing.sources import PriceSources, SourceSpec
from costctx.pricing.yaml_table import load_builtin

MODE_TEXT = {
    "inclusive": "inclusive (cache tokens are part of --input; OpenTelemetry rule)",
    ADDITIVE: "additive (cache tokens are reported beside --input)",
}


def book_from_config(config, processor: str | None, err: TextIO) -> PriceBook | None:
    """The book a configured price processor would build (its sources, aliases and modes)."""
    from costctx.processors.price.processor import build_book, source_specs
    from costctx.service.registry import processor_type

    names = [n for n in config.processors if processor_type(n) == "price"]
    name = processor if processor else (names[0] if names else None)
    if name is None or name not in names:
        print(f"costctx: no price processor {processor or ''} in the config".replace("  ", " "), file=err)
        return None
    section = config.processors[name]
    sources = PriceSources(source_specs(section))
    for event in sources.refresh():
        if not event.ok:
            print(f"costctx: price source {event.source} not loaded: {event.detail}", file=err)
    return build_book(section, sources)


def price_command(args: argparse.Namespace, config=None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout  # looked up per call: tests and callers may swap sys.stdout
    err = err or sys.stderr
    if config is not None:
        book = book_from_config(config, args.processor, err)
        if book is None:
            return 2
    else:
        sources = PriceSources([SourceSpec("builtin")])
        sources.refresh()
        book = PriceBook(sources.tables() or [load_builtin()])
    usage = Usage(input=args.input, output=args.output, cache_read=args.cache_read,
                  cache_creation=args.cache_creation, reasoning=args.reasoning)
    estimate = book.price(usage, args.model, None, args.provider)
    if estimate is None:
        tried = ", ".join(name for name, _ in candidates(args.model, args.provider, book.aliases))
        print(f"costctx: no price for {args.model!r} in {', '.join(book.source_ids)} (tried: {tried})", file=err)
        return 1
    res, cost = estimate.resolution, estimate.cost
    matched = res.key if res.how == "exact" else f"{res.key} ({res.how})"
    print(f"model     {args.model} -> {matched}", file=out)
    print(f"source    {estimate.source}", file=out)
    print(f"mode      {MODE_TEXT[cost.mode]}", file=out)
    for line in cost.lines:
        print(f"  {line.describe()}", file=out)
    if cost.inconsistent:
        print("  note: the counts contradict the mode (cached > input or reasoning > output);"
              " read as reported beside", file=out)
    print(f"cost.usd  {format_usd(estimate.pico)}", file=out)
    return 0
