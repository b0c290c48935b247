"""A trade execution never saw, below a later trade it did see, is still found (finding 1).

The chaos run lost fills this way: an order's placement answered -1007 and the user-data stream
was down, so its trade reached execution from nowhere, while a later trade of the same symbol
did (a REST response). Reconciliation asked ``myTrades`` from the highest known trade id + 1
and so skipped the gap on every run: the order ended FILLED in state, its fill never did.
"""

from __future__ import annotations

from decimal import Decimal

from services.execution.orders import OrderPlacer, OrderSpec, client_order_id
from services.execution.outbox import ExecutionDb
from services.execution.reconcile import Reconciler
from services.execution.tracking import OrderReport, OrderTracker
from shared import messages as m
from tests.services.execution.conftest import (
    intent,
    make_exchange,
    start_execution,
    synced,
    wait_for,
)


def place_on_the_side(sim, cid: str, qty: str = "0.001") -> dict:
    exchange = make_exchange(sim)
    try:
        return OrderPlacer(exchange).place(
            OrderSpec("BTCUSDT", "BUY", "MARKET", cid, quantity=Decimal(qty)))
    finally:
        exchange.close()


def venue_trade_ids(sim, cid: str) -> list[int]:
    orders = {o.order_id: o.client_order_id
              for o in sim.venue.engine.all_orders("sim", "BTCUSDT", None, 1000)}
    return [t.trade_id for t in sim.venue.engine.my_trades("sim", "BTCUSDT", None, None, 1000)
            if orders.get(t.order_id) == cid]


def state_fills(ask_state, cid: str) -> list[dict]:
    return ask_state(m.QueryFills(client_order_id=cid)).result["items"]


def test_unseen_trade_below_a_seen_one_is_recorded_on_restart(state, endpoints, sim, data_dir,
                                                              ask_state, lease):
    # The disk as the chaos run left it: order A's placement answered -1007 (a pending
    # intent, its trade seen nowhere); order B, later, was answered with its fill.
    gap_cid, seen_cid = client_order_id("gap-1", "1"), client_order_id("gap-2", "1")
    db = ExecutionDb(data_dir / "execution")
    db.begin_intent("gap-1", "1", "BTCUSDT", gap_cid,
                    intent("gap-1", lease, quote_qty=Decimal("50")).to_dict())
    place_on_the_side(sim, gap_cid)
    seen = place_on_the_side(sim, seen_cid)
    OrderTracker(db, None).apply_response(seen, "E", "gap-2")
    assert db.last_trade_id("BTCUSDT") > max(venue_trade_ids(sim, gap_cid))
    db.close()

    execution = start_execution(endpoints, sim, data_dir)
    try:
        wait_for(lambda: synced(execution), what="the reconciliation on start")
        wait_for(lambda: execution.service.db.outbox_size() == 0, what="the outbox drained")
        gap_fills = wait_for(lambda: state_fills(ask_state, gap_cid), what="the gap fill")
        seen_fills = state_fills(ask_state, seen_cid)
        orders = ask_state(m.QueryOrders(bot_id=1)).result["items"]
    finally:
        execution.close()

    assert sorted(int(f["trade_id"]) for f in gap_fills) == venue_trade_ids(sim, gap_cid)
    assert sorted(int(f["trade_id"]) for f in seen_fills) == venue_trade_ids(sim, seen_cid)
    assert {o["client_order_id"]: o["status"] for o in orders} == {
        gap_cid: "FILLED", seen_cid: "FILLED"}



def test_orders_ask_their_trades_by_id_only_when_their_fills_fall_short(sim, exchange,
                                                                        tmp_path):
    db = ExecutionDb(tmp_path / "execution")
    tracker = OrderTracker(db, None)
    reconciler = Reconciler(exchange, db, tracker)
    asked: list[dict] = []
    call = exchange.call

    def spy(method: str, critical: bool = False, **params):
        if method == "get_my_trades" and "orderId" in params:
            asked.append(params)
        return call(method, critical, **params)

    exchange.call = spy
    try:
        gap_cid, seen_cid = client_order_id("w-1", "1"), client_order_id("w-2", "1")
        gap = place_on_the_side(sim, gap_cid)
        tracker.apply_order(OrderReport.from_rest(gap))  # FILLED, its fill unseen
        tracker.apply_response(place_on_the_side(sim, seen_cid))

        reconciler.run(["BTCUSDT"])
        assert [p["orderId"] for p in asked] == [gap["orderId"]]
        assert [f["trade_id"] for f in db.bot_fills("1", "BTCUSDT")] == sorted(
            venue_trade_ids(sim, gap_cid) + venue_trade_ids(sim, seen_cid))

        asked.clear()
        reconciler.run(["BTCUSDT"])  # everything adds up now: no trades asked by order
        assert asked == []
    finally:
        db.close()
