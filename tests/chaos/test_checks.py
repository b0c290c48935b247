"""Each chaos check finds the violation it is about, and stays quiet when all is well."""

from __future__ import annotations

from decimal import Decimal

from tests.chaos import checks

CID = "b2-E0-0123456789abcdef0123"
STOP = "b2-S0-0123456789abcdef0123"


def order(cid: str, order_id: int, list_id: int = -1, qty: str = "1") -> dict:
    return {"clientOrderId": cid, "orderId": order_id, "orderListId": list_id,
            "symbol": "BTCUSDT", "origQty": qty, "executedQty": "0"}


def trade(trade_id: int, order_id: int, buyer: bool, qty: str = "1") -> dict:
    return {"symbol": "BTCUSDT", "id": trade_id, "orderId": order_id, "isBuyer": buyer,
            "qty": qty, "price": "100", "commission": "0", "commissionAsset": "USDT"}


def test_a_client_id_placed_twice_is_found():
    assert checks.no_client_id_twice([order(CID, 1), order("x", 2)]) == []
    assert checks.no_client_id_twice([order(CID, 1), order(CID, 2)]) == [
        f"clientOrderId {CID} placed 2 times at the venue"]


def test_fills_missing_doubled_or_unknown_are_found():
    venue = [trade(1, 1, True), trade(2, 1, True)]
    state = [{"symbol": "BTCUSDT", "trade_id": "1", "price": "100", "qty": "1"}] * 2 + [
        {"symbol": "BTCUSDT", "trade_id": "9", "price": "100", "qty": "1"}]
    found = checks.fills_recorded_once(venue, state)
    assert len(found) == 3
    assert "recorded 2 times" in found[0] and "missing" in found[1] and "unknown" in found[2]


def test_balances_compare_free_and_locked():
    venue = [{"asset": "USDT", "free": "10.00", "locked": "0"}]
    assert checks.balances_equal(venue, [{"asset": "USDT", "free": "10", "locked": "0"}]) == []
    assert checks.balances_equal(venue, [{"asset": "USDT", "free": "9", "locked": "1"}])


def test_positions_add_up_to_the_venue_holding():
    venue = [{"asset": "BTC", "free": "0.5", "locked": "0.5"}]
    ok = [{"bot_id": 2, "symbol": "BTCUSDT", "qty": "0.75"},
          {"bot_id": 3, "symbol": "BTCUSDT", "qty": "0.25"}]
    assert checks.positions_equal(venue, ok, {"BTCUSDT": "BTC"}) == []
    assert checks.positions_equal(venue, ok[:1], {"BTCUSDT": "BTC"})


def test_an_unprotected_or_overprotected_position_is_found():
    f = {"BTCUSDT": {"step": Decimal("0.01"), "min_notional": Decimal("5"),
                     "price": Decimal("100")}}
    position = [{"bot_id": 2, "symbol": "BTCUSDT", "qty": "1"}]
    assert checks.positions_protected(position, [order(STOP, 5, 7, "1")], f) == []
    assert "covers 0" in checks.positions_protected(position, [], f)[0]
    assert "oversell" in checks.positions_protected(position, [order(STOP, 5, 7, "2")], f)[0]
    dust = [{"bot_id": 2, "symbol": "BTCUSDT", "qty": "0.01"}]
    assert checks.positions_protected(dust, [], f) == []


def test_a_remainder_the_venue_would_refuse_to_sell_is_dust():
    """At 110, 0.0499 is worth 5.49 >= 5, but the venue sells whole steps: 0.04 is worth 4.40,
    not sellable, so no stop can be placed for it either; 0.0599 -> 0.05 is worth 5.50.
    The short chaos run once flagged such a remainder (0.016584 BNB at 608: 10.08 quote, but
    0.016 -> 9.73 below the 10 minimum) that neither an exit nor an OCO could sell."""
    f = {"BTCUSDT": {"step": Decimal("0.01"), "min_notional": Decimal("5"),
                     "price": Decimal("110")}}
    below = [{"bot_id": 2, "symbol": "BTCUSDT", "qty": "0.0499"}]
    assert checks.positions_protected(below, [], f) == []
    sellable = [{"bot_id": 2, "symbol": "BTCUSDT", "qty": "0.0599"}]
    assert "covers 0" in checks.positions_protected(sellable, [], f)[0]


def test_a_bot_selling_more_than_it_bought_is_found():
    orders = [order(CID, 1), order("b2-E0-ffffffffffffffffffff", 2)]
    assert checks.no_bot_oversold(orders, [trade(1, 1, True), trade(2, 2, False)],
                                  {"BTCUSDT": "BTC"}) == []
    found = checks.no_bot_oversold(orders, [trade(1, 1, True), trade(2, 2, False, "2")],
                                   {"BTCUSDT": "BTC"})
    assert found == ["bot 2 sold 1 BTCUSDT more than it had bought at the venue "
                     "(another bot's holding was sold)"]


def test_health_needs_every_service_and_worker_up():
    health = {"state": {"up": True}, "strategy": {"up": True, "up_instances": 3}}
    assert checks.services_healthy(health, 3) == []
    assert len(checks.services_healthy(health | {"bus": {"up": False}}, 2)) == 2
