"""FIFO position and PnL accounting, against hand-computed cases and as properties."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.state.accounting import Fill, Position, fmt, split_symbol, to_decimal

D = Decimal
T0 = 1_700_000_000_000


def buy(price, qty, fee="0", fee_asset="BTC", ts_ms=T0):
    return Fill("BUY", D(price), D(qty), D(fee), fee_asset, ts_ms)


def sell(price, qty, fee="0", fee_asset="USDT", ts_ms=T0):
    return Fill("SELL", D(price), D(qty), D(fee), fee_asset, ts_ms)


def two_buys() -> Position:
    """1 BTC at 100 then 0.5 BTC at 130, each paying 0.1 % in BTC."""
    position = Position("BTCUSDT")
    position.apply(buy("100", "1", fee="0.001", ts_ms=T0))
    position.apply(buy("130", "0.5", fee="0.0005", ts_ms=T0 + 60_000))
    return position


def test_buy_fee_in_base_reduces_the_quantity_held():
    position = two_buys()

    assert position.qty == D("1.4985")  # 0.999 + 0.4995
    assert position.cost == D("165")  # 100 + 65: the fee is paid by holding less
    assert position.avg_entry_price == D("110")  # (99.9 + 64.935) / 1.4985
    assert position.opened_at_ms == T0


def test_unrealized_pnl_from_mid_price():
    position = two_buys()

    assert position.unrealized_pnl(D("120")) == D("14.82")  # 1.4985 * 120 - 165


def test_fifo_partial_sell_then_full_sell_with_fees():
    position = two_buys()

    # Partial: half of the first lot at 130, 0.1 % fee in USDT on 64.935.
    first = position.apply(sell("130", "0.4995", fee="0.064935", ts_ms=T0 + 120_000))
    # Full: the rest of lot 1 (cost 50) and all of lot 2 (cost 65) at 90, fee 0.08991.
    second = position.apply(sell("90", "0.999", fee="0.08991", ts_ms=T0 + 180_000))

    assert first.realized_pnl == D("14.870065")  # 64.935 - 0.064935 - 50
    assert first.trade is None
    assert second.realized_pnl == D("-25.17991")  # 89.91 - 0.08991 - 115
    assert position.qty == 0
    assert position.realized_pnl == D("-10.309845")
    trade = second.trade
    assert trade is not None
    assert (trade.opened_at_ms, trade.closed_at_ms, trade.duration_s) == (T0, T0 + 180_000, 180)
    assert trade.cost == D("165")
    assert trade.proceeds == D("154.690155")
    assert trade.pnl == D("-10.309845")
    assert trade.pnl_pct == D("-6.24839091")
    assert trade.entry_price == D("110")  # 165 / 1.5 bought
    assert trade.buy_qty == D("1.5") and trade.sell_qty == D("1.4985")


def test_partial_fills_of_one_order_add_up_to_the_same_pnl():
    whole, split = two_buys(), two_buys()

    whole_pnl = whole.apply(sell("120", "1.4985")).realized_pnl
    split_pnl = sum(
        (split.apply(sell("120", qty)).realized_pnl for qty in ("0.3", "0.9", "0.2985")),
        D(0),
    )

    assert split_pnl == whole_pnl == D("14.82")


def test_selling_more_than_held_realises_only_the_matched_part():
    position = Position("BTCUSDT")
    position.apply(buy("100", "1"))

    effect = position.apply(sell("110", "2"))

    assert effect.matched_qty == D("1") and effect.unmatched_qty == D("1")
    assert effect.realized_pnl == D("10")
    assert effect.trade is not None


def test_dust_left_by_step_size_still_closes_the_round_trip():
    position = Position("BTCUSDT", dust_notional=D("1"))
    position.apply(buy("100", "1", fee="0.001"))  # holds 0.999

    effect = position.apply(sell("100", "0.99"))  # 0.009 BTC = 0.9 USDT stays

    assert effect.trade is not None
    assert position.qty == D("0.009")


def test_fee_in_a_third_asset_is_left_out_of_pnl():
    position = Position("BTCUSDT")
    position.apply(buy("100", "1", fee="0.01", fee_asset="BNB"))

    effect = position.apply(sell("110", "1", fee="0.01", fee_asset="BNB"))

    assert effect.realized_pnl == D("10")


def test_state_round_trip_rebuilds_the_same_position():
    position = two_buys()
    position.apply(sell("130", "0.3"))

    rebuilt = Position.from_state("BTCUSDT", position.to_state())

    assert rebuilt.to_dict(D("120")) == position.to_dict(D("120"))
    assert rebuilt.trip == position.trip


def test_decimal_helpers():
    assert fmt(D("0.10000000")) == "0.1" and fmt(D("100")) == "100" and fmt(D("0E-8")) == "0"
    assert split_symbol("BTCUSDT", "USDT") == "quote"
    assert split_symbol("BTCUSDT", "BTC") == "base"
    assert split_symbol("BTCUSDT", "BNB") == "other"
    with pytest.raises(ValueError):
        to_decimal(0.1)


# ------------------------------------------------------------------ properties

prices = st.decimals(min_value="1", max_value="1000", places=2)
quantities = st.decimals(min_value="0.001", max_value="5", places=3)
fee_rates = st.sampled_from([D("0"), D("0.001"), D("0.00075")])
actions = st.lists(
    st.tuples(st.sampled_from(["BUY", "SELL"]), prices, quantities, fee_rates),
    min_size=1,
    max_size=30,
)


def run_wallet(steps, position: Position) -> tuple[Decimal, Decimal, Decimal]:
    """Trade a wallet of quote cash and base; return (cash, base, quote-valued fees)."""
    cash, base, fees = D("1000000"), D(0), D(0)
    for side, price, qty, rate in steps:
        if side == "BUY":
            fee = (qty * rate).quantize(D("1e-8"))
            position.apply(buy(price, qty, fee=fee))
            cash -= price * qty
            base += qty - fee
            fees += fee * price
        else:
            qty = min(qty, base)
            if qty <= 0:
                continue
            fee = (price * qty * rate).quantize(D("1e-8"))
            position.apply(sell(price, qty, fee=fee))
            cash += price * qty - fee
            base -= qty
            fees += fee
    return cash, base, fees


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(actions, prices)
def test_equity_changes_only_by_realised_and_unrealised_pnl(steps, last_price):
    position = Position("BTCUSDT")

    cash, base, _ = run_wallet(steps, position)

    assert position.qty == base
    equity_change = cash + base * last_price - D("1000000")
    assert equity_change == position.realized_pnl + position.unrealized_pnl(last_price)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(actions, prices)
def test_at_one_constant_price_equity_loses_exactly_the_fees(steps, price):
    position = Position("BTCUSDT")
    flat_steps = [(side, price, qty, rate) for side, _, qty, rate in steps]

    cash, base, fees = run_wallet(flat_steps, position)

    assert cash + base * price - D("1000000") == -fees
    assert position.realized_pnl + position.unrealized_pnl(price) == -fees


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(
    st.lists(st.tuples(prices, quantities, fee_rates), min_size=1, max_size=5),
    st.lists(st.tuples(prices, st.integers(1, 5)), min_size=1, max_size=5),
)
def test_closed_round_trip_pnl_is_proceeds_minus_costs_minus_fees(buys, sells):
    position = Position("BTCUSDT")
    bought_quote, sold_quote, quote_fees = D(0), D(0), D(0)
    for price, qty, rate in buys:
        position.apply(buy(price, qty, fee=(qty * rate).quantize(D("1e-8"))))
        bought_quote += price * qty
    held, weights = position.qty, sum(weight for _, weight in sells)
    remaining, trade = held, None
    for index, (price, weight) in enumerate(sells):
        qty = remaining if index == len(sells) - 1 else (held * weight / weights).quantize(
            D("1e-8"), rounding="ROUND_DOWN")
        if qty <= 0:
            continue
        fee = (price * qty * D("0.001")).quantize(D("1e-8"))
        trade = position.apply(sell(price, qty, fee=fee)).trade or trade
        sold_quote += price * qty
        quote_fees += fee
        remaining -= qty

    assert position.qty == 0 and trade is not None
    # Base-asset buy fees are already in the quantities sold; quote fees come off here.
    assert trade.pnl == sold_quote - bought_quote - quote_fees
    assert trade.pnl == position.realized_pnl


def test_a_round_trip_closes_when_only_unsellable_dust_remains():
    """BUY 0.001 BTC pays its fee in BTC; selling what the step allows leaves dust."""
    from shared.filters import dust_notional

    closed = {}
    for bound in (Decimal(0), dust_notional()):
        position = Position("BTCUSDT", dust_notional=bound)
        position.apply(buy("60000", "0.001", fee="0.000001", ts_ms=T0))

        effect = position.apply(sell("60100", "0.00099", fee="0.0594990", ts_ms=T0 + 60_000))

        assert position.qty == Decimal("0.000009")
        closed[bound] = effect.trade is not None
    assert closed == {Decimal(0): False, dust_notional(): True}
