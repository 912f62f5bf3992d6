"""The cost of one model call, exactly, with the arithmetic kept for people to read.

Token semantics (OpenTelemetry GenAI rule): `input_tokens` INCLUDES cache-read and
cache-creation tokens; `output_tokens` INCLUDES reasoning tokens. So, in "inclusive" mode:

    uncached input = input - cache_read - cache_creation   (priced at the input rate)
    visible output = output - reasoning                    (priced at the output rate)
    cost = uncached*input_rate + cache_read*cache_read_rate + cache_creation*cache_creation_rate
         + visible*output_rate + reasoning*reasoning_rate

"additive" mode is for emitters that report cache tokens BESIDE input (Anthropic's API
does): uncached input = input, and the cache counts are added on top. Reasoning is always
part of output; a count that cannot be (reasoning > output, or cached > input in inclusive
mode) is treated as reported beside it, and flagged so the mismatch can be counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.pricing.money import format_rate, format_usd
from sidecar.pricing.table import ModelPrice

INCLUSIVE = "inclusive"
ADDITIVE = "additive"


@dataclass(frozen=True, slots=True)
class Usage:
    input: int
    output: int
    cache_read: int = 0
    cache_creation: int = 0
    reasoning: int = 0


@dataclass(frozen=True, slots=True)
class CostLine:
    label: str
    tokens: int
    rate: int  # pico-USD per token

    @property
    def amount(self) -> int:
        return self.tokens * self.rate

    def describe(self) -> str:
        return f"{self.label}: {self.tokens} tokens x {format_rate(self.rate)} = {format_usd(self.amount)}"


@dataclass(frozen=True, slots=True)
class Cost:
    pico: int
    lines: tuple[CostLine, ...]
    mode: str
    # True when the counts contradicted the mode and were read as "beside" instead.
    inconsistent: bool = False


def price_usage(price: ModelPrice, usage: Usage, mode: str = INCLUSIVE) -> Cost:
    cached = usage.cache_read + usage.cache_creation
    inconsistent = False
    if mode == INCLUSIVE and cached > usage.input:
        mode, inconsistent = ADDITIVE, True
    uncached = usage.input - cached if mode == INCLUSIVE else usage.input
    if usage.reasoning > usage.output:
        visible, inconsistent = usage.output, True
    else:
        visible = usage.output - usage.reasoning
    lines = tuple(
        line
        for line in (
            CostLine("input (uncached)" if mode == INCLUSIVE else "input", uncached, price.input),
            CostLine("cache read", usage.cache_read, price.cache_read),
            CostLine("cache creation", usage.cache_creation, price.cache_creation),
            CostLine("output", visible, price.output),
            CostLine("reasoning", usage.reasoning, price.reasoning),
        )
        if line.tokens
    )
    return Cost(pico=sum(line.amount for line in lines), lines=lines, mode=mode, inconsistent=inconsistent)
