"""Worked pricing examples, with the arithmetic written out (rates in USD per million tokens).

1 USD = 10^12 pico-USD; a rate of $R per million tokens is R * 10^6 pico-USD per token.
"""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from costctx.pricing.book import PriceBook
from costctx.pricing.calc import ADDITIVE, INCLUSIVE, Usage, price_usage
from costctx.pricing.ledger import SpendLedger
from costctx.pricing.litellm import parse_litellm
from costctx.pricing.money import format_usd, from_usd, rate_from_per_million, rate_from_per_token, to_usd_float
from costctx.pricing.resolve import MAX_DERIVED_NAME_LENGTH, candidates
from costctx.pricing.yaml_table import load_builtin, parse_yaml_table
from tests.support.paths import FIXTURES

FIXTURE = FIXTURES / "litellm_model_prices.json"


def usd(text: str) -> int:
    """An exact dollar amount written as text -> pico-USD."""
    return int(Decimal(text) * 10**12)


@pytest.fixture(scope="module")
def builtin():
    return load_builtin()


@pytest.fixture(scope="module")
def book(builtin):
    return PriceBook([builtin])


def test_rates_are_exact_integers_of_pico_usd():
    assert rate_from_per_million("2.50") == 2_500_000
    assert rate_from_per_million(0.0375) == 37_500          # 3.75e-8 $/token, not a whole nano-dollar
    assert rate_from_per_token(3.75e-08) == 37_500          # LiteLLM's unit gives the same integer
    assert rate_from_per_million(0.005) == 5_000
    with pytest.raises(ValueError):
        rate_from_per_million(-1)
    with pytest.raises(ValueError):
        rate_from_per_million("lots")


def test_builtin_table_is_dated_and_hash_identified(builtin):
    assert builtin.source_id.startswith("builtin@2026-11-01#")
    assert len(builtin.source_id.split("#")[1]) == 8
    providers = {p.provider for p in builtin.models.values()}
    assert {"openai", "anthropic", "google", "mistral"} <= providers


def test_openai_cached_input_is_subtracted_then_priced_at_cache_rate(book):
    # gpt-4o: input $2.50/M, cache read $1.25/M, output $10/M. OpenAI counts cached tokens
    # INSIDE input_tokens (inclusive mode):
    #   uncached = 10,000 - 4,000 = 6,000 x $2.50/M = $0.015
    #   cached   =          4,000 x $1.25/M = $0.005
    #   output   =            500 x $10/M   = $0.005
    #   total                               = $0.025
    est = book.price(Usage(input=10_000, output=500, cache_read=4_000), "gpt-4o", provider="openai")
    assert est.cost.mode == INCLUSIVE
    assert est.pico == usd("0.025")
    assert [(line.label, line.tokens) for line in est.cost.lines] == [
        ("input (uncached)", 6_000), ("cache read", 4_000), ("output", 500)]


def test_anthropic_cache_creation_and_read_are_added_beside_input(book):
    # claude-sonnet-4-5: input $3/M, cache write $3.75/M, cache read $0.30/M, output $15/M.
    # Anthropic reports cache tokens BESIDE input_tokens (additive mode, the default for anthropic):
    #   input          200 x $3/M    = $0.0006
    #   cache write  1,000 x $3.75/M = $0.00375
    #   cache read   3,000 x $0.30/M = $0.0009
    #   output         400 x $15/M   = $0.006
    #   total                        = $0.01125
    usage = Usage(input=200, output=400, cache_read=3_000, cache_creation=1_000)
    est = book.price(usage, "claude-sonnet-4-5-20250929", provider="anthropic")
    assert est.cost.mode == ADDITIVE
    assert est.pico == usd("0.01125")
    # The same counts from an emitter that follows the OTel rule would be impossible
    # (cached 4,000 > input 200): read as additive and flagged, never a negative cost.
    inclusive = PriceBook([book.tables[0]], token_modes={"anthropic": INCLUSIVE})
    flagged = inclusive.price(usage, "claude-sonnet-4-5", provider="anthropic")
    assert flagged.cost.inconsistent and flagged.pico == usd("0.01125")


def test_anthropic_in_inclusive_mode_when_configured(builtin):
    # A normalizing instrumentation that folds cache tokens into input (OTel rule):
    #   input 4,200 includes 3,000 read + 1,000 write -> uncached 200; same $0.01125 as above.
    book = PriceBook([builtin], token_modes={"anthropic": INCLUSIVE})
    est = book.price(Usage(input=4_200, output=400, cache_read=3_000, cache_creation=1_000),
                     "claude-sonnet-4-5", provider="anthropic")
    assert not est.cost.inconsistent
    assert est.pico == usd("0.01125")


def test_reasoning_tokens_at_their_own_rate_where_it_differs(book):
    # gemini-2.5-flash-preview-04-17: input $0.15/M, output $0.60/M, thinking output $3.50/M.
    # output_tokens (2,000) INCLUDES reasoning (1,500):
    #   input            1,000 x $0.15/M = $0.00015
    #   visible output     500 x $0.60/M = $0.0003
    #   reasoning        1,500 x $3.50/M = $0.00525
    #   total                            = $0.0057
    est = book.price(Usage(input=1_000, output=2_000, reasoning=1_500), "gemini-2.5-flash-preview-04-17")
    assert est.pico == usd("0.0057")
    # o3 bills reasoning as output ($8/M): 1,000 x $2/M + (500 + 2,500) x $8/M = $0.002 + $0.024 = $0.026
    est = book.price(Usage(input=1_000, output=3_000, reasoning=2_500), "o3")
    assert est.pico == usd("0.026")


def test_dated_snapshot_resolves_to_its_family(book):
    # gpt-4o-2024-08-06 -> gpt-4o: 1,000 x $2.50/M + 1,000 x $10/M = $0.0025 + $0.01 = $0.0125
    est = book.price(Usage(input=1_000, output=1_000), "gpt-4o-2024-08-06")
    assert (est.resolution.key, est.resolution.how) == ("gpt-4o", "dated snapshot")
    assert est.pico == usd("0.0125")
    for name, family in [("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
                         ("gemini-2.0-flash-001", "gemini-2.0-flash"),
                         ("mistral-large-2411", "mistral-large"), ("mistral-small-latest", "mistral-small")]:
        assert book.resolve(name).key == family


def test_overlong_model_names_are_looked_up_only_as_they_are(book):
    # Prefix x suffix stripping multiplies: this 6 KB name gave ~10^6 candidate names.
    hostile = "a/" * 1_000 + "gpt-4o" + "-001" * 1_000
    assert candidates(hostile, "openai") == [(hostile, "exact")]
    assert book.resolve(hostile) is None
    # Up to the bound, names still get every derived form.
    long_prefixed = "x/" * 100 + "gpt-4o-2024-08-06"
    assert len(long_prefixed) <= MAX_DERIVED_NAME_LENGTH
    assert book.resolve(long_prefixed).key == "gpt-4o"


def test_provider_prefix_is_stripped(book):
    # openai/gpt-4o-mini: 1M x $0.15/M + 1M x $0.60/M = $0.75
    est = book.price(Usage(input=1_000_000, output=1_000_000), "openai/gpt-4o-mini")
    assert (est.resolution.key, est.resolution.how) == ("gpt-4o-mini", "provider prefix")
    assert est.pico == usd("0.75")
    # A Bedrock id: cross-region profile, vendor and version stripped, then the date.
    bedrock = book.resolve("us.anthropic.claude-sonnet-4-5-20250929-v1:0", provider="aws.bedrock")
    assert bedrock.key == "claude-sonnet-4-5"
    assert book.mode_for("aws.bedrock", bedrock) == ADDITIVE     # by the row's provider, anthropic


def test_response_model_before_request_model_and_aliases_last(builtin):
    book = PriceBook([builtin], aliases={"our-default-model": "gpt-4o-mini"})
    # The response model says what actually ran: it wins over the requested one.
    assert book.resolve("gpt-4o-mini-2024-07-18", "gpt-4o").key == "gpt-4o-mini"
    # An unknown response model falls back to the request model.
    assert book.resolve("some-router-name", "gpt-4o").model == "gpt-4o"
    alias = book.resolve("our-default-model")
    assert alias.key == "gpt-4o-mini" and alias.how.startswith("alias")
    assert book.resolve("no-such-model") is None
    assert [c for c, _ in candidates("OpenAI/GPT-4o-2024-08-06")][:3] == [
        "openai/gpt-4o-2024-08-06", "gpt-4o-2024-08-06", "openai/gpt-4o"]


def test_override_beats_builtin(builtin):
    # A negotiated gpt-4o rate ($2/M in, $8/M out) layered after the built-in table:
    #   1,000 x $2/M + 1,000 x $8/M = $0.002 + $0.008 = $0.010 (built-in alone: $0.0125)
    overrides = parse_yaml_table(
        b"version: acme-2026q4\nproviders:\n  openai:\n    gpt-4o: {input: 2.00, output: 8.00}\n"
        b"models:\n  acme-llama-70b: {input: 0.20, output: 0.20}\n",
        name="overrides")
    book = PriceBook([builtin, overrides])
    est = book.price(Usage(input=1_000, output=1_000), "gpt-4o-2024-08-06", provider="openai")
    assert est.pico == usd("0.010")
    assert est.source.startswith("overrides@acme-2026q4#")
    # Models the override does not name still come from the built-in table.
    assert book.price(Usage(input=1_000, output=1_000), "gpt-4o-mini").source == builtin.source_id
    # A self-hosted model at an internal per-token rate: 1M x $0.20/M x 2 = $0.40
    assert book.price(Usage(input=1_000_000, output=1_000_000), "acme-llama-70b").pico == usd("0.40")


def test_yaml_errors_name_the_row():
    with pytest.raises(ValueError, match=r"providers.openai.gpt-4o: missing 'output'"):
        parse_yaml_table(b"providers:\n  openai:\n    gpt-4o: {input: 2}\n", name="overrides")
    with pytest.raises(ValueError, match="unit"):
        parse_yaml_table(b"unit: usd_per_1k_tokens\nmodels: {x: {input: 1, output: 1}}\n", name="overrides")
    # ValueError, the error a reload reports and counts, not a TypeError / AttributeError.
    with pytest.raises(ValueError, match=r"models.x: missing 'input'"):
        parse_yaml_table(b"models: {x: {input: null, output: 1}}\n", name="overrides")
    with pytest.raises(ValueError, match="providers: expected a mapping"):
        parse_yaml_table(b"providers: [openai]\n", name="overrides")


def test_litellm_fixture_parsed_and_used(builtin):
    table = parse_litellm(FIXTURE.read_bytes(), version="2026-11-15")
    assert table.source_id.startswith("litellm@2026-11-15#")
    assert "sample_spec" not in table.models and "dall-e-3" not in table.models
    assert table.models["gpt-4o"].cache_read == 1_250_000
    book = PriceBook([builtin, table])
    # mistral/mistral-large-latest is keyed with its provider: found by provider qualification.
    est = book.price(Usage(input=1_000_000, output=1_000_000), "mistral-large-latest", provider="mistral")
    assert est.resolution.key == "mistral/mistral-large-latest" and est.source == table.source_id
    # The OpenTelemetry provider name maps to LiteLLM's prefix: mistral_ai -> mistral/.
    assert book.resolve("mistral-large-latest", provider="mistral_ai").key == "mistral/mistral-large-latest"
    assert est.pico == usd("8")                          # $2 + $6
    # A dated snapshot only LiteLLM lists exactly: found exactly there (later layer wins).
    est = book.price(Usage(input=1_000, output=0, cache_read=0, cache_creation=1_000),
                     "claude-sonnet-4-5-20250929", provider="anthropic")
    # additive: 1,000 x $3/M + 1,000 x $3.75/M = $0.003 + $0.00375 = $0.00675
    assert est.resolution.how == "exact" and est.pico == usd("0.00675")
    # Reasoning rate read from output_cost_per_reasoning_token: 1,000 x $3.50/M = $0.0035
    est = book.price(Usage(input=0, output=1_000, reasoning=1_000), "gemini-2.5-flash-preview-04-17",
                     provider="gemini")
    assert est.pico == usd("0.0035")


def test_money_sums_exactly_where_floats_do_not():
    ledger = SpendLedger()
    total = 0
    for _ in range(10):
        total = ledger.add("wf", from_usd(0.1))
    assert total == usd("1") and to_usd_float(total) == 1.0
    assert sum([0.1] * 10) != 1.0                       # what a float running total would say
    assert format_usd(usd("0.01125")) == "$0.01125"


def test_ledger_is_bounded_and_age_limited():
    now = [0.0]
    ledger = SpendLedger(maxsize=2, ttl=10.0, timer=lambda: now[0])
    ledger.add("a", 1)
    ledger.add("b", 2)
    ledger.add("c", 3)                                   # over the bound: the oldest goes
    assert ledger.total("a") == 0 and ledger.evicted == 1
    now[0] = 8.0
    ledger.add("b", 2)                                   # an update restarts b's age
    now[0] = 15.0
    assert ledger.total("b") == 4
    now[0] = 18.0                                        # c: last updated 18 s ago, b 10 s ago
    assert ledger.total("b") == 4 and ledger.total("c") == 0 and ledger.expired == 1
    now[0] = 28.0                                        # kept at least ttl, forgotten by 2 x ttl
    assert ledger.total("b") == 0


def test_price_usage_without_cache_rates_falls_back_to_input_rate(builtin):
    # mistral-small has no cache rate: cached tokens are priced as input (100 x $0.10/M).
    price = builtin.models["mistral-small"]
    assert price_usage(price, Usage(input=100, output=0, cache_read=100)).pico == usd("0.00001")


def test_ledger_counts_a_resent_span_once_within_the_window():
    now = [0.0]
    ledger = SpendLedger(dedupe_size=2, dedupe_window=60.0, timer=lambda: now[0])
    assert ledger.add("wf", 5, span_key=b"span-1") == 5
    assert ledger.add("wf", 5, span_key=b"span-1") == 5          # the same span again: not added
    assert ledger.duplicates == 1
    now[0] = 61.0                                                # outside the window: a new observation
    assert ledger.add("wf", 5, span_key=b"span-1") == 10
    ledger.add("wf", 1, span_key=b"span-2")
    ledger.add("wf", 1, span_key=b"span-3")                      # size bound: span-1 forgotten
    assert ledger.add("wf", 5, span_key=b"span-1") == 17


def test_cost_lines_add_up_to_the_amount(book):
    usage = Usage(input=9_999, output=7_777, cache_read=1_234, cache_creation=55, reasoning=4_321)
    for model in ("gpt-4o", "claude-opus-4-5", "gemini-2.5-flash-preview-04-17", "mistral-large"):
        est = book.price(usage, model)
        assert sum(line.amount for line in est.cost.lines) == est.pico > 0


def test_absurd_amounts_convert_instead_of_raising():
    # Past Decimal's 28-digit precision and past the largest double: clients send such costs.
    assert from_usd(1e300) == 10**312
    assert rate_from_per_million("1e30") == 10**36
    assert to_usd_float(from_usd(1.7e308) * 2) == math.inf
    assert to_usd_float(from_usd(0.0125)) == 0.0125


def test_a_resolution_decided_once_still_follows_the_provider_and_the_counts(builtin):
    # Undated rows are resolved once per (response model, request model, provider) and book:
    # the provider picks the cache-token mode, so it is part of what is remembered.
    book = PriceBook([builtin], token_modes={"gateway": INCLUSIVE})
    usage = Usage(input=4_200, output=400, cache_read=3_000, cache_creation=1_000)
    gateway = book.price(usage, "claude-sonnet-4-5", provider="gateway")
    anthropic = book.price(usage, "claude-sonnet-4-5", provider="anthropic")
    assert gateway.cost.mode == INCLUSIVE and gateway.pico == usd("0.01125")
    assert anthropic.cost.mode == ADDITIVE and anthropic.pico == usd("0.02325")  # 4,200 input beside the cache
    again = book.price(Usage(input=1_000_000, output=0), "claude-sonnet-4-5", provider="anthropic")
    assert again.pico == usd("3") and again.source == anthropic.source
    assert book.price(usage, "no-such-model") is None and book.price(usage, "no-such-model") is None


def test_a_span_key_seen_under_one_workflow_never_hides_another_workflows_span():
    # Span ids travel in headers anyone can copy: a span sent under tenant B's workflow with the
    # ids of tenant A's span is B's spend, not a resend of A's (it was deduped away before).
    ledger = SpendLedger(timer=lambda: 0.0)
    assert ledger.add_batch([("wf-a", 5, b"trace+span"), ("wf-b", 7, b"trace+span"), ("wf-a", 5, b"trace+span")]) \
        == [5, 7, 5]
    assert ledger.duplicates == 1 and ledger.total("wf-b") == 7
