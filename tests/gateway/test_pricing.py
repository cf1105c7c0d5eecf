"""The price table: look-ups by alias and upstream name, dated snapshots, overrides, unknown prices."""

from __future__ import annotations

import pytest

from adapters.base import Usage
from gateway.config.schema import PriceConfig
from gateway.pricing import BUILT_IN, PRICE_TABLE_VERSION, Price, look_up, price_table


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("gpt-5.4-nano", "gpt-5.4-nano"),
        ("my-local-llama", None),
        ("gpt-4o-mini-20240718-extra", None),
    ],
)
def test_look_up_by_name_or_dated_snapshot(name: str, expected: str | None) -> None:
    assert look_up(BUILT_IN, name) is (BUILT_IN[expected] if expected else None)


def test_cost_splits_cached_and_cache_write_tokens() -> None:
    price = Price(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)
    usage = Usage(prompt_tokens=1_000, completion_tokens=100, cached_tokens=600, cache_write_tokens=200)
    assert price.cost(usage) == pytest.approx((200 * 3.0 + 600 * 0.3 + 200 * 3.75 + 100 * 15.0) / 1e6)


def test_an_override_has_its_own_version_and_the_built_in_keeps_the_table_date() -> None:
    table = price_table({"gpt-4o-mini": PriceConfig(input=1.0, output=2.0), "mine": PriceConfig(input=0.5, output=1)})
    assert table["gpt-4o-mini"].input == 1.0 and table["gpt-4o-mini"].version.startswith("config-")
    assert table["mine"].version.startswith("config-") and table["mine"].version != table["gpt-4o-mini"].version
    assert table["gpt-4o"].version == PRICE_TABLE_VERSION
