"""`costctx price`: the cost of one call, with the rates and the source that produced it;
`--at`/`--source` re-price as of a past instant with the exact table version a span names;
`--explain-span` shows the arithmetic behind a recorded span's `cost.usd`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from costctx.pricing.archive import PriceArchive
from costctx.pricing.book import Estimate, PriceBook
from costctx.pricing.calc import ADDITIVE, Usage
from costctx.pricing.money import format_usd, to_usd_float
from costctx.pricing.reprice import SourceNotFound, period_instant, split_source, table_for_source
from costctx.pricing.resolve import candidates
from costctx.pricing.sources import PriceSources, SourceSpec
from costctx.pricing.span_usage import SpanCall, attributes_from_json, read_call
from costctx.pricing.table import UNDATED, format_instant, parse_instant
from costctx.pricing.yaml_table import load_builtin

MODE_TEXT = {
    "inclusive": "inclusive (cache tokens are part of --input; OpenTelemetry rule)",
    ADDITIVE: "additive (cache tokens are reported beside --input)",
}


class PriceSetup:
    """The price sources, archive and book settings a command prices with."""

    def __init__(self, sources: PriceSources, aliases=None, modes=None, default_mode: str = "inclusive") -> None:
        self.sources = sources
        self.aliases = aliases or {}
        self.modes = modes or {}
        self.default_mode = default_mode

    def book(self, tables=None) -> PriceBook:
        return PriceBook(tables if tables is not None else (self.sources.tables() or [load_builtin()]),
                         self.aliases, self.modes, self.default_mode)


def setup_from_config(config, processor: str | None, history: str | None, err: TextIO) -> PriceSetup | None:
    """The sources, archive, aliases and modes a configured price processor would use."""
    from costctx.processors.price.config import build_archive, source_specs
    from costctx.service.registry import processor_type

    names = [n for n in config.processors if processor_type(n) == "price"]
    name = processor if processor else (names[0] if names else None)
    if name is None or name not in names:
        print(f"costctx: no price processor {processor or ''} in the config".replace("  ", " "), file=err)
        return None
    section = config.processors[name]
    archive = PriceArchive(history, section.history.max_versions) if history else build_archive(section)
    sources = PriceSources(source_specs(section), archive)
    for event in sources.refresh():
        if not event.ok:
            print(f"costctx: price source {event.source} not loaded: {event.detail}", file=err)
    return PriceSetup(sources, section.aliases, section.cache_token_modes, section.default_cache_token_mode)


def book_from_config(config, processor: str | None, err: TextIO) -> PriceBook | None:
    """The book a configured price processor would build (its sources, aliases and modes)."""
    setup = setup_from_config(config, processor, None, err)
    return setup.book() if setup is not None else None


def price_command(args: argparse.Namespace, config=None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout  # looked up per call: tests and callers may swap sys.stdout
    err = err or sys.stderr
    history = getattr(args, "history", None)
    if config is not None:
        setup = setup_from_config(config, args.processor, history, err)
        if setup is None:
            return 2
    else:
        sources = PriceSources([SourceSpec("builtin")], PriceArchive(history) if history else None)
        sources.refresh()
        setup = PriceSetup(sources)
    if getattr(args, "explain_span", None):
        return explain_span(args, setup, out, err)
    usage = Usage(input=args.input, output=args.output, cache_read=args.cache_read,
                  cache_creation=args.cache_creation, reasoning=args.reasoning,
                  image=getattr(args, "image_input", 0), audio=getattr(args, "audio_input", 0))
    try:
        book, at = _book_and_instant(args, setup, getattr(args, "source", None))
    except (SourceNotFound, ValueError) as exc:
        print(f"costctx: {exc}", file=err)
        return 2
    estimate = book.price(usage, args.model, None, args.provider, at)
    if estimate is None:
        tried = ", ".join(name for name, _ in candidates(args.model, args.provider, book.aliases))
        print(f"costctx: no price for {args.model!r} in {', '.join(book.source_ids)} (tried: {tried})", file=err)
        return 1
    print(f"model     {args.model} -> {_matched(estimate)}", file=out)
    _print_arithmetic(estimate, at, out)
    return 0


def _book_and_instant(args: argparse.Namespace, setup: PriceSetup, source: str | None) -> tuple[PriceBook, int | None]:
    """The book (one archived table when a source is named) and the instant to price at:
    --at, else inside the period the source names, else undated rows (source without a
    period), else now."""
    at = parse_instant(args.at, "--at") if getattr(args, "at", None) else None
    if not source:
        return setup.book(), at
    table = table_for_source(source, setup.sources.archive, setup.sources.tables())
    _, entry = split_source(source)
    if at is None:
        at = period_instant(entry) if entry else UNDATED
    return setup.book([table]), at


def _matched(estimate: Estimate) -> str:
    res = estimate.resolution
    return res.key if res.how == "exact" else f"{res.key} ({res.how})"


def _print_arithmetic(estimate: Estimate, at: int | None, out: TextIO) -> None:
    cost = estimate.cost
    print(f"source    {estimate.source}", file=out)
    when = "undated rows" if at == UNDATED else ("now" if at is None else format_instant(at))
    print(f"at        {when}", file=out)
    print(f"mode      {MODE_TEXT[cost.mode]}", file=out)
    for line in cost.lines:
        print(f"  {line.describe()}", file=out)
    if cost.inconsistent:
        print("  note: the counts contradict the mode (cached > input or reasoning > output);"
              " read as reported beside", file=out)
    print(f"cost.usd  {format_usd(estimate.pico)}", file=out)


def explain_span(args: argparse.Namespace, setup: PriceSetup, out: TextIO, err: TextIO) -> int:
    """Show the arithmetic behind a span's cost.usd; exit 0 when it reproduces the recorded cost."""
    try:
        text = sys.stdin.read() if args.explain_span == "-" else Path(args.explain_span).read_text(encoding="utf-8")
        attributes, start = attributes_from_json(json.loads(text))
    except (OSError, ValueError) as exc:
        print(f"costctx: cannot read the span: {exc}", file=err)
        return 2
    call = read_call(attributes)
    model = call.response_model or call.request_model
    print(f"span      model {model or '(none)'}, provider {call.provider or '(none)'}", file=out)
    if call.recorded_origin == "reported" or (call.recorded_source or "").startswith("reported:"):
        print(f"origin    reported by the provider ({call.recorded_source}): cost.usd is the provider's figure, "
              "not computed here", file=out)
        return 0
    if model is None or call.usage is None:
        print("costctx: the span has no model or no input/output token counts: it was not priced", file=err)
        return 1
    source = getattr(args, "source", None) or call.recorded_source
    if not getattr(args, "at", None) and start is not None and not (source and split_source(source)[1]):
        args.at = format_instant(start) if source is None else None
    try:
        book, at = _book_and_instant(args, setup, source)
    except (SourceNotFound, ValueError) as exc:
        print(f"costctx: {exc}", file=err)
        return 2
    estimate = book.price(call.usage, call.response_model, call.request_model, call.provider, at)
    if estimate is None:
        print(f"costctx: no price for {model!r} in {', '.join(book.source_ids)}", file=err)
        return 1
    print(f"model     {model} -> {_matched(estimate)}", file=out)
    _print_arithmetic(estimate, at, out)
    return _compare_recorded(call, estimate, out)


def _compare_recorded(call: SpanCall, estimate: Estimate, out: TextIO) -> int:
    if call.recorded_usd is None:
        print("recorded  (the span carries no cost.usd)", file=out)
        return 0
    # The sidecar writes cost.usd as the double nearest the exact pico-USD amount: the same
    # conversion here reproduces it bit for bit, or the price differs.
    same = call.recorded_usd == to_usd_float(estimate.pico)
    print(f"recorded  {call.recorded_usd!r}: {'matches' if same else 'DIFFERS'}", file=out)
    return 0 if same else 1


def price_file_problems(config) -> list[str]:
    """Every configured price file that does not load, as `processors.<name>: source <label>
    (<path>): <reason>`: `costctx validate` and `costctx run` refuse such a config alike."""
    from costctx.processors.price.config import source_specs
    from costctx.service.registry import processor_type

    problems: list[str] = []
    for name, section in config.processors.items():
        if processor_type(name) != "price":
            continue
        # A throwaway archive: validating must not write into the sidecar's history directory.
        sources = PriceSources(source_specs(section), PriceArchive())
        for event in sources.refresh():
            if not event.ok:
                spec = next(s for s in sources.specs if s.label == event.source)
                problems.append(f"processors.{name}: price source {event.source} ({spec.path}): {event.detail}")
    return problems
