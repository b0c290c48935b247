"""A sell never sells more than the bot holds at the venue (the chaos run's oversells).

The long chaos run (seed 1) ended with bots that sold more than they had bought, because
execution sized exits and protections from fills alone: a sell whose answer was lost still
counted as unsold, a protection was placed for an entry its bot had already sold, and a
market exit after a refused OCO sold the bot's whole position although another protection
still held part of it. Each test here failed before the fix. The venue's own trades are the
judge: per bot, sells never exceed buys (net of the base fee).
"""

from __future__ import annotations

import time
from decimal import Decimal

from services.exchange_sim.server import SimServer
from shared.errors import UnknownStatusError
from tests.services.execution.conftest import intent, unknown_status_once, wait_for
from tests.services.execution.test_exec_protect import bracketed, open_lists, protected_entry

ZERO = Decimal(0)


def fund_btc(sim: SimServer) -> None:
    """The account also holds BTC of no bot, as a shared account does: an oversell then
    sells those coins (and shows) instead of being refused for want of coins."""
    sim.venue.deposit("sim", "BTC", Decimal("1"))


def venue_position(sim: SimServer, bot: str = "1") -> tuple[Decimal, Decimal]:
    """(bought net of base fees, sold) by ``bot`` at the venue, from its own trades."""
    engine = sim.venue.engine
    cids = {o.order_id: o.client_order_id
            for o in engine.all_orders("sim", "BTCUSDT", limit=100_000)}
    bought = sold = ZERO
    for trade in engine.my_trades("sim", "BTCUSDT", limit=100_000):
        if not cids.get(trade.order_id, "").startswith(f"b{bot}-"):
            continue
        if trade.is_buyer:
            bought += trade.qty - (trade.commission if trade.commission_asset == "BTC" else 0)
        else:
            sold += trade.qty
    return bought, sold


def test_a_sell_whose_answer_was_lost_still_counts_as_sold(execution, ask, lease, sim,
                                                          monkeypatch):
    fund_btc(sim)
    service = execution.service
    entry = ask(intent("xs-1", lease, quote_qty=Decimal("100")))
    assert entry.ok, entry
    wait_for(lambda: service.position_qty("1", "BTCUSDT") > 0, what="the entry's fill")
    unknown_status_once(sim, placed=True)  # the sell is made, its answer lost...

    def unanswered(symbol: str, client_order_id: str) -> None:
        raise UnknownStatusError("no answer")

    monkeypatch.setattr(service.exchange, "get_order", unanswered)  # ...and cannot be asked
    monkeypatch.setattr(service, "_drain_events", lambda: None)  # its fill not streamed yet

    first = ask(intent("xs-1-exit-a", lease, side="SELL"))
    second = ask(intent("xs-1-exit-b", lease, side="SELL"))

    assert first.error_code == "unconfirmed", first
    assert not second.ok, second  # nothing is left to sell: the first sell is in flight
    bought, sold = venue_position(sim)
    assert sold <= bought, f"bot 1 sold {sold} but bought {bought}"


def test_no_protection_for_an_entry_already_sold(execution, ask, lease, sim, monkeypatch):
    fund_btc(sim)
    service = execution.service
    monkeypatch.setattr(service.protector, "process_due", lambda: None)  # protection is late
    entry = ask(bracketed(sim, "xs-2", lease))
    assert entry.ok, entry
    wait_for(lambda: service.position_qty("1", "BTCUSDT") > 0, what="the entry's fill")
    exited = ask(intent("xs-2-exit", lease, side="SELL"))
    assert exited.ok, exited
    monkeypatch.undo()  # the late protection now runs, for a position that is gone

    rows = wait_for(lambda: [r for r in service.db.protections() if r["status"] != "pending"],
                    what="the entry's protection to be handled")

    assert open_lists(sim) == []
    assert [r["status"] for r in rows] == ["closed"]
    bought, sold = venue_position(sim)
    assert sold <= bought


def test_market_exit_after_a_refused_oco_sells_only_that_entry(execution, ask, lease, sim):
    fund_btc(sim)
    service = execution.service
    list_a, stop_a, _ = protected_entry(ask, lease, sim, "xs-3a")
    held_a = service.position_qty("1", "BTCUSDT")
    crossed = ask(bracketed(sim, "xs-3b", lease, stop="1.02"))
    assert crossed.ok, crossed

    wait_for(lambda: any(o["role"] == "C" and o["status"] == "FILLED"
                         for o in service.db.query("SELECT * FROM orders")),
             what="the market exit of the refused entry")

    assert [ol.list_client_order_id for ol in open_lists(sim)] == [list_a]  # A still guarded
    bought, sold = venue_position(sim)
    step = service.filters["BTCUSDT"].step_size
    assert bought - sold >= held_a - step, (bought, sold, held_a)  # A's coins are still there
    stop_leg = next(o for o in sim.venue.engine.open_orders("sim", "BTCUSDT")
                    if o.client_order_id == stop_a)
    assert stop_leg.orig_qty <= bought - sold  # the live stop never sells more than is held


def test_a_protection_waits_for_the_fills_of_its_entry(execution, ask, lease, sim, monkeypatch):
    """Fills lost with a killed process or a dropped stream: until reconciliation finds them
    the bot seems to hold nothing, and the protection must wait, not be given up (the
    10-minute chaos run ended with three positions left unprotected that way)."""
    service = execution.service
    monkeypatch.setattr(service.tracker, "apply_fill", lambda fill: False)  # fills lost
    entry = ask(bracketed(sim, "xs-4", lease))
    assert entry.ok, entry
    wait_for(lambda: service.db.protections(), what="the protection's row")

    assert open_lists(sim) == []
    assert [r["status"] for r in service.db.protections()] == ["pending"]
    monkeypatch.undo()  # reconciliation asks the entry's trades by order id

    wait_for(lambda: open_lists(sim), what="the protection, once the fills are known")
    assert [r["status"] for r in service.db.protections()] == ["active"]


def test_an_exit_just_after_the_take_profit_filled_sells_nothing_more(execution, ask, lease,
                                                                     sim, monkeypatch):
    """The take-profit fills at the venue; before its fill is streamed the strategy exits. The
    exit's cancel of the protection finds the list ended: the exit must count what the
    take-profit sold (the 10-minute chaos run sold it a second time)."""
    fund_btc(sim)
    service = execution.service
    _, _, profit_id = protected_entry(ask, lease, sim, "xs-5")
    monkeypatch.setattr(service, "_drain_events", lambda: None)  # the fill is not streamed yet
    profit = next(o for o in sim.venue.engine.open_orders("sim", "BTCUSDT")
                  if o.client_order_id == profit_id)
    sim.venue.feed_trade("BTCUSDT", profit.price * Decimal("1.001"), Decimal("10"),
                         int(time.time() * 1000))
    assert open_lists(sim) == []  # the take-profit filled, the stop expired

    reply = ask(intent("xs-5-exit", lease, side="SELL"))

    assert not reply.ok, reply  # nothing is left to sell
    bought, sold = venue_position(sim)
    assert sold <= bought, f"bot 1 sold {sold} but bought {bought}"
