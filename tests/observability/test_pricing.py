"""PriceTable: shipped prices, lookup of dated names, cost arithmetic, user overrides."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lionpride.services.observability import ModelPrice, PriceTable, default_prices
from lionpride.services.types.response import Usage

SHIPPED = [
    "gpt-5.5",
    "gpt-5.4",
    "gpt-5.4-mini",
    "gpt-5.4-nano",
    "gpt-5.2",
    "gpt-5.1",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-4o",
    "gpt-4o-mini",
    "o3",
    "o4-mini",
    "claude-fable-5-1",
    "claude-opus-5-5",
    "claude-opus-5",
    "claude-opus-4-5",
    "claude-sonnet-5-5",
    "claude-sonnet-5",
    "claude-sonnet-4-6",
    "claude-haiku-5-5",
    "claude-opus-4-1",
    "claude-opus-4",
    "claude-sonnet-4-5",
    "claude-sonnet-4",
    "claude-haiku-4-5",
    "claude-3-5-haiku",
    "gemini-3-pro-preview",
    "gemini-3-flash-preview",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.0-flash",
    "llama-3.3-70b-versatile",
    "llama-3.1-8b-instant",
    "openai/gpt-oss-120b",
    "openai/gpt-oss-20b",
]


def test_shipped_table_is_dated_and_covers_current_models() -> None:
    """The shipped table names every listed model with a valid price and the date taken."""
    table = default_prices()
    assert table.taken == "2026-12-07"
    for model in SHIPPED:
        price = table.price_for(model)
        assert price is not None, model
        assert price.input > 0 and price.output >= price.input, model


def test_cost_prices_cached_and_reasoning_tokens_separately() -> None:
    """gpt-5 with cached input and reasoning tokens costs the hand-computed amount."""
    usage = Usage(
        input_tokens=10_000,
        output_tokens=2_000,
        total_tokens=12_000,
        cached_tokens=4_000,
        reasoning_tokens=500,
    )
    # 6,000 fresh * $1.25 + 4,000 cached * $0.125 + 1,500 visible * $10 + 500 reasoning * $10
    expected = (6_000 * 1.25 + 4_000 * 0.125 + 1_500 * 10 + 500 * 10) / 1e6
    assert expected == pytest.approx(0.028)
    assert default_prices().cost("gpt-5", usage) == pytest.approx(expected, rel=1e-12)


def test_cost_of_a_dated_anthropic_model() -> None:
    """claude-sonnet-4-5-20250929 is priced as claude-sonnet-4-5 ($3 in, $0.30 cached, $15 out)."""
    usage = Usage(input_tokens=1_000, output_tokens=200, cached_tokens=600)
    expected = (400 * 3 + 600 * 0.3 + 200 * 15) / 1e6
    cost = default_prices().cost("claude-sonnet-4-5-20250929", usage)
    assert cost == pytest.approx(expected, rel=1e-12)
    assert cost == pytest.approx(0.00438)


def test_missing_cache_price_defaults_to_input_price() -> None:
    """A model without a cache price charges cached input at the input price."""
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000, cached_tokens=400_000)
    cost = default_prices().cost("llama-3.3-70b-versatile", usage)
    assert cost == pytest.approx(0.59 + 0.79, rel=1e-12)


def test_registered_reasoning_price_is_used_without_double_counting() -> None:
    """Reasoning tokens are priced once, at their own price, out of output_tokens."""
    table = PriceTable()
    table.register_price("my-model", input=1.0, output=2.0, cached_input=0.5, reasoning=4.0)
    usage = Usage(
        input_tokens=1_000_000,
        output_tokens=1_000_000,
        cached_tokens=500_000,
        reasoning_tokens=250_000,
    )
    # 0.5M * $1 + 0.5M * $0.5 + 0.75M * $2 + 0.25M * $4
    assert table.cost("my-model", usage) == pytest.approx(3.25, rel=1e-12)


def test_dated_variants_match_but_loose_names_do_not() -> None:
    """Snapshot suffixes resolve to the base model; anything else is unknown, never guessed."""
    table = default_prices()
    assert table.price_for("gpt-4o-mini-2024-07-18") == table.price_for("gpt-4o-mini")
    assert table.price_for("GPT-4o-mini") == table.price_for("gpt-4o-mini")
    assert table.price_for("claude-opus-4-1-20250805") == table.price_for("claude-opus-4-1")
    assert table.price_for("claude-3-5-haiku-latest") == table.price_for("claude-3-5-haiku")
    assert table.price_for("gemini-2.0-flash-001") == table.price_for("gemini-2.0-flash")
    for unknown in ("gpt-4o-mini-x", "gpt-5-turbo", "claude-sonnet", "gpt", "gemini-2.5"):
        assert table.price_for(unknown) is None, unknown
        assert unknown not in table
    assert table.cost("gpt-6", Usage(input_tokens=10)) is None


def test_exact_snapshot_price_wins_over_its_base_model() -> None:
    """gpt-4o-2024-05-13 keeps its own launch price instead of gpt-4o's."""
    table = default_prices()
    old = table.price_for("gpt-4o-2024-05-13")
    assert old == ModelPrice(input=5.0, output=15.0, batch_input=2.5, batch_output=7.5)
    assert table.price_for("gpt-4o-2024-08-06") == table.price_for("gpt-4o")


def test_no_usage_or_model_means_no_cost() -> None:
    """Without usage or a model name the cost is None, not zero."""
    table = default_prices()
    assert table.cost("gpt-4o", None) is None
    assert table.cost(None, Usage(input_tokens=5)) is None


def test_default_prices_returns_independent_tables() -> None:
    """Overriding a price in one default table leaves the others (and the shipped data) alone."""
    first, second = default_prices(), default_prices()
    first.register_price("gpt-4o", input=0.0, output=0.0)
    first.register_price("brand-new", input=1.0, output=1.0)
    assert first.price_for("gpt-4o") == ModelPrice(input=0.0, output=0.0)
    assert second.price_for("gpt-4o") == ModelPrice(
        input=2.5, output=10.0, cached_input=1.25, batch_input=1.25, batch_output=5.0
    )
    assert "brand-new" not in second
    assert "brand-new" not in default_prices()


def test_load_json_extends_and_overrides(tmp_path: Path) -> None:
    """A user file adds models, replaces prices and its date; from_json builds a table."""
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "taken": "2030-01-01",
                "models": {
                    "gpt-4o": {"input": 1.0, "output": 2.0},
                    "house-model": {"input": 0.5, "output": 1.5, "cached_input": 0.1},
                },
            }
        )
    )
    table = default_prices()
    table.load_json(path)
    assert table.taken == "2030-01-01"
    assert table.price_for("gpt-4o") == ModelPrice(input=1.0, output=2.0)
    assert table.price_for("house-model") == ModelPrice(0.5, 1.5, cached_input=0.1)
    assert table.price_for("gpt-5") is not None
    only = PriceTable.from_json(path)
    assert len(only) == 2 and only.price_for("gpt-5") is None
    assert PriceTable.from_json(path).to_dict() == only.to_dict()


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"prices": {}}',
        '{"models": {"a": {"input": 1}}}',
        '{"models": {"a": {"input": 1, "output": 1, "extra": 2}}}',
        '{"models": {"ok": {"input": 1, "output": 1}, "a": {"input": -1, "output": 1}}}',
    ],
)
def test_bad_price_files_are_refused_and_change_nothing(tmp_path: Path, content: str) -> None:
    """A malformed file raises ValueError and leaves the table as it was."""
    path = tmp_path / "bad.json"
    path.write_text(content)
    table = PriceTable(taken="before")
    with pytest.raises(ValueError):
        table.load_json(path)
    assert len(table) == 0 and table.taken == "before"


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, True])
def test_register_price_rejects_invalid_numbers(bad: float) -> None:
    """Negative, NaN, infinite or boolean prices are refused."""
    table = PriceTable()
    with pytest.raises(ValueError, match="finite number"):
        table.register_price("m", input=bad, output=1.0)
    with pytest.raises(ValueError, match="empty"):
        table.register_price(" ", input=1.0, output=1.0)


def test_cache_writes_are_priced_by_lifetime() -> None:
    """100k five-minute cache-write tokens on claude-sonnet-4-5 cost $0.375; one-hour writes
    cost twice the input price, and both are part of input_tokens, priced once."""
    table = default_prices()
    five_minutes = Usage(input_tokens=100_000, cache_write_tokens=100_000)
    assert table.cost("claude-sonnet-4-5", five_minutes) == pytest.approx(0.375, rel=1e-12)
    one_hour = Usage(
        input_tokens=100_000, cache_write_tokens=100_000, cache_write_1h_tokens=100_000
    )
    assert table.cost("claude-sonnet-4-5", one_hour) == pytest.approx(0.6, rel=1e-12)
    mixed = Usage(
        input_tokens=1_000_000,
        output_tokens=10_000,
        cached_tokens=600_000,
        cache_write_tokens=300_000,
        cache_write_1h_tokens=100_000,
    )
    # 100k fresh * $3 + 600k read * $0.30 + 200k 5m * $3.75 + 100k 1h * $6 + 10k out * $15
    expected = (100_000 * 3 + 600_000 * 0.3 + 200_000 * 3.75 + 100_000 * 6 + 10_000 * 15) / 1e6
    assert table.cost("claude-sonnet-4-5-20250929", mixed) == pytest.approx(expected, rel=1e-12)


def test_batch_prices_scale_every_part_and_are_none_when_unpublished() -> None:
    """batch=True prices the same tokens at the batch API's rates (half, cache parts too);
    a model with no batch price has no batch cost."""
    table = default_prices()
    usage = Usage(input_tokens=100_000, output_tokens=10_000, cache_write_tokens=100_000)
    standard = table.cost("claude-sonnet-4-5", usage)
    assert standard is not None
    assert table.cost("claude-sonnet-4-5", usage, batch=True) == pytest.approx(standard / 2)
    assert table.cost("llama-3.1-8b-instant", usage, batch=True) is None
    with pytest.raises(ValueError, match="together"):
        ModelPrice(input=1.0, output=2.0, batch_input=0.5)


def test_a_backends_own_reported_cost_wins() -> None:
    """A response that reports its cost (Claude Code's total_cost_usd) is charged that,
    not the price table's estimate; an unusable report falls back to the table."""
    from lionpride.core.event import Execution
    from lionpride.services.observability.observer import ModelObserver
    from lionpride.services.types.response import NormalizedResponse

    observer = ModelObserver()
    usage = Usage(input_tokens=1_000, output_tokens=100, cache_write_tokens=1_000)
    for reported, expected in [(0.0123, 0.0123), (-1, None), ("0.5", None), (None, None)]:
        execution = Execution()
        execution.response = NormalizedResponse(
            data="ok", usage=usage, metadata={"total_cost_usd": reported}
        )
        observer.finish(execution, "claude_code", "claude-sonnet-4-5")
        table_cost = default_prices().cost("claude-sonnet-4-5", usage)
        assert execution.cost == pytest.approx(expected if expected is not None else table_cost)


def test_an_anthropic_answer_reports_its_cache_writes_by_lifetime() -> None:
    """cache_creation_input_tokens becomes cache_write_tokens (part of input_tokens), split by
    the answer's ephemeral_1h count; without the split every write is a five-minute one."""
    from lionpride.services.providers.anthropic_messages import anthropic_usage

    split = anthropic_usage(
        {
            "input_tokens": 50,
            "cache_read_input_tokens": 1_000,
            "cache_creation_input_tokens": 3_000,
            "cache_creation": {
                "ephemeral_5m_input_tokens": 2_000,
                "ephemeral_1h_input_tokens": 1_000,
            },
            "output_tokens": 20,
        }
    )
    assert split is not None
    assert (split.input_tokens, split.cached_tokens) == (4_050, 1_000)
    assert (split.cache_write_tokens, split.cache_write_1h_tokens) == (3_000, 1_000)
    whole = anthropic_usage({"input_tokens": 5, "cache_creation_input_tokens": 100_000})
    assert whole is not None and (whole.cache_write_tokens, whole.cache_write_1h_tokens) == (
        100_000,
        0,
    )
