"""The registry, the value types, and deterministic intent ids."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from shared.errors import ValidationError
from shared.strategies import STRATEGIES, build_strategy, get_strategy, schemas_json
from shared.strategies.base import Book, Fill, OrderIntent, Position, Strategy
from shared.strategies.scalping import ScalpingStrategy
from shared.strategies.swing import SwingStrategy


def test_registry_holds_swing_and_scalping() -> None:
    assert STRATEGIES == {"SWING": SwingStrategy, "SCALPING": ScalpingStrategy}


def test_unknown_strategy_names_the_allowed_ones() -> None:
    with pytest.raises(ValidationError) as info:
        get_strategy("GRID")

    assert "SCALPING" in info.value.fields["strategy"]
    assert "SWING" in info.value.fields["strategy"]


@pytest.mark.parametrize("cls", list(STRATEGIES.values()))
def test_every_strategy_declares_name_schema_and_needs(cls: type[Strategy]) -> None:
    assert cls.name and cls.needs
    assert "symbol" in cls.params_schema and "timeframe" in cls.params_schema


def test_build_validates_params() -> None:
    with pytest.raises(ValidationError) as info:
        build_strategy("SWING", "b", {"ema_fast": 0})

    assert set(info.value.fields) >= {"ema_fast", "rsi_period"}  # bad, and missing ones


def test_schemas_json_is_serialisable() -> None:
    assert set(json.loads(json.dumps(schemas_json()))) == {"SWING", "SCALPING"}


def test_intent_ids_count_within_one_data_time() -> None:
    strategy = build_strategy("SCALPING", "b7", STRATEGIES["SCALPING"].params_schema.defaults())

    ids = [strategy._intent("BUY", "MARKET", ts, reason="t").intent_id
           for ts in (1000, 1000, 1000, 2000)]

    assert ids == ["b7-1000-0", "b7-1000-1", "b7-1000-2", "b7-2000-0"]


def test_same_inputs_give_the_same_intent_ids() -> None:
    books = [Book(1_000 + 500 * k, 100.0, 5.0 if k % 3 == 0 else 1.0, 100.01, 1.0)
             for k in range(40)]

    def run() -> list[str]:
        schema = get_strategy("SCALPING").params_schema
        params = schema.validate({"cooldown_ms": 0, "limit_order_timeout_ms": 1000}, partial=True)
        strategy = build_strategy("SCALPING", "b9", params)
        return [intent.intent_id for b in books for intent in strategy.on_book(b)]

    first, second = run(), run()

    assert first and first == second


def test_order_intent_round_trips_through_a_dict() -> None:
    intent = OrderIntent(
        "b-1-0", "b", "BTCUSDT", "BUY", "LIMIT", 1, quote_amount="20", limit_price=100.5,
        stop_loss=Decimal("99"), time_in_force="GTC", ttl_ms=5000, reason="test",
    )

    data = json.loads(json.dumps(intent.to_dict()))

    assert data["limit_price"] == "100.5" and data["quote_amount"] == "20"
    assert OrderIntent.from_dict(data) == intent


def test_order_intent_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        OrderIntent("i", "b", "BTCUSDT", "HOLD", "MARKET", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        OrderIntent("i", "b", "BTCUSDT", "BUY", "LIMIT", 1)  # a LIMIT needs a price


def test_position_averages_buys_and_goes_flat_on_the_last_sell() -> None:
    position = Position()

    position = position.apply(Fill("BUY", "100", "1", 10))
    position = position.apply(Fill("BUY", "110", "1", 20))
    assert (position.base_qty, position.entry_price, position.entry_time_ms) == (
        Decimal("2"), Decimal("105"), 10
    )

    position = position.apply(Fill("SELL", "120", "1.5", 30))
    assert position.base_qty == Decimal("0.5") and position.entry_price == Decimal("105")

    assert not position.apply(Fill("SELL", "120", "0.5", 40)).is_open
