"""The price table: look-ups by alias and upstream name, dated snapshots, overrides, unknown prices."""

from __future__ import annotations

import hashlib

import pytest

from adapters.base import Usage
from gateway.config.loader import load_text
from gateway.config.schema import PriceConfig
from gateway.pricing import BUILT_IN, PRICE_TABLE_VERSION, Price, look_up, price_table
from gateway.runtime import worst_prices


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("gpt-5.4-nano", "gpt-5.4-nano"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # $5 and $15, not gpt-4o's $2.50 and $10
        # Anthropic's own names for these models (claude-sonnet-4-0 and the like are aliases of them)
        ("claude-sonnet-4-20250514", "claude-sonnet-4-0"),
        ("claude-opus-4-20250514", "claude-opus-4-0"),
        ("claude-3-7-sonnet-20250219", "claude-3-7-sonnet-latest"),
        ("my-local-llama", None),
        ("gpt-4o-mini-20240718-extra", None),
    ],
)
def test_look_up_by_name_or_dated_snapshot(name: str, expected: str | None) -> None:
    assert look_up(BUILT_IN, name) == (BUILT_IN[expected] if expected else None)
    if name == "gpt-4o-2024-05-13":
        assert (BUILT_IN[name].input, BUILT_IN[name].output, BUILT_IN[name].cached_input) == (5.0, 15.0, None)


def test_cost_splits_cached_and_cache_write_tokens() -> None:
    price = Price(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)
    usage = Usage(prompt_tokens=1_000, completion_tokens=100, cached_tokens=600, cache_write_tokens=200)
    assert price.cost(usage) == pytest.approx((200 * 3.0 + 600 * 0.3 + 200 * 3.75 + 100 * 15.0) / 1e6)


def test_an_override_has_its_own_version_and_the_built_in_keeps_the_table_date() -> None:
    table = price_table({"gpt-4o-mini": PriceConfig(input=1.0, output=2.0), "mine": PriceConfig(input=0.5, output=1)})
    assert table["gpt-4o-mini"].input == 1.0 and table["gpt-4o-mini"].version.startswith("config-")
    assert table["mine"].version.startswith("config-") and table["mine"].version != table["gpt-4o-mini"].version
    assert table["gpt-4o"].version == PRICE_TABLE_VERSION


HOUR_WRITES = Usage(prompt_tokens=1_000, completion_tokens=0, cache_write_tokens=600, cache_write_1h_tokens=400)


@pytest.mark.parametrize(
    ("price", "per_million"),
    [
        # 400 written for an hour at their price, 200 for 5 minutes at theirs, 400 plain at the input price
        (Price(3.0, 15.0, 0.3, 3.75, 6.0), 400 * 3.0 + 200 * 3.75 + 400 * 6.0),
        (Price(3.0, 15.0, 0.3, 3.75), 400 * 3.0 + 600 * 3.75),  # no hour price: a cache write's
        (Price(3.0, 15.0, 0.3, None, 6.0), 600 * 3.0 + 400 * 6.0),
        (Price(3.0, 15.0), 1_000 * 3.0),  # no write price at all: the input price
    ],
)
def test_writes_cached_for_an_hour_are_billed_at_their_own_price(price: Price, per_million: float) -> None:
    assert price.cost(HOUR_WRITES) == pytest.approx(per_million / 1e6)


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_the_worst_case_covers_a_prompt_written_to_the_cache_for_an_hour(name: str) -> None:
    """Anthropic's hour-long cache writes cost twice the input price: a USD budget's reservation must cover a
    prompt written whole to it, or a settlement could spend more than was reserved."""
    price = BUILT_IN[name]
    written = Usage(10_000, 100, cache_write_tokens=10_000, cache_write_1h_tokens=10_000)
    assert price.worst_case(10_000, 100) >= price.cost(written)
    if name.startswith("claude"):
        assert price.cache_write_1h == 2 * price.input


def test_an_override_may_price_hour_long_writes_and_an_entry_without_keeps_its_version() -> None:
    before = price_table({"mine": PriceConfig(input=3.0, output=15.0, cache_write=3.75)})["mine"]
    assert (
        before.version
        == "config-"
        + hashlib.sha256(b'{"input":3.0,"output":15.0,"cached_input":null,"cache_write":3.75}').hexdigest()[:8]
    )  # the digest of an entry written before cache_write_1h existed
    hour = price_table({"mine": PriceConfig(input=3.0, output=15.0, cache_write=3.75, cache_write_1h=6.0)})["mine"]
    assert hour.cache_write_1h == 6.0 and hour.version != before.version


def test_the_worst_price_of_an_alias_counts_its_fallbacks_hour_long_writes() -> None:
    config = load_text(
        """
providers:
  openai: {type: openai, api_key: sk-x}
  anthropic: {type: anthropic, api_key: sk-y}
models:
  gpt: {deployments: [{provider: openai, model: gpt-4o}], fallbacks: [claude]}
  claude: {deployments: [{provider: anthropic, model: claude-opus-4-1}]}
tenants: {t: {keys: [{id: k, sha256: "%s"}], models: ["*"]}}
"""
        % ("0" * 64)
    ).config
    worst = worst_prices(config, BUILT_IN)["gpt"]
    assert worst is not None
    assert worst.worst_case(1_000_000, 0) == 30.0  # claude-opus-4-1's hour-long write, above its $15 input


AUDIO = Usage(prompt_tokens=1_000, completion_tokens=500, cached_tokens=100, audio_prompt_tokens=800,
              audio_completion_tokens=400)  # fmt: skip


@pytest.mark.parametrize(
    ("price", "per_million"),
    [
        # 100 cached, 800 of audio, 100 of text in; 400 of audio, 100 of text out
        (Price(2.5, 10.0, 1.25, audio_input=32, audio_output=64), 100 * 1.25 + 800 * 32 + 100 * 2.5 + 400 * 64 + 1000),
        (Price(2.5, 10.0, 1.25), 100 * 1.25 + 900 * 2.5 + 500 * 10),  # no audio price: the text price
    ],
)  # fmt: skip
def test_audio_tokens_are_billed_at_their_own_price(price: Price, per_million: float) -> None:
    assert price.cost(AUDIO) == pytest.approx(per_million / 1e6)
    assert price.worst_case(AUDIO.prompt_tokens, AUDIO.completion_tokens) >= price.cost(AUDIO)


def test_an_override_prices_audio() -> None:
    price = price_table({"gpt-audio": PriceConfig(input=2.5, output=10, audio_input=32, audio_output=64)})["gpt-audio"]
    assert (price.audio_input, price.audio_output) == (32.0, 64.0)
    assert price.worst_case(1_000_000, 1_000_000) == 32.0 + 64.0
