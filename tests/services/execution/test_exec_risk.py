"""Risk sizing and limits, and rounding that never breaks a symbol filter (property-based)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from services.execution.risk import Exposure, RiskConfig, RiskEngine, size_quantity
from shared.errors import InvalidOrderError, RiskRejected, ValidationError
from shared.filters import check_order, default_symbols
from shared.messages import SubmitIntent

FILTERS = default_symbols()
RICH = Exposure(quote_free=Decimal("1e9"), base_free=Decimal("1e6"),
                position_qty=Decimal("1e6"), equity_quote=Decimal("1e9"))
NO_LIMITS = RiskConfig(max_order_quote=Decimal("1e12"), max_position_quote=Decimal("1e12"))


def intent(**fields) -> SubmitIntent:
    values = {"intent_id": "x", "bot_id": "1", "epoch": 1, "symbol": "BTCUSDT", "side": "BUY",
              "order_type": "LIMIT", **fields}
    return SubmitIntent(**values)


@settings(max_examples=300, deadline=None)
@given(symbol=st.sampled_from(sorted(FILTERS)),
       side=st.sampled_from(["BUY", "SELL"]),
       ticks=st.integers(min_value=1, max_value=10_000_000),
       factor=st.decimals(min_value="0.5", max_value="2", places=7),
       qty=st.decimals(min_value="0.00001", max_value="500", places=8))
def test_rounded_orders_never_break_price_or_lot_filters(symbol, side, ticks, factor, qty):
    filters = FILTERS[symbol]
    market = filters.tick_size * ticks  # the exchange's price is on the grid
    price = market * factor  # the strategy's price is anything near it
    assume(price <= filters.max_price)  # beyond the band no rounding can help
    try:
        order = RiskEngine(NO_LIMITS).prepare(
            intent(symbol=symbol, side=side, price=price, quantity=qty), filters, market, RICH)
    except InvalidOrderError as exc:  # only the notional bound may refuse a rounded order
        assert "NOTIONAL" in str(exc) or "PRICE_FILTER" in str(exc) and price < filters.tick_size
        return
    except RiskRejected as exc:
        assert "rounds to zero" in str(exc)
        return
    check_order(filters, side, "LIMIT", order.price, order.quantity, avg_price=market)
    assert order.quantity <= qty
    assert (order.price <= price) if side == "BUY" else (order.price >= price)


def test_a_sell_never_takes_coins_the_bot_does_not_hold():
    # the account is shared: its free base belongs to other bots when this one holds none
    others = Exposure(quote_free=Decimal("1e9"), base_free=Decimal("5"),
                      equity_quote=Decimal("1e9"))
    with pytest.raises(RiskRejected, match="holds no BTC"):
        RiskEngine(NO_LIMITS).prepare(intent(side="SELL", order_type="MARKET"),
                                      FILTERS["BTCUSDT"], Decimal("60000"), others)

    holds = Exposure(quote_free=Decimal("1e9"), base_free=Decimal("5"),
                     position_qty=Decimal("0.25"), equity_quote=Decimal("1e9"))
    order = RiskEngine(NO_LIMITS).prepare(intent(side="SELL", order_type="MARKET",
                                                 quantity=Decimal("3")),
                                          FILTERS["BTCUSDT"], Decimal("60000"), holds)
    assert order.quantity == Decimal("0.25")


def test_sizing_modes():
    price, equity = Decimal("100"), Decimal("10000")

    fixed = size_quantity(RiskConfig(fixed_quote=Decimal("50")), price, equity, None)
    pct = size_quantity(RiskConfig(sizing_mode="percent_equity"), price, equity, None)
    risk = size_quantity(RiskConfig(sizing_mode="risk_per_trade"), price, equity,
                         Decimal("95"))

    assert (fixed, pct, risk) == (Decimal("0.5"), Decimal("5"), Decimal("20"))
    with pytest.raises(RiskRejected):
        size_quantity(RiskConfig(sizing_mode="risk_per_trade"), price, equity, None)


def test_daily_loss_limit_stops_entries_but_not_exits():
    engine = RiskEngine(RiskConfig(daily_loss_limit_quote=Decimal("100")))
    losing = Exposure(quote_free=Decimal("1000"), base_free=Decimal("1"),
                      position_qty=Decimal("0.5"), daily_realized_pnl=Decimal("-150"),
                      equity_quote=Decimal("1000"))
    price = Decimal("60000")

    with pytest.raises(RiskRejected, match="daily loss"):
        engine.prepare(intent(order_type="MARKET", quote_qty=Decimal("50")),
                       FILTERS["BTCUSDT"], price, losing)
    sell = engine.prepare(intent(order_type="MARKET", side="SELL", quantity=Decimal("0.001")),
                          FILTERS["BTCUSDT"], price, losing)
    assert sell.quantity == Decimal("0.001")


def test_fee_is_counted_in_the_balance_check():
    engine = RiskEngine(RiskConfig(fee_rate=Decimal("0.01")))
    exposure = Exposure(quote_free=Decimal("100"), base_free=Decimal(0),
                        equity_quote=Decimal("100"))

    with pytest.raises(RiskRejected, match="with fees"):
        engine.prepare(intent(price=Decimal("100"), quantity=Decimal("1")),
                       FILTERS["BTCUSDT"], Decimal("100"), exposure)


def test_max_open_orders_and_kill_switch():
    full = Exposure(quote_free=Decimal("1e6"), base_free=Decimal(0), open_orders=3,
                    equity_quote=Decimal("1e6"))
    with pytest.raises(RiskRejected, match="too many open orders"):
        RiskEngine(RiskConfig(max_open_orders=3)).prepare(
            intent(price=Decimal("60000"), quantity=Decimal("0.001")), FILTERS["BTCUSDT"],
            Decimal("60000"), full)
    with pytest.raises(RiskRejected, match="kill switch"):
        RiskEngine(RiskConfig(kill_switch=True)).prepare(
            intent(price=Decimal("60000"), quantity=Decimal("0.001")), FILTERS["BTCUSDT"],
            Decimal("60000"), RICH)


def test_bad_settings_name_every_field():
    with pytest.raises(ValidationError) as info:
        RiskConfig().updated({"fixed_quote": "-1", "nope": 1, "fee_rate": "abc"})

    assert set(info.value.fields) == {"nope", "fee_rate"}
    with pytest.raises(ValidationError) as info:
        RiskConfig().updated({"fixed_quote": "-1"})
    assert set(info.value.fields) == {"fixed_quote"}
