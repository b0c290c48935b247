"""Tests of shared.matching: the fill model shared by the simulator, paper mode and backtests."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.clock import TestClock
from shared.errors import ExchangeError, InsufficientFundsError, InvalidOrderError
from shared.filters import FilterFailure, default_symbols
from shared.matching import (
    AccountPositionEvent,
    BalanceUpdateEvent,
    CancelRejectedError,
    InsufficientBalanceError,
    Ledger,
    ListStatusEvent,
    MatchingEngine,
    NoSuchOrderError,
    OcoRequest,
    OrderRejectedError,
    OrderRequest,
    error_body,
    fmt,
)

SYM = "BTCUSDT"
ACCOUNT = "alice"


def limit(side, qty, price, tif="GTC", cid=None, kind="LIMIT", stop=None):
    return OrderRequest(SYM, side, kind, quantity=D(qty), price=D(price),
                        time_in_force=None if kind == "LIMIT_MAKER" else tif,
                        client_order_id=cid, stop_price=D(stop) if stop else None)


def market(side, qty=None, quote=None):
    return OrderRequest(SYM, side, "MARKET", quantity=D(qty) if qty else None,
                        quote_order_qty=D(quote) if quote else None)


@pytest.fixture
def clock() -> TestClock:
    return TestClock(1_700_000_000.0)


@pytest.fixture
def engine(clock) -> MatchingEngine:
    eng = MatchingEngine(default_symbols(), clock=clock)
    eng.deposit(ACCOUNT, "USDT", D("10000"))
    eng.deposit(ACCOUNT, "BTC", D("1"))
    eng.set_book(SYM, [(D("29990"), D("1")), (D("29980"), D("2"))],
                 [(D("30000"), D("0.01")), (D("30001"), D("0.02")), (D("30002.50"), D("0.05"))])
    eng.on_trade(SYM, D("29995"), D("0.001"))
    eng.drain_events()
    return eng


def free(engine, asset):
    return engine.balances(ACCOUNT)[asset].free


def locked(engine, asset):
    return engine.balances(ACCOUNT)[asset].locked


# ---------------------------------------------------------------- MARKET


def test_market_buy_fills_per_level_at_vwap_with_fee_in_base(engine):
    events = engine.place(ACCOUNT, market("BUY", "0.05"))

    trades = [e for e in events if e.execution_type == "TRADE"]
    assert [(t.last_executed_price, t.last_executed_qty) for t in trades] == [
        (D("30000"), D("0.01")), (D("30001"), D("0.02")), (D("30002.50"), D("0.02"))]
    assert [t.commission for t in trades] == [D("0.00001"), D("0.00002"), D("0.00002")]
    assert {t.commission_asset for t in trades} == {"BTC"}
    last = trades[-1]
    assert last.order_status == "FILLED"
    assert last.cumulative_quote_qty == D("1500.07")  # 300.00 + 600.02 + 600.05
    assert last.cumulative_quote_qty / last.cumulative_qty == D("30001.4")  # VWAP
    assert free(engine, "USDT") == D("8499.93")
    assert free(engine, "BTC") == D("1.04995")
    assert engine.ledger.fees_collected()["BTC"] == D("0.00005")


def test_market_sell_pays_fee_in_quote(engine):
    events = engine.place(ACCOUNT, market("SELL", "0.5"))

    trade = events[-1]
    assert (trade.last_executed_price, trade.commission, trade.commission_asset) == (
        D("29990"), D("14.995"), "USDT")
    assert free(engine, "USDT") == D("10000") + D("14995") - D("14.995")
    assert free(engine, "BTC") == D("0.5")


def test_market_buy_by_quote_order_qty_spends_at_most_that(engine):
    events = engine.place(ACCOUNT, market("BUY", quote="600"))

    order = engine.get_order(ACCOUNT, SYM, events[0].order_id)
    assert order.status == "FILLED"
    assert order.cumulative_quote_qty <= D("600")
    assert order.executed_qty == D("0.01") + D("0.00999")  # 300 at 30000, rest at 30001
    assert order.orig_quote_order_qty == D("600")


def test_market_order_on_empty_book_is_rejected(engine):
    engine.set_book(SYM, [], [])

    with pytest.raises(OrderRejectedError) as err:
        engine.place(ACCOUNT, market("BUY", "0.01"))

    assert err.value.code == -2010
    assert err.value.msg == "Order book liquidity is less than symbol minimum quantity."


def test_market_beyond_the_book_fills_then_expires(engine):
    events = engine.place(ACCOUNT, market("BUY", "0.1"))

    assert [e.execution_type for e in events] == ["NEW", "TRADE", "TRADE", "TRADE", "EXPIRED"]
    assert events[-1].cumulative_qty == D("0.08")
    assert events[-1].expiry_reason == "INSUFFICIENT_LIQUIDITY"
    assert locked(engine, "USDT") == 0


def test_market_taken_liquidity_is_gone_until_next_book(engine):
    engine.place(ACCOUNT, market("BUY", "0.01"))

    assert engine.book(SYM).best_ask() == D("30001")


# ---------------------------------------------------------------- LIMIT


def test_limit_rests_then_fills_as_maker_when_a_trade_prints_through(engine):
    placed = engine.place(ACCOUNT, limit("BUY", "0.01", "29900"))
    assert [e.execution_type for e in placed] == ["NEW"]
    assert locked(engine, "USDT") == D("299")

    events = engine.on_trade(SYM, D("29899.99"), D("5"))

    assert len(events) == 1
    fill = events[0]
    assert (fill.execution_type, fill.order_status) == ("TRADE", "FILLED")
    assert (fill.last_executed_price, fill.is_maker) == (D("29900"), True)
    assert free(engine, "BTC") == D("1") + D("0.01") - D("0.00001")
    assert locked(engine, "USDT") == 0


def test_trade_exactly_at_the_limit_price_does_not_fill(engine):
    engine.place(ACCOUNT, limit("BUY", "0.01", "29900"))

    assert engine.on_trade(SYM, D("29900"), D("5")) == []


def test_trade_smaller_than_order_gives_a_partial_fill(engine):
    engine.place(ACCOUNT, limit("SELL", "0.1", "31000"))

    events = engine.on_trade(SYM, D("31000.01"), D("0.04"))

    assert events[0].order_status == "PARTIALLY_FILLED"
    assert events[0].last_executed_qty == D("0.04")
    assert locked(engine, "BTC") == D("0.06")
    assert engine.open_orders(ACCOUNT, SYM)[0].executed_qty == D("0.04")


def test_marketable_limit_takes_as_taker_then_rests(engine):
    events = engine.place(ACCOUNT, limit("BUY", "0.05", "30001"))

    assert [e.execution_type for e in events] == ["NEW", "TRADE", "TRADE"]
    assert all(not e.is_maker for e in events[1:])
    assert events[-1].order_status == "PARTIALLY_FILLED"
    assert locked(engine, "USDT") == D("0.02") * D("30001")  # only the resting part


def test_buy_filled_below_its_limit_releases_the_excess_lock(engine):
    engine.place(ACCOUNT, limit("BUY", "0.01", "30500"))

    assert locked(engine, "USDT") == 0
    assert free(engine, "USDT") == D("10000") - D("300")


def test_ioc_remainder_expires(engine):
    events = engine.place(ACCOUNT, limit("BUY", "0.05", "30000", tif="IOC"))

    assert [e.execution_type for e in events] == ["NEW", "TRADE", "EXPIRED"]
    assert events[-1].cumulative_qty == D("0.01")
    assert locked(engine, "USDT") == 0


def test_fok_that_cannot_fill_fully_expires_without_fills(engine):
    events = engine.place(ACCOUNT, limit("BUY", "0.05", "30000", tif="FOK"))

    assert [(e.execution_type, e.cumulative_qty) for e in events] == [
        ("NEW", 0), ("EXPIRED", 0)]
    assert free(engine, "USDT") == D("10000")


def test_resting_order_fills_when_a_new_book_crosses_it(engine):
    engine.place(ACCOUNT, limit("BUY", "0.01", "29950"))

    events = engine.set_book(SYM, [(D("29900"), D("1"))], [(D("29940"), D("0.004")),
                                                          (D("29945"), D("1"))])

    assert [(e.last_executed_qty, e.last_executed_price, e.is_maker) for e in events] == [
        (D("0.004"), D("29950"), True), (D("0.006"), D("29950"), True)]


def test_fill_on_touch_fills_a_trade_at_exactly_the_limit_price(clock):
    engine = MatchingEngine(default_symbols(), clock=clock, fill_on_touch=True)
    engine.deposit(ACCOUNT, "USDT", D("1000"))
    engine.place(ACCOUNT, limit("BUY", "0.01", "29900"))

    events = engine.on_trade(SYM, D("29900"), D("1"))

    assert events[0].order_status == "FILLED"


def test_market_events_carry_the_trade_timestamp(engine):
    engine.place(ACCOUNT, limit("BUY", "0.01", "29900"))

    events = engine.on_trade(SYM, D("29000"), D("1"), ts_ms=1_600_000_000_000)

    assert events[0].to_dict()["T"] == 1_600_000_000_000


def test_market_sell_by_quote_order_qty_sells_enough_base(engine):
    events = engine.place(ACCOUNT, market("SELL", quote="2999"))

    assert events[-1].order_status == "FILLED"
    assert events[-1].cumulative_qty == D("0.1")  # 2999 / 29990 at the best bid
    assert events[-1].cumulative_quote_qty == D("2999")


def test_cancel_all_cancels_every_open_order_and_unlocks(engine):
    engine.place(ACCOUNT, limit("BUY", "0.01", "29000"))
    engine.place_oco(ACCOUNT, sell_oco())

    events = engine.cancel_all(ACCOUNT, SYM)

    assert len(events) == 3
    assert engine.open_orders(ACCOUNT) == []
    assert locked(engine, "USDT") == locked(engine, "BTC") == 0


# ---------------------------------------------------------------- LIMIT_MAKER


def test_limit_maker_that_would_cross_is_rejected(engine):
    with pytest.raises(OrderRejectedError) as err:
        engine.place(ACCOUNT, limit("BUY", "0.01", "30000", kind="LIMIT_MAKER"))

    assert (err.value.code, err.value.msg) == (-2010, "Order would immediately match and take.")
    assert locked(engine, "USDT") == 0
    assert engine.open_orders(ACCOUNT) == []


def test_limit_maker_below_the_ask_rests(engine):
    events = engine.place(ACCOUNT, limit("BUY", "0.01", "29999.99", kind="LIMIT_MAKER"))

    assert [(e.execution_type, e.is_working) for e in events] == [("NEW", True)]


# ---------------------------------------------------------------- stops


def test_stop_loss_limit_rests_untriggered_then_triggers_on_last_price(engine):
    placed = engine.place(ACCOUNT, limit("SELL", "0.01", "29900", kind="STOP_LOSS_LIMIT",
                                         stop="29950"))
    assert placed[0].is_working is False
    assert engine.on_trade(SYM, D("29951"), D("1")) == []

    events = engine.on_trade(SYM, D("29950"), D("1"))

    order = engine.get_order(ACCOUNT, SYM, placed[0].order_id)
    assert order.status == "FILLED"
    assert order.is_working is True
    assert events[-1].last_executed_price == D("29990")  # took the best bid as taker


def test_take_profit_sell_triggers_when_price_rises(engine):
    placed = engine.place(ACCOUNT, limit("SELL", "0.01", "31000", kind="TAKE_PROFIT_LIMIT",
                                         stop="31000"))

    engine.on_trade(SYM, D("31000"), D("1"))

    assert engine.get_order(ACCOUNT, SYM, placed[0].order_id).is_working is True


def test_stop_that_would_trigger_immediately_is_rejected(engine):
    with pytest.raises(OrderRejectedError) as err:
        engine.place(ACCOUNT, limit("SELL", "0.01", "29900", kind="STOP_LOSS_LIMIT",
                                    stop="30000"))

    assert err.value.msg == "Order would trigger immediately."


# ---------------------------------------------------------------- OCO


def sell_oco(qty="0.01", take_profit="31000", stop="29000", stop_limit="28900"):
    return OcoRequest(SYM, "SELL", D(qty), above_type="LIMIT_MAKER",
                      below_type="STOP_LOSS_LIMIT", above_price=D(take_profit),
                      below_price=D(stop_limit), below_stop_price=D(stop),
                      below_time_in_force="GTC", list_client_order_id="my-oco")


def test_oco_places_two_legs_sharing_one_lock(engine):
    events = engine.place_oco(ACCOUNT, sell_oco())

    assert sorted(e.order_type for e in events) == ["LIMIT_MAKER", "STOP_LOSS_LIMIT"]
    assert {e.order_list_id for e in events} == {events[0].order_list_id}
    assert locked(engine, "BTC") == D("0.01")
    statuses = [e for e in engine.drain_events() if isinstance(e, ListStatusEvent)]
    assert [(s.list_status_type, s.list_order_status) for s in statuses] == [
        ("EXEC_STARTED", "EXECUTING")]


def test_oco_stop_trigger_expires_the_limit_leg(engine):
    engine.place_oco(ACCOUNT, sell_oco())
    engine.set_book(SYM, [(D("28950"), D("1"))], [(D("28960"), D("1"))])
    engine.drain_events()

    events = engine.on_trade(SYM, D("28990"), D("1"))

    expired = [e for e in events if e.execution_type == "EXPIRED"]
    assert [(e.order_type, e.expiry_reason) for e in expired] == [("LIMIT_MAKER", "OCO_TRIGGER")]
    assert events[-1].order_status == "FILLED"
    statuses = [e for e in engine.drain_events() if isinstance(e, ListStatusEvent)]
    assert statuses[-1].to_dict()["l"] == "ALL_DONE"
    assert locked(engine, "BTC") == 0


def test_oco_limit_leg_fill_expires_the_stop_leg(engine):
    engine.place_oco(ACCOUNT, sell_oco())

    events = engine.on_trade(SYM, D("31000.01"), D("1"))

    assert [(e.order_type, e.execution_type) for e in events] == [
        ("LIMIT_MAKER", "TRADE"), ("STOP_LOSS_LIMIT", "EXPIRED")]
    assert engine.open_orders(ACCOUNT) == []
    assert locked(engine, "BTC") == 0


def test_oco_with_wrong_price_order_is_rejected(engine):
    with pytest.raises(OrderRejectedError) as err:
        engine.place_oco(ACCOUNT, sell_oco(take_profit="29000", stop="31000", stop_limit="30900"))

    assert err.value.msg == "The relationship of the prices for the orders is not correct."


def test_cancelling_one_oco_leg_cancels_the_list(engine):
    events = engine.place_oco(ACCOUNT, sell_oco())

    cancelled = engine.cancel(ACCOUNT, SYM, order_id=events[0].order_id)

    assert sorted(e.order_status for e in cancelled) == ["CANCELED", "CANCELED"]
    assert locked(engine, "BTC") == 0
    order_list = engine.get_order_list(ACCOUNT, list_client_order_id="my-oco")
    assert order_list.list_order_status == "ALL_DONE"


def test_oco_response_lists_both_orders(engine):
    events = engine.place_oco(ACCOUNT, sell_oco())

    body = engine.order_list_response(engine.get_order_list(ACCOUNT, events[0].order_list_id))

    assert body["contingencyType"] == "OCO"
    assert body["listClientOrderId"] == "my-oco"
    assert len(body["orders"]) == len(body["orderReports"]) == 2


def test_buy_oco_limit_leg_fill_releases_the_stop_legs_larger_lock(engine):
    request = OcoRequest(SYM, "BUY", D("0.01"), above_type="STOP_LOSS_LIMIT",
                         below_type="LIMIT_MAKER", above_price=D("31100"),
                         above_stop_price=D("31000"), below_price=D("29000"))
    engine.place_oco(ACCOUNT, request)
    assert locked(engine, "USDT") == D("311")  # qty x the higher leg price

    engine.on_trade(SYM, D("28999"), D("1"))

    assert locked(engine, "USDT") == 0
    assert free(engine, "USDT") == D("10000") - D("290")


# ---------------------------------------------------------------- errors


def test_insufficient_balance_rejects_and_changes_nothing(engine):
    with pytest.raises(InsufficientBalanceError) as err:
        engine.place(ACCOUNT, limit("BUY", "1", "29000"))

    assert isinstance(err.value, InsufficientFundsError)
    assert (err.value.code, err.value.msg) == (
        -2010, "Account has insufficient balance for requested action.")
    assert engine.balances(ACCOUNT)["USDT"].free == D("10000")
    assert engine.drain_events() == []


def test_insufficient_balance_for_market_buy(engine):
    engine.set_book(SYM, [], [(D("30000"), D("10"))])

    with pytest.raises(InsufficientBalanceError):
        engine.place(ACCOUNT, market("BUY", "1"))


def test_cancel_unknown_order_is_minus_2011(engine):
    with pytest.raises(CancelRejectedError) as err:
        engine.cancel(ACCOUNT, SYM, order_id=999)

    assert (err.value.code, err.value.msg) == (-2011, "Unknown order sent.")


def test_cancel_filled_order_is_minus_2011(engine):
    events = engine.place(ACCOUNT, market("BUY", "0.01"))

    with pytest.raises(CancelRejectedError):
        engine.cancel(ACCOUNT, SYM, order_id=events[0].order_id)


def test_query_unknown_order_is_minus_2013(engine):
    with pytest.raises(NoSuchOrderError) as err:
        engine.get_order(ACCOUNT, SYM, orig_client_order_id="nope")

    assert (err.value.code, err.value.msg) == (-2013, "Order does not exist.")


def test_other_accounts_order_is_unknown(engine):
    events = engine.place(ACCOUNT, limit("BUY", "0.01", "29000"))

    with pytest.raises(NoSuchOrderError):
        engine.get_order("bob", SYM, events[0].order_id)


def test_filter_failure_through_the_engine(engine):
    with pytest.raises(FilterFailure) as err:
        engine.place(ACCOUNT, limit("BUY", "0.01", "29000.001"))

    assert isinstance(err.value, InvalidOrderError)
    assert error_body(err.value) == {"code": -1013, "msg": "Filter failure: PRICE_FILTER"}


def test_duplicate_client_id_of_an_open_order_is_rejected(engine):
    engine.place(ACCOUNT, limit("BUY", "0.01", "29000", cid="intent-1"))

    with pytest.raises(OrderRejectedError) as err:
        engine.place(ACCOUNT, limit("BUY", "0.01", "29000", cid="intent-1"))

    assert (err.value.code, err.value.msg) == (-2010, "Duplicate order sent.")


def test_client_id_can_be_reused_once_the_order_is_final(engine):
    engine.place(ACCOUNT, limit("BUY", "0.01", "29000", cid="intent-1"))
    engine.cancel(ACCOUNT, SYM, orig_client_order_id="intent-1")

    events = engine.place(ACCOUNT, limit("BUY", "0.01", "29000", cid="intent-1"))

    assert events[0].client_order_id == "intent-1"


def test_unknown_symbol_is_minus_1121(engine):
    with pytest.raises(InvalidOrderError) as err:
        engine.place(ACCOUNT, OrderRequest("FOOBAR", "BUY", "MARKET", quantity=D("1")))

    assert err.value.code == -1121


def test_error_body_of_a_plain_exchange_error():
    assert error_body(ExchangeError("boom", -1000)) == {"code": -1000, "msg": "boom"}


# ---------------------------------------------------------------- cancel, ids, rendering


def test_cancel_reports_both_client_ids_and_unlocks(engine):
    engine.place(ACCOUNT, limit("BUY", "0.01", "29000", cid="intent-1"))

    events = engine.cancel(ACCOUNT, SYM, orig_client_order_id="intent-1",
                           new_client_order_id="cancel-1")

    report = events[0].to_dict()
    assert (report["x"], report["X"], report["c"], report["C"]) == (
        "CANCELED", "CANCELED", "cancel-1", "intent-1")
    assert locked(engine, "USDT") == 0
    order = engine.get_order(ACCOUNT, SYM, events[0].order_id)
    assert order.to_cancel_response("cancel-1")["origClientOrderId"] == "intent-1"


def test_order_and_trade_ids_increase_per_symbol(engine):
    first = engine.place(ACCOUNT, market("BUY", "0.015"))
    second = engine.place(ACCOUNT, market("BUY", "0.015"))

    assert second[0].order_id == first[0].order_id + 1
    trade_ids = [e.trade_id for e in first + second if e.execution_type == "TRADE"]
    assert trade_ids == sorted(trade_ids) and len(set(trade_ids)) == len(trade_ids)
    eth = engine.place(ACCOUNT, OrderRequest("ETHUSDT", "BUY", "LIMIT", quantity=D("0.01"),
                                             price=D("2000"), time_in_force="GTC"))
    assert eth[0].order_id == 1


def test_execution_report_uses_binance_field_letters(engine, clock):
    events = engine.place(ACCOUNT, market("BUY", "0.01"))

    report = events[-1].to_dict()
    assert report["e"] == "executionReport"
    assert report["E"] == report["T"] == clock.time_ms()
    assert (report["s"], report["S"], report["o"], report["f"]) == (SYM, "BUY", "MARKET", "GTC")
    assert (report["x"], report["X"], report["l"], report["L"]) == (
        "TRADE", "FILLED", "0.01000000", "30000.00000000")
    assert (report["n"], report["N"], report["m"], report["g"]) == (
        "0.00001000", "BTC", False, -1)
    assert report["Z"] == "300.00000000"
    assert isinstance(report["i"], int) and isinstance(report["t"], int)


def test_full_response_has_fills(engine):
    events = engine.place(ACCOUNT, market("BUY", "0.02"))

    body = engine.get_order(ACCOUNT, SYM, events[0].order_id).to_response("FULL")

    assert body["status"] == "FILLED"
    assert body["price"] == "0.00000000"
    assert body["cummulativeQuoteQty"] == "600.01000000"
    assert [f["price"] for f in body["fills"]] == ["30000.00000000", "30001.00000000"]
    assert set(body["fills"][0]) == {"price", "qty", "commission", "commissionAsset", "tradeId"}


def test_order_dict_has_rest_fields(engine):
    events = engine.place(ACCOUNT, limit("SELL", "0.01", "31000", kind="STOP_LOSS_LIMIT",
                                         stop="29000"))

    body = engine.get_order(ACCOUNT, SYM, events[0].order_id).to_dict()

    assert body["stopPrice"] == "29000.00000000"
    assert (body["isWorking"], body["workingTime"]) == (False, -1)
    assert body["status"] == "NEW"


def test_my_trades_from_id(engine):
    engine.place(ACCOUNT, market("BUY", "0.05"))

    trades = engine.my_trades(ACCOUNT, SYM, from_id=2)

    assert [t.trade_id for t in trades] == [2, 3]
    assert trades[0].to_dict()["quoteQty"] == "600.02000000"


def test_deposit_emits_balance_update_and_account_position(clock):
    engine = MatchingEngine(default_symbols(), clock=clock)

    events = engine.deposit("bob", "USDT", D("10000"))

    assert isinstance(events[0], BalanceUpdateEvent)
    assert events[0].to_dict()["d"] == "10000.00000000"
    assert isinstance(events[1], AccountPositionEvent)
    assert events[1].to_dict()["B"] == [{"a": "USDT", "f": "10000.00000000", "l": "0.00000000"}]


def test_fills_queue_an_account_position_after_the_reports(engine):
    engine.place(ACCOUNT, market("BUY", "0.01"))

    queued = engine.drain_events()

    assert isinstance(queued[-1], AccountPositionEvent)
    assert {b.asset for b in queued[-1].balances} == {"USDT", "BTC"}


def test_fmt_pads_to_eight_decimals_and_never_rounds():
    assert fmt(D("1.5")) == "1.50000000"
    assert fmt(D("0.000000001")) == "0.000000001"


# ---------------------------------------------------------------- properties

TICK = D("0.01")
STEP = D("0.00001")

prices = st.integers(min_value=2_900_000, max_value=3_100_000).map(lambda n: D(n) * TICK)
qtys = st.integers(min_value=1, max_value=20_000).map(lambda n: D(n) * STEP)
sides = st.sampled_from(["BUY", "SELL"])

ops = st.one_of(
    st.tuples(st.just("book"), prices, qtys, qtys),
    st.tuples(st.just("trade"), prices, qtys),
    st.tuples(st.just("limit"), sides, qtys, prices, st.sampled_from(["GTC", "IOC", "FOK"])),
    st.tuples(st.just("maker"), sides, qtys, prices),
    st.tuples(st.just("market"), sides, qtys),
    st.tuples(st.just("quote"), sides, st.integers(1, 5000).map(D)),
    st.tuples(st.just("stop"), sides, qtys, prices, st.integers(-500, 500).map(lambda n: n * TICK)),
    st.tuples(st.just("oco"), sides, qtys, prices, st.integers(1, 2000).map(lambda n: n * TICK)),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
)


def _apply(engine, op):
    kind = op[0]
    if kind == "book":
        _, mid, bid_qty, ask_qty = op
        engine.set_book(SYM, [(mid - TICK, bid_qty), (mid - 10 * TICK, bid_qty * 2)],
                        [(mid + TICK, ask_qty), (mid + 10 * TICK, ask_qty * 2)])
    elif kind == "trade":
        engine.on_trade(SYM, op[1], op[2])
    elif kind in ("limit", "maker"):
        tif = op[4] if kind == "limit" else None
        engine.place(ACCOUNT, OrderRequest(SYM, op[1], "LIMIT" if tif else "LIMIT_MAKER",
                                           quantity=op[2], price=op[3], time_in_force=tif))
    elif kind == "market":
        engine.place(ACCOUNT, OrderRequest(SYM, op[1], "MARKET", quantity=op[2]))
    elif kind == "quote":
        engine.place(ACCOUNT, OrderRequest(SYM, op[1], "MARKET", quote_order_qty=op[2]))
    elif kind == "stop":
        _, side, qty, stop, offset = op
        engine.place(ACCOUNT, OrderRequest(SYM, side, "STOP_LOSS_LIMIT", quantity=qty,
                                           price=max(stop + offset, TICK), stop_price=stop,
                                           time_in_force="GTC"))
    elif kind == "oco":
        _, side, qty, ref, gap = op
        ref = engine.reference_price(SYM) or ref
        ref = ref.quantize(TICK)
        low, high = ref - gap, ref + gap
        if side == "SELL":
            request = OcoRequest(SYM, side, qty, "LIMIT_MAKER", "STOP_LOSS_LIMIT",
                                 above_price=high, below_price=low - TICK, below_stop_price=low)
        else:
            request = OcoRequest(SYM, side, qty, "STOP_LOSS_LIMIT", "LIMIT_MAKER",
                                 above_price=high + TICK, above_stop_price=high, below_price=low)
        engine.place_oco(ACCOUNT, request)
    else:
        open_orders = engine.open_orders(ACCOUNT, SYM)
        if open_orders:
            engine.cancel(ACCOUNT, SYM, order_id=open_orders[op[1] % len(open_orders)].order_id)


def _check_invariants(engine, deposits):
    balances = engine.balances(ACCOUNT)
    for balance in balances.values():
        assert balance.free >= 0 and balance.locked >= 0
    # Locked equals what the open orders still hold.
    held = {"BTC": D(0), "USDT": D(0)}
    for order in engine.open_orders(ACCOUNT):
        held[order.locked_asset] += order.locked_amount
    for asset, amount in held.items():
        assert balances[asset].locked == amount
    # Money is conserved: user + venue fees == deposits + what fills exchanged with the market.
    flow = dict(deposits)
    for trade in engine.my_trades(ACCOUNT, SYM, limit=10**9):
        sign = 1 if trade.is_buyer else -1
        flow["BTC"] += sign * trade.qty
        flow["USDT"] -= sign * trade.quote_qty
        fee_asset = "BTC" if trade.is_buyer else "USDT"
        assert trade.commission_asset == fee_asset
    fees = engine.ledger.fees_collected()
    for asset in ("BTC", "USDT"):
        assert balances[asset].total + fees.get(asset, D(0)) == flow[asset]


@settings(max_examples=100, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=5, max_size=60))
def test_random_orders_and_market_moves_keep_money_safe(sequence):
    engine = MatchingEngine(default_symbols(), clock=TestClock(), check_filters=False)
    deposits = {"BTC": D("0.3"), "USDT": D("8000")}
    for asset, amount in deposits.items():
        engine.deposit(ACCOUNT, asset, amount)
    engine.set_book(SYM, [(D("29999.99"), D("0.2"))], [(D("30000.01"), D("0.2"))])

    for op in sequence:
        try:
            _apply(engine, op)
        except (InvalidOrderError, InsufficientFundsError):
            pass
        _check_invariants(engine, deposits)

    engine.cancel_all(ACCOUNT, SYM)
    assert engine.open_orders(ACCOUNT) == []
    assert all(b.locked == 0 for b in engine.balances(ACCOUNT).values())
    _check_invariants(engine, deposits)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["lock", "unlock", "deposit"]),
                          st.integers(0, 1000).map(D)), max_size=30))
def test_ledger_never_lets_free_go_negative(steps):
    ledger = Ledger()
    for action, amount in steps:
        try:
            if action == "deposit":
                ledger.deposit("a", "USDT", amount)
            elif action == "lock":
                ledger.lock("a", "USDT", amount)
            else:
                ledger.unlock("a", "USDT", min(amount, ledger.balance("a", "USDT").locked))
        except InsufficientBalanceError:
            pass
        balance = ledger.balance("a", "USDT")
        assert balance.free >= 0 and balance.locked >= 0


def test_fmt_shows_eight_decimals_and_only_real_extra_digits():
    from shared.matching import fmt

    assert fmt(D("52.17057000000000")) == "52.17057000"
    assert fmt(D("1.123456789")) == "1.123456789"
    assert fmt(D("5")) == "5.00000000"
