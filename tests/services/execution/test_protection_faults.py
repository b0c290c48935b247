"""Protection under exchange faults (chaos findings 2 and 4), against the real simulator.

2. A stop-leg cancel that fails during an exit must leave the protection tracked (the exit is
   refused), so the next exit cancels it: never a live OCO execution forgot, never a sell of
   coins the bot no longer holds.
4. A protective OCO refused because the price already crossed the stop exits at market.
"""

from __future__ import annotations

from decimal import Decimal

from services.execution.protect import leg_ids
from shared import messages as m
from shared.errors import UnknownStatusError
from tests.services.execution.conftest import intent, wait_for
from tests.services.execution.test_exec_protect import bracketed, open_lists, protected_entry


def live_orders(sim) -> list:
    return sim.venue.engine.open_orders("sim", "BTCUSDT")


def flat(service) -> bool:
    """Only dust below one step is left (the exit is rounded down to the step size)."""
    step = service.filters["BTCUSDT"].step_size
    return bool(wait_for(lambda: service.position_qty("1", "BTCUSDT") < step, what="flat"))


def tracked(service) -> list:
    return [r for r in service.db.protections() if r["status"] in ("active", "pending")]


def fail_once(monkeypatch, obj, name: str) -> None:
    """``obj.name`` answers "outcome unknown" (a 502) once, doing nothing, then works."""
    real = getattr(obj, name)
    calls = []

    def flaky(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise UnknownStatusError("outcome unknown (502): An unknown error occurred", -1000)
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, flaky)


def unanswered(*args, **kwargs):
    raise UnknownStatusError("outcome unknown (502): An unknown error occurred", -1000)


def test_failed_stop_cancel_keeps_the_protection_and_the_next_exit_cancels_it(
        execution, ask, lease, sim, monkeypatch):
    list_id, stop_id, _ = protected_entry(ask, lease, sim, "pf-1")
    service = execution.service
    held = service.position_qty("1", "BTCUSDT")
    fail_once(monkeypatch, service.placer, "cancel")  # the stop leg's cancel: 502, not done

    refused = ask(intent("pf-1-exit-a", lease, side="SELL"))

    assert not refused.ok
    assert refused.error_code == "protection_not_released", refused
    assert stop_id in refused.error_message and "still open" in refused.error_message
    assert [ol.list_client_order_id for ol in open_lists(sim)] == [list_id]
    rows = tracked(service)
    assert len(rows) == 1 and rows[0]["status"] == "active"  # not marked closed
    assert service.position_qty("1", "BTCUSDT") == held  # nothing was sold

    exited = ask(intent("pf-1-exit-b", lease, side="SELL"))

    assert exited.ok, exited
    assert exited.result["order_status"] == "FILLED"
    assert open_lists(sim) == [] and live_orders(sim) == []  # no live OCO left behind
    assert tracked(service) == []
    assert flat(service)
    sold = Decimal(exited.result["executed_qty"])
    assert sold <= held  # never more than the bot held


def test_cancel_whose_outcome_cannot_be_checked_refuses_the_exit(execution, ask, lease, sim,
                                                                 monkeypatch):
    list_id, stop_id, _ = protected_entry(ask, lease, sim, "pf-2")
    service = execution.service
    monkeypatch.setattr(service.placer, "cancel", unanswered)  # the cancel and every query
    monkeypatch.setattr(service.placer, "find", unanswered)  # of the leg fail

    refused = ask(intent("pf-2-exit-a", lease, side="SELL"))

    assert not refused.ok and refused.error_code == "protection_not_released", refused
    assert [ol.list_client_order_id for ol in open_lists(sim)] == [list_id]
    assert len(tracked(service)) == 1
    monkeypatch.undo()

    exited = ask(intent("pf-2-exit-b", lease, side="SELL"))

    assert exited.ok, exited
    assert open_lists(sim) == [] and live_orders(sim) == [] and tracked(service) == []


def test_failed_cancel_on_close_position_keeps_the_protection(execution, ask, lease, sim,
                                                              monkeypatch):
    list_id, _, _ = protected_entry(ask, lease, sim, "pf-3")
    fail_once(monkeypatch, execution.service.placer, "cancel")

    refused = ask(m.CloseBotPosition(bot_id="1"))

    assert not refused.ok and refused.error_code == "protection_not_released", refused
    assert [ol.list_client_order_id for ol in open_lists(sim)] == [list_id]
    assert len(tracked(execution.service)) == 1

    closed = ask(m.CloseBotPosition(bot_id="1"))

    assert closed.ok, closed
    assert open_lists(sim) == [] and live_orders(sim) == []
    assert flat(execution.service)


def test_oco_refused_after_the_price_crossed_the_stop_exits_at_market(
        execution, ask, ask_state, lease, sim):
    reply = ask(bracketed(sim, "pf-4", lease, stop="1.02"))  # the stop is already crossed
    assert reply.ok, reply
    service = execution.service

    wait_for(lambda: any(o["role"] == "C" and o["status"] == "FILLED"
                         for o in service.db.query("SELECT * FROM orders")),
             what="the market exit")

    assert open_lists(sim) == [] and live_orders(sim) == []
    assert flat(service)
    assert tracked(service) == []
    close = service.db.query("SELECT * FROM intents WHERE intent_id LIKE 'close:%'")
    assert len(close) == 1 and "stop loss" in close[0]["request"]  # why it was sold
    alerts = wait_for(lambda: ask_state(m.QueryAlerts(level="WARNING")).result["items"],
                      what="the alert in state")
    assert any("exits at market" in a["message"] for a in alerts)


def test_oco_refused_for_another_reason_is_retried_then_raises_a_critical_alert(
        execution, ask, ask_state, lease, sim, monkeypatch):
    from shared.errors import InvalidOrderError
    service = execution.service
    calls = []

    def refuse(spec):
        calls.append(spec.list_client_order_id)
        raise InvalidOrderError("The relationship of the prices for the orders is not correct.",
                                -2010)

    monkeypatch.setattr(service.placer, "place_oco", refuse)
    reply = ask(bracketed(sim, "pf-5", lease, stop="0.90", take="1.10"))
    assert reply.ok, reply

    alerts = wait_for(lambda: ask_state(m.QueryAlerts(level="CRITICAL")).result["items"],
                      what="the critical alert")

    assert "NOT protected" in alerts[0]["message"]
    assert len(calls) == 4 and len(set(calls)) == 4  # bounded, each with a fresh client id
    assert calls[0] == leg_ids("pf-5", "1", 0)[0]
    assert service.db.protections("failed")
    assert service.position_qty("1", "BTCUSDT") > 0  # not crossed: no exit
