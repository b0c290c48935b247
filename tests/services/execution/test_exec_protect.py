"""Protective OCO after an entry fill: placed, legs cancel each other, restored after restart."""

from __future__ import annotations

from decimal import Decimal

from services.execution.protect import leg_ids
from shared import messages as m
from tests.services.execution.conftest import (
    intent,
    make_exchange,
    start_execution,
    synced,
    wait_for,
)


def open_lists(sim) -> list:
    return sim.venue.engine.open_order_lists("sim")


def bracketed(sim, intent_id: str, lease: int, stop: str = "0.95",
              take: str = "1.05") -> m.SubmitIntent:
    """A 100 USDT market entry with its stop and take-profit at these fractions of the
    market's last price (a stop above 1 is already crossed)."""
    price = Decimal(str(sim.venue.market.last_price("BTCUSDT")))
    return intent(intent_id, lease, quote_qty=Decimal("100"),
                  stop_loss=(price * Decimal(stop)).quantize(Decimal("0.01")),
                  take_profit=(price * Decimal(take)).quantize(Decimal("0.01")))


def protected_entry(ask, lease, sim, intent_id: str) -> tuple[str, str, str]:
    reply = ask(bracketed(sim, intent_id, lease))
    assert reply.ok, reply
    wait_for(lambda: open_lists(sim), what="the protective OCO")
    return leg_ids(intent_id, "1", 0)


def test_entry_fill_places_one_native_oco(execution, ask, lease, sim, listen):
    events = listen(["exec.protect.1"])

    list_id, stop_id, profit_id = protected_entry(ask, lease, sim, "p-1")

    lists = open_lists(sim)
    assert len(lists) == 1 and lists[0].list_client_order_id == list_id
    legs = {o.client_order_id: o for o in sim.venue.engine.open_orders("sim", "BTCUSDT")}
    assert set(legs) == {stop_id, profit_id}
    assert legs[stop_id].type == "STOP_LOSS_LIMIT" and legs[profit_id].type == "LIMIT_MAKER"
    step = execution.service.filters["BTCUSDT"].step_size
    assert abs(legs[stop_id].orig_qty - execution.service.position_qty("1", "BTCUSDT")) < step
    assert events.until(lambda t, msg: msg.status == "active").list_client_order_id == list_id


def test_cancelling_one_leg_cancels_the_other(execution, ask, lease, sim):
    _, stop_id, profit_id = protected_entry(ask, lease, sim, "p-2")

    reply = ask(m.CancelOrder(client_order_id=stop_id, symbol="BTCUSDT", bot_id="1"))

    assert reply.ok
    assert open_lists(sim) == []
    assert execution.service.db.protections("active") == []  # not restored: the user chose
    exchange = make_exchange(sim)
    try:
        assert exchange.get_order("BTCUSDT", profit_id)["status"] in ("CANCELED", "EXPIRED")
    finally:
        exchange.close()


def test_protection_lost_while_execution_was_down_is_restored_on_restart(
        state, endpoints, sim, data_dir, ask, lease):
    execution = start_execution(endpoints, sim, data_dir)
    wait_for(lambda: synced(execution), what="first sync")
    list_id, _, _ = protected_entry(ask, lease, sim, "p-3")
    execution.close()
    exchange = make_exchange(sim)  # someone cancels it while execution is away
    exchange.cancel_order_list("BTCUSDT", list_id)
    exchange.close()
    assert open_lists(sim) == []

    execution = start_execution(endpoints, sim, data_dir)
    try:
        wait_for(lambda: open_lists(sim), what="the protection placed again")
    finally:
        execution.close()

    assert open_lists(sim)[0].list_client_order_id == leg_ids("p-3", "1", 1)[0]


def test_close_position_cancels_the_protection_first(execution, ask, lease, sim):
    protected_entry(ask, lease, sim, "p-4")

    reply = ask(m.CloseBotPosition(bot_id="1"))

    assert reply.ok, reply
    assert open_lists(sim) == []
    assert reply.result["orders"][0]["order_status"] == "FILLED"


def test_trailing_stop_moves_the_stop_up_by_cancel_replace(execution, ask, lease, sim):
    _, stop_id, _ = protected_entry(ask, lease, sim, "p-5")
    service = execution.service
    row = service.db.protections("active")[0]
    high = Decimal(row["stop_loss"]) * Decimal("1.2")  # the price ran up 20 % over the stop

    ask(m.SetRiskConfig(changes={"trailing_stop_pct": "3"}))
    price = Decimal(str(sim.venue.market.last_price("BTCUSDT")))
    service.db.save_protection(row["entry_client_order_id"], high_price=min(high, price))
    moved = wait_for(lambda: service.db.protections("active")
                     and service.db.protections("active")[0]["gen"] >= 1,
                     what="the stop moved")

    assert moved
    new = service.db.protections("active")[0]
    assert Decimal(new["stop_loss"]) > Decimal(row["stop_loss"])
    assert open_lists(sim)[0].list_client_order_id == leg_ids("p-5", "1", new["gen"])[0]


def test_exit_intent_releases_the_protection_and_sells(execution, ask, lease, sim):
    protected_entry(ask, lease, sim, "p-6")

    reply = ask(intent("p-6-exit", lease, side="SELL"))

    assert reply.ok, reply
    assert reply.result["order_status"] == "FILLED"
    assert open_lists(sim) == []
    assert execution.service.db.protections("active") == []


def test_protection_the_exchange_refuses_raises_an_alert(execution, ask, ask_state, lease, sim):
    reply = ask(bracketed(sim, "p-7", lease, stop="1.02"))  # stop above the market

    assert reply.ok, reply
    # the stop is already crossed: what the stop would have done, a market exit (finding 4)
    alerts = wait_for(lambda: ask_state(m.QueryAlerts(level="WARNING")).result["items"],
                      what="the alert in state")
    assert "exits at market" in alerts[0]["message"]
    assert execution.service.db.protections("closed")


def test_stop_loss_alone_is_one_stop_limit_order(execution, ask, lease, sim):
    price = Decimal(str(sim.venue.market.last_price("BTCUSDT")))

    reply = ask(intent("p-8", lease, quote_qty=Decimal("100"),
                       stop_loss=(price * Decimal("0.95")).quantize(Decimal("0.01"))))

    assert reply.ok, reply
    _, stop_id, _ = leg_ids("p-8", "1", 0)
    (order,) = wait_for(lambda: sim.venue.engine.open_orders("sim", "BTCUSDT"),
                        what="the stop order")
    assert order.client_order_id == stop_id and order.type == "STOP_LOSS_LIMIT"
    assert execution.service.db.protections("active")


def test_exit_refused_by_risk_leaves_the_protection_untouched(execution, ask, lease, sim):
    list_id, stop_id, _ = protected_entry(ask, lease, sim, "p-9")
    ask(m.SetKillSwitch(enabled=True, reason="test"))

    reply = ask(intent("p-9-exit", lease, side="SELL"))
    again = ask(intent("p-9-exit", lease, side="SELL"))  # a resend of the same intent

    assert not reply.ok and "kill switch" in reply.error_message
    # answered from the first refusal, not tried again
    assert (again.error_code, again.error_message) == (reply.error_code, reply.error_message)
    # checked before anything is cancelled: the same OCO stays, never cancelled and re-placed
    assert [ol.list_client_order_id for ol in open_lists(sim)] == [list_id]
    assert not any(o.client_order_id == stop_id and o.status == "CANCELED" for o in
                   sim.venue.engine.all_orders("sim", "BTCUSDT"))


def test_exit_refused_by_the_exchange_puts_the_protection_back(execution, ask, lease, sim,
                                                              monkeypatch):
    protected_entry(ask, lease, sim, "p-10")
    from shared.errors import InvalidOrderError
    placer = execution.service.placer
    real = placer.place

    def refuse_the_exit(spec):
        if spec.side == "SELL" and spec.order_type == "MARKET":
            raise InvalidOrderError("the exchange refused it", -1013)
        return real(spec)

    monkeypatch.setattr(placer, "place", refuse_the_exit)

    reply = ask(intent("p-10-exit", lease, side="SELL"))

    assert not reply.ok and reply.error_code == "invalid_order", reply
    wait_for(lambda: open_lists(sim) and open_lists(sim)[0].list_client_order_id
             == leg_ids("p-10", "1", 1)[0], what="the protection placed again")
