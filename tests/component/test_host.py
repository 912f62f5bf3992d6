"""The typed host: the price book is the host's, whichever price processors exist."""

from __future__ import annotations

from pathlib import Path

from costctx.component.host import Host
from costctx.pricing.book import builtin_book
from costctx.processors.price.config import PriceConfig
from costctx.processors.price.processor import PriceProcessor


def test_without_a_price_processor_the_book_is_the_builtin_table() -> None:
    book = Host().price_book
    expected = builtin_book().estimate("gpt-4o", 1000, 100)
    assert expected is not None and book.estimate("gpt-4o", 1000, 100).pico == expected.pico


def test_the_first_price_processor_prices_into_the_host_book_later_ones_keep_their_own(tmp_path: Path) -> None:
    overrides = tmp_path / "prices.yaml"
    overrides.write_text("providers:\n  acme:\n    my-model: {input: 1.00, output: 2.00}\n")
    host = Host()
    handle = host.price_book  # taken before any price processor exists, as a budget engine may
    sources = ["builtin", {"type": "overrides", "path": str(overrides)}]
    first = PriceProcessor("price", PriceConfig.model_validate({"sources": sources}), host)
    second = PriceProcessor("price/b", PriceConfig(), host)
    assert first.book is handle and second.book is not handle
    assert handle.estimate("my-model", 1_000_000, 0).pico == 10**12  # $1.00 per million input tokens
    assert second.book.estimate("my-model", 1_000_000, 0) is None
    assert host.spend_ledger is first.ledger
