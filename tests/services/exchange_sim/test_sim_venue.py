"""The venue without HTTP: resting orders fill as the market moves; user events reach listeners."""

from __future__ import annotations

from decimal import Decimal

from services.exchange_sim.params import Params
from services.exchange_sim.venue import AccountConfig, Venue
from shared.clock import TestClock


def test_resting_buy_fills_when_the_market_trades_through_it():
    clock = TestClock(1_760_000_000.0)
    venue = Venue(clock, replay=False, history_s=3600)
    events: list[dict] = []
    venue.add_user_listener("sim", events.append)
    path, now = venue.market.paths["ETHUSDT"], venue.market.now_index("ETHUSDT")
    future_low = Decimal(str(path.arrays(now + 600)[0][now + 1:].min()))
    limit = future_low + Decimal("0.01")  # the path trades through it within 10 minutes
    assert limit < Decimal(venue.market.book("ETHUSDT").asks[0][0])
    order = venue.place_order("sim", Params({
        "symbol": "ETHUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
        "quantity": "0.01", "price": str(limit)}))
    assert order["status"] == "NEW"

    for _ in range(60):
        clock.advance(10)
        venue.sync_market()

    fills = [e for e in events if e.get("e") == "executionReport" and e["x"] == "TRADE"]
    assert fills and fills[-1]["X"] == "FILLED" and fills[-1]["m"] is True
    assert Decimal(fills[-1]["L"]) == limit
    query = venue.get_order("sim", Params({"symbol": "ETHUSDT",
                                           "orderId": str(order["orderId"])}))
    assert query["status"] == "FILLED"


def test_accounts_come_from_config_and_are_funded():
    venue = Venue(TestClock(1_760_000_000.0), [AccountConfig("k1", "s1", "alice")],
                  replay=False)

    balances = venue.account_info("alice", Params({}))["balances"]

    assert venue.auth.key_for("k1").account == "alice"
    assert {b["asset"]: Decimal(b["free"]) for b in balances}["USDT"] == Decimal(10_000)


def test_deposit_emits_balance_update_then_account_position():
    venue = Venue(TestClock(1_760_000_000.0), replay=False, history_s=3600)
    events: list[dict] = []
    venue.add_user_listener("sim", events.append)

    venue.deposit("sim", "BNB", Decimal("2"))

    assert [e["e"] for e in events] == ["balanceUpdate", "outboundAccountPosition"]
    assert Decimal(events[0]["d"]) == 2


def test_oco_emits_list_status_with_both_legs():
    venue = Venue(TestClock(1_760_000_000.0), replay=False, history_s=3600)
    venue.place_order("sim", Params({"symbol": "BNBUSDT", "side": "BUY", "type": "MARKET",
                                     "quantity": "1"}))
    events: list[dict] = []
    venue.add_user_listener("sim", events.append)
    price = Decimal(str(venue.market.last_price("BNBUSDT")))

    venue.place_oco("sim", Params({
        "symbol": "BNBUSDT", "side": "SELL", "quantity": "0.5", "aboveType": "LIMIT_MAKER",
        "abovePrice": str((price * Decimal("1.05")).quantize(Decimal("0.1"))),
        "belowType": "STOP_LOSS_LIMIT", "belowTimeInForce": "GTC",
        "belowStopPrice": str((price * Decimal("0.95")).quantize(Decimal("0.1"))),
        "belowPrice": str((price * Decimal("0.94")).quantize(Decimal("0.1")))}))

    (status,) = [e for e in events if e["e"] == "listStatus"]
    assert status["c"] == "OCO" and len(status["O"]) == 2
    assert [e["x"] for e in events if e["e"] == "executionReport"] == ["NEW", "NEW"]
