"""Prices: versioned price tables, model resolution, exact costs and workflow running spend."""

from costctx.pricing.book import Estimate, PriceBook, PriceBookHandle
from costctx.pricing.calc import ADDITIVE, INCLUSIVE, Cost, Usage, price_usage
from costctx.pricing.ledger import SpendLedger
from costctx.pricing.money import PICO_PER_USD, from_usd, to_usd_float

__all__ = [
    "ADDITIVE", "INCLUSIVE", "PICO_PER_USD", "Cost", "Estimate", "PriceBook", "PriceBookHandle",
    "SpendLedger", "Usage", "from_usd", "price_usage", "to_usd_float",
]
