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

Per-modality input (`gen_ai.usage.{image,audio}.input_tokens`, pending in the GenAI
conventions) is a breakdown of input, like cache tokens in inclusive mode: those tokens
leave the uncached-input line and are priced at the row's image / audio rate (which is the
input rate unless the table says otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

from costctx.pricing.money import format_rate, format_usd
from costctx.pricing.table import ModelPrice

INCLUSIVE = "inclusive"
ADDITIVE = "additive"


@dataclass(slots=True)
class Usage:
    input: int
    output: int
    cache_read: int = 0
    cache_creation: int = 0
    reasoning: int = 0
    image: int = 0      # input tokens that were images
    audio: int = 0      # input tokens that were audio


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


@dataclass(slots=True)
class Cost:
    """The exact amount; `lines` (the arithmetic, for people) is built only when asked for."""

    pico: int
    mode: str
    price: ModelPrice
    uncached: int
    visible: int
    usage: Usage
    # True when the counts contradicted the mode and were read as "beside" instead.
    inconsistent: bool = False

    @property
    def lines(self) -> tuple[CostLine, ...]:
        price, usage = self.price, self.usage
        candidates = (
            CostLine("input (uncached)" if self.mode == INCLUSIVE else "input", self.uncached, price.input),
            CostLine("cache read", usage.cache_read, price.cache_read),
            CostLine("cache creation", usage.cache_creation, price.cache_creation),
            CostLine("image input", usage.image, price.input_image),
            CostLine("audio input", usage.audio, price.input_audio),
            CostLine("output", self.visible, price.output),
            CostLine("reasoning", usage.reasoning, price.reasoning),
        )
        return tuple(line for line in candidates if line.tokens)


def price_usage(price: ModelPrice, usage: Usage, mode: str = INCLUSIVE) -> Cost:
    cached = usage.cache_read + usage.cache_creation
    inconsistent = False
    if mode == INCLUSIVE and cached > usage.input:
        mode, inconsistent = ADDITIVE, True
    uncached = usage.input - cached if mode == INCLUSIVE else usage.input
    modal = usage.image + usage.audio
    if modal:
        if modal > uncached:
            inconsistent = True  # more image/audio tokens than input left: read as beside it
        else:
            uncached -= modal
    if usage.reasoning > usage.output:
        visible, inconsistent = usage.output, True
    else:
        visible = usage.output - usage.reasoning
    # Integer arithmetic only: exact, and the same sum as the lines above.
    pico = (uncached * price.input + usage.cache_read * price.cache_read
            + usage.cache_creation * price.cache_creation + visible * price.output
            + usage.reasoning * price.reasoning
            + usage.image * price.input_image + usage.audio * price.input_audio)
    return Cost(pico, mode, price, uncached, visible, usage, inconsistent)
