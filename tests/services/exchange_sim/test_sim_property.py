"""Property: whatever orders a client sends, no money is created or destroyed beyond fees.

Driven through :class:`Venue` directly (the same operations the REST handlers call, with
the same string parameters) rather than over HTTP: hundreds of orders per example would make
python-binance over loopback too slow for the suite. Hypothesis is derandomized, so every run
tries the same sequences.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.exchange_sim.api_error import ApiError
from services.exchange_sim.params import Params
from services.exchange_sim.venue import AccountConfig, Venue
from shared.clock import TestClock

FUNDING = {"USDT": Decimal("10000"), "BTC": Decimal("0.2"), "ETH": Decimal("3"),
           "BNB": Decimal("10")}
SYMBOLS = {"BTCUSDT": (Decimal("0.01"), Decimal("0.00001")),
           "ETHUSDT": (Decimal("0.01"), Decimal("0.0001")),
           "BNBUSDT": (Decimal("0.1"), Decimal("0.001"))}

symbol = st.sampled_from(sorted(SYMBOLS))
side = st.sampled_from(["BUY", "SELL"])
notional = st.integers(min_value=1, max_value=4000)  # USDT, some beyond what can be afforded
market_op = st.tuples(st.just("market"), symbol, side, notional)
limit_op = st.tuples(st.just("limit"), symbol, side, notional,
                     st.integers(min_value=-300, max_value=300))  # ticks from the last price
cancel_op = st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=20))
advance_op = st.tuples(st.just("advance"), st.integers(min_value=1, max_value=20))
operations = st.lists(st.one_of(market_op, limit_op, cancel_op, advance_op), min_size=1,
                      max_size=25)


def order_params(venue: Venue, op: tuple) -> Params:
    kind, sym, order_side, quote = op[:4]
    tick, step = SYMBOLS[sym]
    price = Decimal(str(venue.market.last_price(sym)))
    if kind == "limit":
        price = max(price + op[4] * tick, tick).quantize(tick)
    quantity = (Decimal(quote) / price).quantize(step)
    values = {"symbol": sym, "side": order_side, "type": kind.upper(),
              "quantity": str(quantity)}
    if kind == "limit":
        values.update(timeInForce="GTC", price=str(price))
    return Params(values)


def apply(venue: Venue, clock: TestClock, op: tuple, placed: list[tuple[str, int]]) -> None:
    """Run one client action; refusals (-2010, -1013...) are part of the game."""
    try:
        if op[0] in ("market", "limit"):
            reply = venue.place_order("sim", order_params(venue, op))
            placed.append((reply["symbol"], reply["orderId"]))
        elif op[0] == "cancel" and placed:
            sym, order_id = placed[op[1] % len(placed)]
            venue.cancel_order("sim", Params({"symbol": sym, "orderId": str(order_id)}))
        elif op[0] == "advance":
            clock.advance(op[1])
            venue.sync_market()
    except ApiError as exc:
        assert exc.status == 400, exc


def balances(venue: Venue) -> dict[str, tuple[Decimal, Decimal]]:
    return {asset: (b.free, b.locked) for asset, b in venue.engine.balances("sim").items()}


def expected_totals(venue: Venue) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """Funding plus every fill of the account's trades, and the commission paid, by asset."""
    totals, fees = defaultdict(Decimal, FUNDING), defaultdict(Decimal)
    for sym in SYMBOLS:
        base, quote = sym[:-4], sym[-4:]
        for t in venue.engine.my_trades("sim", sym, None, None, 1_000_000):
            sign = 1 if t.is_buyer else -1
            totals[base] += sign * t.qty
            totals[quote] -= sign * t.quote_qty
            totals[t.commission_asset] -= t.commission
            fees[t.commission_asset] += t.commission
    return totals, fees


def check_books(venue: Venue) -> None:
    now = balances(venue)
    for asset, (free, locked) in now.items():
        assert free >= 0 and locked >= 0, (asset, free, locked)
    locked_by_orders = defaultdict(Decimal)
    for order in venue.engine.open_orders("sim"):
        locked_by_orders[order.locked_asset] += order.locked_amount
    for asset, (_, locked) in now.items():
        assert locked == locked_by_orders[asset], (asset, locked, locked_by_orders[asset])


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_random_orders_conserve_money_and_keep_balances_non_negative(ops):
    clock = TestClock(1_760_000_000.0)
    venue = Venue(clock, [AccountConfig(funding=dict(FUNDING))], replay=False, history_s=600)
    placed: list[tuple[str, int]] = []

    for op in ops:
        apply(venue, clock, op, placed)
        check_books(venue)

    totals, fees = expected_totals(venue)
    for asset, (free, locked) in balances(venue).items():
        assert free + locked == totals[asset], asset
    collected = venue.engine.ledger.fees_collected()
    assert {a: f for a, f in fees.items() if f} == {a: f for a, f in collected.items() if f}
