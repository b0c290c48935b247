"""User-data stream, reconciliation, the durable outbox and a restart after a crash."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.execution.orders import OrderPlacer, OrderSpec, client_order_id
from services.execution.outbox import ExecutionDb
from services.execution.service import ExecutionService
from shared import messages as m
from tests.services.execution.conftest import (
    intent,
    make_exchange,
    set_faults,
    start_execution,
    start_state,
    synced,
    wait_for,
)


def buy_on_the_side(sim, cid: str) -> dict:
    """An order for bot 1 placed straight on the venue (as if sent by execution earlier)."""
    exchange = make_exchange(sim)
    try:
        return OrderPlacer(exchange).place(
            OrderSpec("BTCUSDT", "BUY", "MARKET", cid, quantity=Decimal("0.001")))
    finally:
        exchange.close()


def test_stream_events_are_published_on_the_bot_topic(execution, listen, sim):
    orders = listen(["exec.order.1"])
    cid = client_order_id("side-1", "1")

    buy_on_the_side(sim, cid)

    fill = orders.until(lambda t, msg: isinstance(msg, m.OrderFilled))
    update = orders.until(lambda t, msg: isinstance(msg, m.OrderUpdated)
                          and msg.status == "FILLED")
    assert fill.client_order_id == cid and update.client_order_id == cid


def test_fill_missed_by_a_dropped_stream_is_caught_by_reconciliation(execution, listen, sim,
                                                                    ask_state):
    syncs = listen(["exec.sync", "exec.order.1"])
    connects = execution.service.stream.connects
    cid = client_order_id("missed-1", "1")

    set_faults(sim, drop_ws=True)
    buy_on_the_side(sim, cid)  # fills while nobody is subscribed

    sync = syncs.until(lambda t, msg: isinstance(msg, m.AccountReconciled)
                       and msg.trigger == "stream connected")
    assert execution.service.stream.connects > connects
    assert sync.corrections >= 1
    assert syncs.until(lambda t, msg: isinstance(msg, m.OrderFilled) and
                       msg.client_order_id == cid)
    fills = wait_for(lambda: ask_state(m.QueryFills(client_order_id=cid)).result["items"],
                     what="the missed fill in state")
    assert len(fills) == 1


def test_outbox_keeps_records_while_state_is_away(bus, endpoints, sim, data_dir, ask_state):
    state = start_state(endpoints, data_dir)
    execution = start_execution(endpoints, sim, data_dir)
    try:
        wait_for(lambda: synced(execution), what="first sync")
        wait_for(lambda: execution.service.db.outbox_size() == 0, what="an empty outbox")
        state.close()
        cid = client_order_id("away-1", "1")
        buy_on_the_side(sim, cid)
        wait_for(lambda: execution.service.db.outbox_size() >= 2, what="queued records")

        state = start_state(endpoints, data_dir)

        wait_for(lambda: execution.service.db.outbox_size() == 0, what="the outbox drained")
        orders = ask_state(m.QueryOrders(bot_id=1)).result["items"]
        assert [o["client_order_id"] for o in orders] == [cid]
        assert orders[0]["status"] == "FILLED"
        assert len(ask_state(m.QueryFills(client_order_id=cid)).result["items"]) >= 1
    finally:
        execution.close()
        state.close()


def test_order_sent_but_not_recorded_before_a_crash_is_recorded_once_on_restart(
        state, endpoints, sim, data_dir, ask, ask_state, lease):
    # The disk as a SIGKILL between "send" and "record" leaves it: a pending intent whose
    # order exists on the exchange and nowhere else.
    request = intent("crash-1", lease, quote_qty=Decimal("50"))
    cid = client_order_id("crash-1", "1")
    db = ExecutionDb(data_dir / "execution")
    db.begin_intent("crash-1", "1", "BTCUSDT", cid, request.to_dict())
    db.close()
    buy_on_the_side(sim, cid)

    execution = start_execution(endpoints, sim, data_dir)
    try:
        wait_for(lambda: synced(execution), what="the reconciliation on start")
        again = ask(request)
        orders = wait_for(lambda: ask_state(m.QueryOrders(bot_id=1)).result["items"],
                          what="the order in state")
    finally:
        execution.close()

    assert again.ok and again.result["client_order_id"] == cid
    assert [o["client_order_id"] for o in orders] == [cid]
    venue_orders = sim.venue.engine.all_orders("sim", "BTCUSDT", None, 1000)
    assert [o.client_order_id for o in venue_orders] == [cid]


def test_pending_intent_whose_order_never_left_is_rejected_on_restart(
        state, endpoints, sim, data_dir, ask, lease):
    request = intent("crash-2", lease, quote_qty=Decimal("50"))
    db = ExecutionDb(data_dir / "execution")
    db.begin_intent("crash-2", "1", "BTCUSDT", client_order_id("crash-2", "1"),
                    request.to_dict())
    db.close()

    execution = start_execution(endpoints, sim, data_dir)
    try:
        wait_for(lambda: synced(execution), what="the reconciliation on start")
        reply = ask(request)
    finally:
        execution.close()

    assert not reply.ok and "never reached the exchange" in reply.error_message
    assert sim.venue.engine.all_orders("sim", "BTCUSDT", None, 1000) == []


def test_a_stalled_user_stream_is_noticed_and_its_fills_reconciled(bus, state, endpoints, sim,
                                                                  data_dir, listen, monkeypatch):
    if "stall_ws" not in sim.venue.faults.snapshot():
        pytest.skip("this simulator cannot stall a WebSocket")
    monkeypatch.setattr(ExecutionService, "stream_probe_s", 0.3)
    execution = start_execution(endpoints, sim, data_dir)
    syncs = listen(["exec.sync"])
    try:
        wait_for(lambda: synced(execution), what="first sync")
        cid = client_order_id("stalled-1", "1")
        set_faults(sim, stall_ws="ws_api")  # open, but silent: no events, no pongs
        buy_on_the_side(sim, cid)
        wait_for(lambda: not execution.service.stream.connected, what="the stall noticed")
        set_faults(sim, stall_ws=False)

        sync = syncs.until(lambda t, msg: msg.trigger == "stream connected")
        assert sync.corrections >= 1
        assert execution.service.db.order(cid)["status"] == "FILLED"
    finally:
        execution.close()
