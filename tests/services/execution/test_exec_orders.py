"""Placement against the simulator with faults on: one intent never makes two orders."""

from __future__ import annotations

import re
import threading
import time
from decimal import Decimal

import pytest
import requests

from services.execution.client import ExchangeClient, WeightBudget
from services.execution.orders import (
    ROLE_LIST,
    ROLE_STOP,
    OrderPlacer,
    OrderSpec,
    client_order_id,
    parse_client_order_id,
)
from shared.errors import (
    InsufficientFundsError,
    IpBannedError,
    RateLimitError,
    UnknownStatusError,
)
from tests.services.execution.conftest import (
    API_KEY,
    API_SECRET,
    make_exchange,
    set_faults,
    unknown_status_once,
    wait_for,
)

BINANCE_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")


def orders_with(sim, cid: str) -> int:
    orders = sim.venue.engine.all_orders("sim", "BTCUSDT", None, 100_000)
    return sum(1 for o in orders if o.client_order_id == cid)


def market_buy(cid: str, qty: str = "0.001") -> OrderSpec:
    return OrderSpec("BTCUSDT", "BUY", "MARKET", cid, quantity=Decimal(qty))


def test_client_order_ids_are_deterministic_valid_and_distinct_per_role():
    first = client_order_id("intent-7f3a", "12")
    again = client_order_id("intent-7f3a", "12")
    other_roles = {client_order_id("intent-7f3a", "12", role, 3)
                   for role in (ROLE_LIST, ROLE_STOP)}

    assert first == again and BINANCE_ID.match(first) and len(first) <= 36
    assert first not in other_roles and len(other_roles) == 2
    assert parse_client_order_id(first).bot_id == "12"
    assert client_order_id("intent-7f3b", "12") != first


def test_5xx_on_placement_is_checked_then_sent_once(sim, exchange):
    set_faults(sim, http_5xx=1)  # refused before the venue saw it: not placed

    order = OrderPlacer(exchange).place(market_buy("e-5xx"))

    assert order["status"] == "FILLED"
    assert orders_with(sim, "e-5xx") == 1


def test_a_read_without_a_clear_answer_is_asked_again(sim, exchange):
    set_faults(sim, http_5xx=2)  # two 502s in a row: a read has nothing to double

    account = exchange.account()

    assert any(b["asset"] == "USDT" for b in account["balances"])
    set_faults(sim, http_5xx=3)
    with pytest.raises(UnknownStatusError):  # three: the caller is told
        exchange.account()


def test_unknown_status_1007_finds_the_order_instead_of_sending_again(sim, exchange):
    unknown_status_once(sim)  # placed, then answered -1007

    order = OrderPlacer(exchange).place(market_buy("e-1007"))

    assert order["clientOrderId"] == "e-1007" and order["status"] == "FILLED"
    assert orders_with(sim, "e-1007") == 1
    assert exchange.calls == 2  # the failed send and the query; no second send


def test_timeout_is_followed_by_a_query_and_gives_one_order(sim):
    exchange = make_exchange(sim, timeout_s=0.3)
    set_faults(sim, latency_ms=800)

    def clear_latency_once_the_placer_asks() -> None:
        wait_for(lambda: exchange.calls >= 2, what="the query after the timeout")
        requests.delete(f"{sim.base_url}/sim/faults", timeout=5)

    helper = threading.Thread(target=clear_latency_once_the_placer_asks)
    helper.start()
    try:
        order = OrderPlacer(exchange).place(market_buy("e-timeout"))
    finally:
        helper.join(10)
        exchange.close()

    assert order["clientOrderId"] == "e-timeout"
    assert orders_with(sim, "e-timeout") == 1


def test_429_waits_for_retry_after_then_places_once(sim, exchange):
    pauses = []
    exchange.budget.on_change = lambda reason, s: pauses.append((reason, s))
    set_faults(sim, http_429=1, retry_after_s=1)
    started = time.monotonic()

    OrderPlacer(exchange).place(market_buy("e-429"))

    assert time.monotonic() - started >= 0.9
    assert pauses == [("rate_limited", 1.0)]
    assert orders_with(sim, "e-429") == 1


def test_long_retry_after_is_reported_not_waited(sim, exchange):
    set_faults(sim, http_429=1, retry_after_s=30)

    with pytest.raises(RateLimitError) as info:
        exchange.account()
    with pytest.raises(RateLimitError):  # still paused: not even sent
        exchange.account()

    assert info.value.retry_after_s == 30
    assert exchange.calls == 1


def test_418_halts_every_later_call(sim, exchange):
    set_faults(sim, http_418=1, retry_after_s=120)

    with pytest.raises(IpBannedError):
        exchange.account()
    with pytest.raises(IpBannedError):
        OrderPlacer(exchange).place(market_buy("e-418"))

    assert exchange.budget.halted and exchange.calls == 1
    assert orders_with(sim, "e-418") == 0


def test_insufficient_balance_is_one_clear_rejection(sim, exchange):
    with pytest.raises(InsufficientFundsError) as info:
        OrderPlacer(exchange).place(market_buy("e-poor", qty="5"))

    assert "insufficient balance" in str(info.value)
    assert exchange.calls == 1


def test_clock_skew_1021_resyncs_and_retries_once(sim, exchange):
    exchange._client.timestamp_offset = -30_000  # 30 s behind: outside recvWindow

    account = exchange.account()

    assert "balances" in account
    assert abs(exchange.timestamp_offset) < 5_000


def test_weight_headers_feed_the_budget(sim, exchange):
    exchange.account()
    exchange.open_orders("BTCUSDT")

    snap = exchange.budget.snapshot()
    assert snap.used_weight_1m >= 26


def test_budget_keeps_a_reserve_for_trading_calls():
    budget = WeightBudget(weight_limit=100)
    budget.observe({"X-MBX-USED-WEIGHT-1M": "95"})

    with pytest.raises(RateLimitError):
        budget.admit(critical=False)
    budget.admit(critical=True)


class QueryRateLimited(ExchangeClient):
    """The real client, except that asking for an order meets a long 429."""

    def get_order(self, symbol: str, client_order_id: str) -> dict | None:
        raise RateLimitError("limited while asking", 30)


def test_a_429_while_asking_after_1007_leaves_the_order_unconfirmed_not_unsent(sim):
    exchange = QueryRateLimited(API_KEY, API_SECRET, f"{sim.base_url}/api")
    unknown_status_once(sim)
    try:
        with pytest.raises(UnknownStatusError):
            OrderPlacer(exchange).place(market_buy("e-unsure"))
    finally:
        exchange.close()

    assert orders_with(sim, "e-unsure") == 1  # it exists, and was not sent a second time


class QueryUnanswered(ExchangeClient):
    """The real client, except that every query for an order gets no answer."""

    def get_order(self, symbol: str, client_order_id: str) -> dict | None:
        raise UnknownStatusError("no answer")


def test_unanswered_queries_never_count_as_not_there(sim):
    exchange = QueryUnanswered(API_KEY, API_SECRET, f"{sim.base_url}/api")
    set_faults(sim, http_5xx=1)  # the send fails; every query after it goes unanswered
    try:
        with pytest.raises(UnknownStatusError):
            OrderPlacer(exchange, wait=lambda s: None).place(market_buy("e-dark"))
    finally:
        exchange.close()

    assert orders_with(sim, "e-dark") == 0  # not sent again blindly
    assert exchange.calls == 1


def test_unknown_status_1007_for_an_order_never_placed_sends_it_once_more(sim, exchange):
    unknown_status_once(sim, placed=False)  # answered -1007, nothing executed

    order = OrderPlacer(exchange, wait=lambda s: None).place(market_buy("e-1007-lost"))

    assert order["clientOrderId"] == "e-1007-lost"
    assert orders_with(sim, "e-1007-lost") == 1
