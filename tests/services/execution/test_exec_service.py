"""The execution endpoint over real sockets, against the simulator and a real state service."""

from __future__ import annotations

import time
from decimal import Decimal

from services.execution.orders import client_order_id
from shared import messages as m
from tests.services.execution.conftest import intent, set_faults, unknown_status_once, wait_for


def test_market_intent_is_accepted_placed_once_and_recorded(execution, ask, ask_state, lease,
                                                            sim):
    reply = ask(intent("i-1", lease, quote_qty=Decimal("50")))

    assert reply.ok, reply
    assert reply.result["status"] == "accepted"
    cid = client_order_id("i-1", "1")
    assert reply.result["client_order_id"] == cid
    assert reply.result["order_status"] == "FILLED"
    orders = wait_for(lambda: ask_state(m.QueryOrders(bot_id=1)).result["items"],
                      what="the order in state")
    assert [o["client_order_id"] for o in orders] == [cid]
    fills = wait_for(lambda: ask_state(m.QueryFills(bot_id=1)).result["items"],
                     what="the fill in state")
    assert fills and all(f["client_order_id"] == cid for f in fills)


def test_same_intent_twice_gives_the_first_answer_and_one_order(execution, ask, lease, sim):
    first = ask(intent("i-2", lease, quote_qty=Decimal("50")))
    second = ask(intent("i-2", lease, quote_qty=Decimal("50")))

    assert first.ok and second.ok
    assert second.result == first.result
    cid = client_order_id("i-2", "1")
    orders = sim.venue.engine.all_orders("sim", "BTCUSDT", None, 1000)
    assert [o.client_order_id for o in orders].count(cid) == 1


def test_stale_epoch_is_rejected_with_a_reason(execution, ask, ask_state, lease):
    reply = ask(intent("i-3", lease + 5, quote_qty=Decimal("50")))

    assert not reply.ok
    assert reply.error_code == "stale_lease"
    assert "epoch" in reply.error_message


def test_insufficient_balance_intent_is_one_clear_rejection(execution, ask, lease, sim):
    ask(m.SetRiskConfig(changes={"max_order_quote": "1000000", "max_position_quote": "1000000"}))
    reply = ask(intent("i-poor", lease, quantity=Decimal("1")))  # ~60k USDT, 10k funded

    assert not reply.ok
    assert reply.error_code == "risk_rejected"
    assert "not enough USDT" in reply.error_message
    assert sim.venue.engine.all_orders("sim", "BTCUSDT", None, 1000) == []


def test_limit_order_can_be_cancelled(execution, ask, lease, sim):
    low = Decimal(str(sim.venue.market.last_price("BTCUSDT"))) * Decimal("0.9")
    placed = ask(intent("i-limit", lease, order_type="LIMIT", price=low,
                        quantity=Decimal("0.001")))
    assert placed.ok and placed.result["order_status"] == "NEW", placed

    reply = ask(m.CancelOrder(client_order_id=placed.result["client_order_id"],
                              symbol="BTCUSDT", bot_id="1"))
    again = ask(m.CancelOrder(client_order_id=placed.result["client_order_id"],
                              symbol="BTCUSDT", bot_id="1"))

    assert reply.ok and reply.result["status"] == "canceled"
    assert not again.ok and again.error_code == "unknown_order"
    assert sim.venue.engine.open_orders("sim", "BTCUSDT") == []


def test_kill_switch_blocks_new_intents_until_turned_off(execution, ask, lease):
    on = ask(m.SetKillSwitch(enabled=True, reason="test"))
    blocked = ask(intent("i-k1", lease, quote_qty=Decimal("50")))
    off = ask(m.SetKillSwitch(enabled=False))
    allowed = ask(intent("i-k2", lease, quote_qty=Decimal("50")))

    assert on.ok and off.ok
    assert not blocked.ok and "kill switch" in blocked.error_message
    assert allowed.ok
    assert ask(m.GetRiskConfig()).result["kill_switch"] is False


def test_close_position_sells_what_the_bot_bought(execution, ask, lease, sim):
    assert ask(intent("i-buy", lease, quote_qty=Decimal("100"))).ok

    reply = ask(m.CloseBotPosition(bot_id="1", reason="user"))

    assert reply.ok, reply
    assert reply.result["orders"][0]["order_status"] == "FILLED"
    step = execution.service.filters["BTCUSDT"].step_size
    assert execution.service.position_qty("1", "BTCUSDT") < step  # only unsellable dust left


def test_risk_settings_are_shown_changed_and_validated(execution, ask):
    shown = ask(m.GetRiskConfig())
    changed = ask(m.SetRiskConfig(changes={"max_order_quote": "25"}))
    bad = ask(m.SetRiskConfig(changes={"sizing_mode": "yolo", "max_open_orders": 0}))

    assert shown.ok and shown.result["sizing_mode"] == "fixed_quote"
    assert changed.ok and changed.result["max_order_quote"] == "25"
    assert not bad.ok and set(bad.fields) == {"sizing_mode", "max_open_orders"}


def test_order_above_max_notional_is_rejected_by_risk(execution, ask, lease):
    ask(m.SetRiskConfig(changes={"max_order_quote": "25"}))

    reply = ask(intent("i-big", lease, quote_qty=Decimal("50")))

    assert not reply.ok and reply.error_code == "risk_rejected"
    assert "maximum" in reply.error_message


def test_status_and_heartbeat_show_the_last_sync(execution, ask, listen):
    health = listen(["health.execution"])

    status = ask(m.GetExecutionStatus())
    beat = health.until(lambda t, msg: msg.detail.get("last_sync_ts", 0) > 0)

    assert status.ok and status.result["last_sync_ts"] > 0
    assert status.result["stream_connected"] is True
    assert beat.detail["stream_connected"] is True


def test_429_on_an_intent_waits_and_broadcasts_a_pause(execution, ask, lease, sim, listen):
    pauses = listen(["exec.pause"])
    set_faults(sim, http_429=1, retry_after_s=1)

    reply = ask(intent("i-429", lease, quote_qty=Decimal("50")))

    assert reply.ok, reply
    paused = pauses.until(lambda t, msg: isinstance(msg, m.TradingPaused))
    assert paused.reason == "rate_limited" and paused.retry_after_s == 1.0


def test_418_halts_trading_and_raises_a_critical_alert(execution, ask, ask_state, lease, sim,
                                                      listen):
    pauses = listen(["exec.pause"])
    set_faults(sim, http_418=1, retry_after_s=120)

    first = ask(intent("i-418a", lease, quote_qty=Decimal("50")))
    second = ask(intent("i-418b", lease, quote_qty=Decimal("50")))

    assert not first.ok and not second.ok
    assert second.error_code == "halted"
    assert pauses.until(lambda t, msg: isinstance(msg, m.TradingPaused)).halted
    alerts = wait_for(lambda: ask_state(m.QueryAlerts(level="CRITICAL")).result["items"],
                      what="the critical alert in state")
    assert "418" in alerts[0]["message"]
    assert sim.venue.engine.all_orders("sim", "BTCUSDT", None, 1000) == []


def test_unfilled_limit_is_repriced_then_cancelled_after_its_timeout(execution, ask, lease,
                                                                     sim):
    ask(m.SetRiskConfig(changes={"limit_timeout_s": 0.3, "limit_reprice": True}))
    low = Decimal(str(sim.venue.market.last_price("BTCUSDT"))) * Decimal("0.8")
    placed = ask(intent("i-slow", lease, order_type="LIMIT", price=low.quantize(Decimal("1")),
                        quantity=Decimal("0.001")))
    assert placed.ok, placed
    repriced = client_order_id("i-slow", "1", "E", 1)

    wait_for(lambda: [o for o in sim.venue.engine.all_orders("sim", "BTCUSDT", None, 100)
                      if o.client_order_id == repriced], what="the re-placed order")
    ask(m.SetRiskConfig(changes={"limit_reprice": False}))
    wait_for(lambda: not sim.venue.engine.open_orders("sim", "BTCUSDT"),
             what="every limit cancelled")


def test_take_profit_limit_intent_rests_with_its_trigger(execution, ask, lease, sim):
    last = Decimal(str(sim.venue.market.last_price("BTCUSDT")))
    trigger = (last * Decimal("0.9")).quantize(Decimal("0.01"))

    reply = ask(intent("i-tp", lease, order_type="TAKE_PROFIT_LIMIT", price=trigger,
                       take_profit=trigger, quantity=Decimal("0.001")))

    assert reply.ok, reply
    (order,) = sim.venue.engine.open_orders("sim", "BTCUSDT")
    assert order.type == "TAKE_PROFIT_LIMIT" and order.stop_price == trigger


def test_1007_on_an_intent_still_gives_one_order_recorded_once(execution, ask, ask_state,
                                                              lease, sim):
    unknown_status_once(sim)

    reply = ask(intent("i-1007", lease, quote_qty=Decimal("50")))

    assert reply.ok and reply.result["order_status"] == "FILLED", reply
    cid = client_order_id("i-1007", "1")
    venue = [o.client_order_id for o in sim.venue.engine.all_orders("sim", "BTCUSDT", None, 99)]
    assert venue == [cid]
    orders = wait_for(lambda: ask_state(m.QueryOrders(bot_id=1)).result["items"],
                      what="the order in state")
    assert [o["client_order_id"] for o in orders] == [cid]


def test_exit_for_the_gross_bought_quantity_sells_what_is_really_held(execution, ask, lease):
    bought = ask(intent("i-in", lease, quote_qty=Decimal("100")))
    gross = Decimal(bought.result["executed_qty"])  # the strategy counts this; fees took some

    reply = ask(intent("i-out", lease, side="SELL", quantity=gross))

    assert reply.ok, reply
    assert reply.result["order_status"] == "FILLED"
    assert Decimal(reply.result["quantity"]) < gross
    step = execution.service.filters["BTCUSDT"].step_size
    assert execution.service.position_qty("1", "BTCUSDT") < step


def test_intent_past_its_deadline_is_refused_and_places_nothing(execution, ask, lease, sim):
    """A decision that reaches execution after the worker stopped waiting for it (execution
    busy or restarting, attempts queued) is not traded late: the worker has already dropped it."""
    late = intent("i-late", lease, quote_qty=Decimal("50"),
                  deadline_ms=int(time.time() * 1000) - 1)

    reply = ask(late)
    again = ask(late)

    assert not reply.ok and reply.error_code == "expired"
    assert "deadline" in reply.error_message
    assert not again.ok and again.error_code == "expired"  # a resend gets the same answer
    assert sim.venue.engine.all_orders("sim", "BTCUSDT", None, 1000) == []


def test_accepted_intent_resent_after_its_deadline_gets_its_first_answer(execution, ask, lease,
                                                                         sim):
    deadline = int(time.time() * 1000) + 1500
    first = ask(intent("i-due", lease, quote_qty=Decimal("50"), deadline_ms=deadline))
    time.sleep(max(0.0, deadline / 1000 - time.time()) + 0.05)
    again = ask(intent("i-due", lease, quote_qty=Decimal("50"), deadline_ms=deadline))

    assert first.ok and again.ok
    assert again.result == first.result
    cid = client_order_id("i-due", "1")
    orders = sim.venue.engine.all_orders("sim", "BTCUSDT", None, 1000)
    assert [o.client_order_id for o in orders].count(cid) == 1
