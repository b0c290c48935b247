"""Order lifecycles through unmodified python-binance: partial fill then fill; OCO to ALL_DONE.

The market runs on a TestClock the test moves one step at a time (requests are still signed
against the real clock), so which step fills what is fixed by the seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import numpy as np
import pytest
from binance.client import Client

from services.exchange_sim.server import SimServer
from services.exchange_sim.venue import AccountConfig, Venue
from shared.clock import SYSTEM_CLOCK, TestClock

from .conftest import make_client

SYMBOL = "BTCUSDT"
TICK = Decimal("0.01")


@pytest.fixture
def stepped() -> Iterator[tuple[SimServer, TestClock, Client]]:
    """A rich account on a simulator whose market moves only when the test says so."""
    clock = TestClock(1_760_000_000.0)
    account = AccountConfig(funding={"USDT": Decimal("2000000")})
    server = SimServer(Venue(clock, [account], replay=False, history_s=3600,
                             signing_clock=SYSTEM_CLOCK), port=0)
    server.start()
    client = make_client(server)
    yield server, clock, client
    client.close_connection()
    server.stop()


def step_until(server: SimServer, clock: TestClock, done, max_steps: int) -> None:
    """Move the market one step at a time (fed to the engine in-process) until ``done()``."""
    for _ in range(max_steps):
        clock.advance(1)
        server.venue.sync_market()
        if done():
            return
    raise AssertionError(f"not done after {max_steps} steps")


def engine_status(server: SimServer, order_id: int) -> str:
    return server.venue.engine.get_order("sim", SYMBOL, order_id).status


def future_prices(server: SimServer, steps: int) -> tuple[float, np.ndarray]:
    """The price now and the next ``steps`` prices of the (deterministic) path."""
    market = server.venue.market
    path, now = market.paths[SYMBOL], market.now_index(SYMBOL)
    prices = path.arrays(now + steps)[0]
    return float(prices[now]), prices[now + 1:]


def test_limit_sell_fills_partially_then_completely(stepped):
    server, clock, client = stepped
    server.venue.deposit("sim", "BTC", Decimal("20"))
    now_price, ahead = future_prices(server, 300)
    limit = (Decimal(str(now_price)) + 100 * TICK).quantize(TICK)
    # The first 30 steps all above the limit: the order rests until the market rises into
    # them, and each of those steps offers the book's top levels again until it is filled.
    lows = np.lib.stride_tricks.sliding_window_view(ahead, 30).min(axis=1)
    assert (lows > float(limit)).any()
    quantity = Decimal("12")

    order = client.order_limit_sell(symbol=SYMBOL, quantity=str(quantity), price=str(limit))
    order_id = order["orderId"]
    step_until(server, clock, lambda: engine_status(server, order_id) != "NEW", 300)
    partial = client.get_order(symbol=SYMBOL, orderId=order_id)
    step_until(server, clock, lambda: engine_status(server, order_id) == "FILLED", 300)
    filled = client.get_order(symbol=SYMBOL, orderId=order_id)

    assert order["status"] == "NEW"
    assert partial["status"] == "PARTIALLY_FILLED"
    assert 0 < Decimal(partial["executedQty"]) < quantity
    assert filled["status"] == "FILLED" and Decimal(filled["executedQty"]) == quantity
    trades = client.get_my_trades(symbol=SYMBOL, orderId=order_id)
    assert len(trades) >= 2
    assert sum(Decimal(t["qty"]) for t in trades) == quantity
    assert {Decimal(t["price"]) for t in trades} == {limit}  # a resting order fills at its price
    assert all(t["isMaker"] and not t["isBuyer"] for t in trades)


def test_oco_sell_ends_all_done_with_one_leg_filled_and_the_other_expired(stepped):
    server, clock, client = stepped
    client.order_market_buy(symbol=SYMBOL, quantity="0.01")
    now_price, ahead = future_prices(server, 300)
    above = (Decimal(str(now_price)) + 50 * TICK).quantize(TICK)
    assert ahead.max() > float(above)  # the market trades through the upper leg
    stop = (Decimal(str(now_price)) * Decimal("0.97")).quantize(TICK)

    placed = client.create_oco_order(
        symbol=SYMBOL, side="SELL", quantity="0.00999", aboveType="LIMIT_MAKER",
        abovePrice=str(above), belowType="STOP_LOSS_LIMIT", belowStopPrice=str(stop),
        belowPrice=str(stop - 100 * TICK), belowTimeInForce="GTC")
    list_id = placed["orderListId"]
    step_until(server, clock, lambda: server.venue.engine.get_order_list(
        "sim", list_id).list_order_status == "ALL_DONE", 300)
    order_list = client.v3_get_order_list(orderListId=list_id)

    assert placed["listOrderStatus"] == "EXECUTING"
    assert order_list["listOrderStatus"] == "ALL_DONE"
    assert order_list["listStatusType"] == "ALL_DONE"
    legs = {o["orderId"]: client.get_order(symbol=SYMBOL, orderId=o["orderId"])
            for o in order_list["orders"]}
    by_type = {leg["type"]: leg for leg in legs.values()}
    assert by_type["LIMIT_MAKER"]["status"] == "FILLED"
    assert Decimal(by_type["LIMIT_MAKER"]["price"]) == above
    assert by_type["STOP_LOSS_LIMIT"]["status"] == "EXPIRED"
    assert client.get_open_oco_orders() == []
