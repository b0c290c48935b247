"""The shortcuts the backtester relies on in ``shared.matching`` change nothing it can see.

The backtester runs the engine without a user-data stream (``user_data_stream=False``) and
reads every fill through records the engine builds without their dataclass ``__init__``; the
book is given best-first, which skips the merge. Each is checked against the plain way here.
"""

from __future__ import annotations

import gc
from dataclasses import fields
from decimal import Decimal

import pytest

from backtest.engine import DataClock, collector_paused, symbol_filters
from shared.filters import ROUND_DOWN, round_to_step
from shared.matching import (
    ExecutionEvent,
    MatchingEngine,
    OcoRequest,
    OrderRequest,
    _levels,
)

D = Decimal
SYM = "BTCUSDT"


def fixed_clock() -> DataClock:
    clock = DataClock()
    clock.now_ms = 1
    return clock


def scenario(engine: MatchingEngine) -> list[ExecutionEvent]:
    """Market entry, protective OCO, a resting LIMIT, an unsorted book with a duplicated
    level, a stop trigger, fills as maker, a cancel: what every call returned, in order."""
    step = symbol_filters(SYM).step_size
    engine.deposit("a", "USDT", D("10000"))
    engine.deposit("b", "BTC", D("1"))
    out: list[ExecutionEvent] = []
    out += engine.set_book(SYM, [(D("30000.00"), D("0.5")), (D("29999.99"), D("1"))],
                           [(D("30000.01"), D("0.002")), (D("30000.02"), D("1"))], 1)
    out += engine.on_trade(SYM, D("30000.00"), D("0.1"), 1)
    out += engine.place("a", OrderRequest(SYM, "BUY", "MARKET", quote_order_qty=D("100"),
                                          client_order_id="entry"))
    held = round_to_step(engine.balances("a")["BTC"].free, step, ROUND_DOWN)
    out += engine.place_oco("a", OcoRequest(
        SYM, "SELL", held, above_type="LIMIT_MAKER", below_type="STOP_LOSS_LIMIT",
        above_price=D("30300.00"), below_price=D("29690.00"), below_stop_price=D("29700.00"),
        below_time_in_force="GTC"))
    out += engine.place("b", OrderRequest(SYM, "SELL", "LIMIT", quantity=D("0.01"),
                                          price=D("30100.00"), time_in_force="GTC",
                                          client_order_id="resting"))
    out += engine.place("b", OrderRequest(SYM, "SELL", "LIMIT", quantity=D("0.02"),
                                          price=D("30500.00"), time_in_force="GTC",
                                          client_order_id="cancel-me"))
    out += engine.set_book(SYM, [(D("30100.00"), D("0.004")), (D("30100.50"), D("0.003")),
                                 (D("30100.00"), D("0.004"))],
                           [(D("30200.00"), D("1"))], 2)  # unsorted, one level given twice
    out += engine.on_trade(SYM, D("29650.00"), D("1"), 3)  # triggers the OCO's stop leg
    out += engine.set_book(SYM, [(D("29695.00"), D("1"))], [(D("29700.00"), D("1"))], 4)
    out += engine.cancel("b", SYM, orig_client_order_id="cancel-me")
    return out


@pytest.fixture()
def engines() -> tuple[MatchingEngine, MatchingEngine]:
    filters = {SYM: symbol_filters(SYM)}
    return (MatchingEngine(filters, fixed_clock()),
            MatchingEngine(filters, fixed_clock(), user_data_stream=False))


def test_without_a_user_data_stream_every_call_returns_the_same_and_balances_agree(
        engines) -> None:
    streaming, quiet = engines

    returned, quiet_returned = scenario(streaming), scenario(quiet)

    assert returned == quiet_returned
    assert {e.execution_type for e in returned} >= {"NEW", "TRADE", "EXPIRED", "CANCELED"}
    for account in ("a", "b", "__venue__"):
        assert streaming.balances(account) == quiet.balances(account)
        assert streaming.open_orders(account) == quiet.open_orders(account)
        assert streaming.my_trades(account, SYM) == quiet.my_trades(account, SYM)
    assert streaming.drain_events() and quiet.drain_events() == []
    assert streaming.ledger.drain_deltas() == [] and quiet.ledger.drain_deltas() == []


def test_records_built_without_init_have_every_field_and_compare_like_the_dataclass(
        engines) -> None:
    events = scenario(engines[0])
    names = [f.name for f in fields(ExecutionEvent)]

    for event in events:
        assert list(vars(event)) == names
        assert ExecutionEvent(**vars(event)) == event
        assert hash(ExecutionEvent(**vars(event))) == hash(event)
        with pytest.raises(AttributeError):
            event.price = D(1)  # type: ignore[misc]  # still frozen


def reference_levels(raw, reverse):
    """The merge ``_levels`` always did: sum duplicated prices, drop empty levels, sort."""
    merged: dict[Decimal, Decimal] = {}
    for price, qty in raw:
        price, qty = Decimal(price), Decimal(qty)
        if qty > 0:
            merged[price] = merged.get(price, D(0)) + qty
    return [[p, merged[p]] for p in sorted(merged, reverse=reverse)]


@pytest.mark.parametrize("raw", [
    [(D("10.00"), D("1")), (D("9.99"), D("2"))],  # best-first bids: no merge needed
    [(D("9.99"), D("2")), (D("10.00"), D("1"))],  # the other way round
    [(D("10.00"), D("1")), (D("10.00"), D("2.5")), (D("9.99"), D("0"))],
    [("10.00", "1E+1"), (10, 3), (D("9.99"), D("0.00100000"))],  # strings, ints, exponents
    [],
])
@pytest.mark.parametrize("reverse", [True, False])
def test_book_levels_equal_the_merge_digit_for_digit(raw, reverse) -> None:
    got, want = _levels(iter(raw), reverse), reference_levels(raw, reverse)

    assert [[str(p), str(q)] for p, q in got] == [[str(p), str(q)] for p, q in want]


def test_open_orders_are_copies(engines) -> None:
    engine = engines[1]
    scenario(engine)
    engine.place("b", OrderRequest(SYM, "SELL", "LIMIT", quantity=D("0.01"),
                                   price=D("31000.00"), time_in_force="GTC"))
    before = engine.open_orders("b")

    before[0].trades.append("not a trade")  # type: ignore[arg-type]
    before[0].status = "FILLED"

    assert engine.open_orders("b")[0].status != "FILLED"
    assert "not a trade" not in engine.open_orders("b")[0].trades


@pytest.mark.parametrize("was_on", [True, False])
def test_the_collector_is_paused_for_a_run_and_left_as_it_was(was_on) -> None:
    initially = gc.isenabled()
    try:
        gc.enable() if was_on else gc.disable()
        with collector_paused():
            assert not gc.isenabled()
        assert gc.isenabled() == was_on
        with pytest.raises(RuntimeError), collector_paused():
            raise RuntimeError
        assert gc.isenabled() == was_on
    finally:
        gc.enable() if initially else gc.disable()
