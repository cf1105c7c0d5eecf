"""What tokens cost: a built-in table (USD per 1M tokens), overridden by the config's `pricing:`.

Looked up by model alias first (what the client asked for), then by the upstream model name, each
also without a dated snapshot suffix. An unknown price is `None`, never zero: a USD budget cannot be
enforced on a model without a price. Not modelled: long-context surcharges (GPT-5.4 above 272K input
tokens), batch and priority tiers; override with `pricing:` where they apply.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from adapters.base import Usage
from gateway.config.schema import PriceConfig

# .1: hour-long cache writes at their own price (2x input); .2: gpt-4o-2024-05-13, Claude 4 and 3.7's dated names
PRICE_TABLE_VERSION = "2026-11-22.2"


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens of each kind. A kind without its own price is billed at the price of its side's text
    (input or output), but for a write cached for an hour, which falls back to the price of any cache write
    first. Audio tokens are billed at the audio price only past the cached ones (a cached audio token, which
    OpenAI's chat usage does not tell apart, is billed at the cached price)."""

    input: float  # USD per 1M prompt tokens
    output: float  # USD per 1M completion tokens
    cached_input: float | None = None
    cache_write: float | None = None  # Anthropic: a write cached for 5 minutes (1.25x input)
    cache_write_1h: float | None = None  # Anthropic: a write cached for an hour (2x input)
    audio_input: float | None = None  # OpenAI's audio models: prompt tokens of audio
    audio_output: float | None = None  # and completion tokens of audio
    version: str = PRICE_TABLE_VERSION  # the built-in table's date, or "config-<hash>" for a `pricing:` entry

    def cost(self, usage: Usage) -> float:
        cached = usage.cached_tokens if self.cached_input is not None else 0
        has_write_price = self.cache_write is not None or self.cache_write_1h is not None
        written = usage.cache_write_tokens if has_write_price else 0
        hour = min(usage.cache_write_1h_tokens, written)
        plain = max(0, usage.prompt_tokens - cached - written)
        write = self.input if self.cache_write is None else self.cache_write
        write_1h = write if self.cache_write_1h is None else self.cache_write_1h
        heard = min(usage.audio_prompt_tokens, plain)
        spoken = min(usage.audio_completion_tokens, usage.completion_tokens)
        total = (plain - heard) * self.input + (usage.completion_tokens - spoken) * self.output
        total += heard * (self.input if self.audio_input is None else self.audio_input)
        total += spoken * (self.output if self.audio_output is None else self.audio_output)
        total += cached * (self.cached_input or 0.0) + (written - hour) * write + hour * write_1h
        return total / 1_000_000

    def worst_case(self, prompt_tokens: int, completion_tokens: int) -> float:
        highest_input = max(self.input, self.cache_write or 0.0, self.cache_write_1h or 0.0, self.audio_input or 0.0)
        highest_output = max(self.output, self.audio_output or 0.0)
        return (prompt_tokens * highest_input + completion_tokens * highest_output) / 1_000_000


BUILT_IN: Mapping[str, Price] = MappingProxyType(
    {
        "gpt-5.5": Price(5.00, 30.00, 0.50),
        "gpt-5.4": Price(2.50, 15.00, 0.25),
        "gpt-5.4-mini": Price(0.75, 4.50, 0.075),
        "gpt-5.4-nano": Price(0.20, 1.25, 0.02),
        "gpt-5": Price(1.25, 10.00, 0.125),
        "gpt-5-mini": Price(0.25, 2.00, 0.025),
        "gpt-5-nano": Price(0.05, 0.40, 0.005),
        "gpt-4o": Price(2.50, 10.00, 1.25),
        "gpt-4o-2024-05-13": Price(5.00, 15.00),  # the first snapshot kept its launch price, and has no cache price
        "gpt-4o-mini": Price(0.15, 0.60, 0.075),
        "gpt-4.1": Price(2.00, 8.00, 0.50),
        "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
        "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
        "o3": Price(2.00, 8.00, 0.50),
        "o4-mini": Price(1.10, 4.40, 0.275),
        "text-embedding-3-small": Price(0.02, 0.0),
        "text-embedding-3-large": Price(0.13, 0.0),
        "claude-3-5-haiku-latest": Price(0.80, 4.00, 0.08, 1.00, 1.60),
        "claude-3-5-haiku-20241022": Price(0.80, 4.00, 0.08, 1.00, 1.60),
        "claude-haiku-4-5": Price(1.00, 5.00, 0.10, 1.25, 2.00),
        "claude-opus-4-6": Price(5.00, 25.00, 0.50, 6.25, 10.00),
        "claude-opus-4-5": Price(5.00, 25.00, 0.50, 6.25, 10.00),
        "claude-sonnet-4-6": Price(3.00, 15.00, 0.30, 3.75, 6.00),
        "claude-sonnet-4-5": Price(3.00, 15.00, 0.30, 3.75, 6.00),
        "claude-sonnet-4-0": Price(3.00, 15.00, 0.30, 3.75, 6.00),
        "claude-sonnet-4": Price(3.00, 15.00, 0.30, 3.75, 6.00),  # claude-sonnet-4-20250514 without its date
        "claude-opus-4-0": Price(15.00, 75.00, 1.50, 18.75, 30.00),
        "claude-opus-4": Price(15.00, 75.00, 1.50, 18.75, 30.00),  # claude-opus-4-20250514 without its date
        "claude-3-7-sonnet-latest": Price(3.00, 15.00, 0.30, 3.75, 6.00),
        "claude-3-7-sonnet": Price(3.00, 15.00, 0.30, 3.75, 6.00),  # claude-3-7-sonnet-20250219 without its date
        "claude-opus-4-1": Price(15.00, 75.00, 1.50, 18.75, 30.00),
        "mock-1": Price(0.0, 0.0),  # the built-in mock provider's models cost nothing
        "mock-embedding": Price(0.0, 0.0),
    }
)


SNAPSHOT_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2})$")


def look_up(prices: Mapping[str, Price], name: str) -> Price | None:
    """By exact name, else without a dated snapshot suffix (claude-haiku-4-5-20251001, gpt-4o-2024-08-06)."""
    price = prices.get(name)
    if price is None:
        base = SNAPSHOT_SUFFIX.sub("", name)
        price = prices.get(base) if base != name else None
    return price


ADDED_PRICE_FIELDS = ("cache_write_1h", "audio_input", "audio_output")  # PriceConfig's fields after the first four


def price_table(overrides: Mapping[str, PriceConfig]) -> dict[str, Price]:
    table = dict(BUILT_IN)
    for name, p in overrides.items():
        # (fields added since are left out while unset, so that an entry keeps the version it had)
        unset = {key for key in ADDED_PRICE_FIELDS if getattr(p, key) is None}
        digest = hashlib.sha256(p.model_dump_json(exclude=unset).encode()).hexdigest()[:8]
        table[name] = Price(
            p.input,
            p.output,
            p.cached_input,
            p.cache_write,
            p.cache_write_1h,
            p.audio_input,
            p.audio_output,
            f"config-{digest}",
        )
    return table
