"""REST under /api/v3 as unmodified python-binance 1.0.37 (sync Client) sees it."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
import requests
from binance.client import Client
from binance.exceptions import BinanceAPIException

from services.exchange_sim.server import SimServer

from .conftest import make_client


def _price(client: Client, symbol: str = "BTCUSDT") -> Decimal:
    return Decimal(client.get_symbol_ticker(symbol=symbol)["price"])


def _api_error(call, *args, **kwargs) -> BinanceAPIException:
    with pytest.raises(BinanceAPIException) as info:
        call(*args, **kwargs)
    return info.value


def test_ping_and_time(sim: SimServer):
    client = Client("sim-key", "sim-secret", requests_params={"timeout": 5},
                    ping=False)
    client.API_URL = f"{sim.base_url}/api"

    assert client.ping() == {}
    assert abs(client.get_server_time()["serverTime"] - sim.venue.clock.time_ms()) < 5_000
    assert client.response.headers["Content-Type"].startswith("application/json")
    client.close_connection()


def test_exchange_info_lists_three_symbols_with_filters(client: Client):
    info = client.get_exchange_info()
    weight = client.response.headers["X-MBX-USED-WEIGHT-1M"]

    assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT", "BNBUSDT"]
    btc = client.get_symbol_info("BTCUSDT")
    kinds = {f["filterType"]: f for f in btc["filters"]}
    assert kinds["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert kinds["LOT_SIZE"]["stepSize"] == "0.00001000"
    assert {"REQUEST_WEIGHT", "ORDERS"} <= {r["rateLimitType"] for r in info["rateLimits"]}
    assert weight == "20"


def test_klines_and_historical_klines(client: Client):
    rows = client.get_klines(symbol="BTCUSDT", interval="5m", limit=10)
    history = client.get_historical_klines("ETHUSDT", "1h", "1 day ago UTC")

    assert len(rows) == 10 and len(rows[0]) == 12
    assert all(b[0] - a[0] == 300_000 for a, b in zip(rows, rows[1:], strict=False))
    assert 24 <= len(history) <= 25


def test_depth_and_tickers_agree(client: Client):
    book = client.get_order_book(symbol="BTCUSDT", limit=5)
    top = client.get_orderbook_ticker(symbol="BTCUSDT")

    assert len(book["bids"]) == 5 and len(book["asks"]) == 5
    assert Decimal(book["bids"][0][0]) < Decimal(book["asks"][0][0])
    assert isinstance(book["lastUpdateId"], int)
    assert Decimal(top["askPrice"]) - Decimal(top["bidPrice"]) > 0
    assert len(client.get_all_tickers()) == 3
    assert Decimal(client.get_avg_price(symbol="BNBUSDT")["price"]) > 0


def test_unknown_symbol_is_1121(client: Client):
    error = _api_error(client.get_klines, symbol="DOGEUSDT", interval="1m")

    assert (error.status_code, error.code) == (400, -1121)


def test_signed_market_order_fills_and_moves_balances(client: Client):
    client.ping()
    weight_before = client.response.headers["X-MBX-USED-WEIGHT-1M"]

    order = client.order_market_buy(symbol="BTCUSDT", quantity="0.001")

    assert order["status"] == "FILLED" and order["fills"]
    assert client.response.headers["X-MBX-ORDER-COUNT-10S"] == "1"
    assert client.response.headers["X-MBX-USED-WEIGHT-1M"] == weight_before  # success weighs 0
    assert Decimal(client.get_asset_balance("BTC")["free"]) > 0
    assert Decimal(client.get_asset_balance("USDT")["free"]) < 10_000
    assert [t["orderId"] for t in client.get_my_trades(symbol="BTCUSDT")] == [order["orderId"]]


def test_resting_limit_order_can_be_queried_and_cancelled(client: Client):
    price = (_price(client) * Decimal("0.98")).quantize(Decimal("0.01"))
    order = client.order_limit_buy(symbol="BTCUSDT", quantity="0.001", price=str(price),
                                   newClientOrderId="bot1-intent-7")

    assert order["status"] == "NEW"
    assert [o["clientOrderId"] for o in client.get_open_orders(symbol="BTCUSDT")] == [
        "bot1-intent-7"]
    assert client.get_order(symbol="BTCUSDT", origClientOrderId="bot1-intent-7")[
        "orderId"] == order["orderId"]
    assert client.get_asset_balance("USDT")["locked"] != "0.00000000"
    cancelled = client.cancel_order(symbol="BTCUSDT", orderId=order["orderId"])
    assert cancelled["status"] == "CANCELED"
    assert cancelled["origClientOrderId"] == "bot1-intent-7"
    assert client.get_open_orders(symbol="BTCUSDT") == []


def test_oco_sell_rests_two_legs_and_cancels_as_a_list(client: Client):
    client.order_market_buy(symbol="BTCUSDT", quantity="0.002")
    price = _price(client)
    oco = client.create_oco_order(
        symbol="BTCUSDT", side="SELL", quantity="0.0015", aboveType="LIMIT_MAKER",
        abovePrice=str((price * Decimal("1.03")).quantize(Decimal("0.01"))),
        belowType="STOP_LOSS_LIMIT",
        belowStopPrice=str((price * Decimal("0.97")).quantize(Decimal("0.01"))),
        belowPrice=str((price * Decimal("0.969")).quantize(Decimal("0.01"))),
        belowTimeInForce="GTC")

    assert oco["contingencyType"] == "OCO" and len(oco["orderReports"]) == 2
    assert len(client.get_open_oco_orders()) == 1
    done = client.v3_delete_order_list(symbol="BTCUSDT", orderListId=oco["orderListId"])
    assert done["listOrderStatus"] == "ALL_DONE"
    assert client.get_open_orders(symbol="BTCUSDT") == []


def test_filter_failure_is_1013(client: Client):
    price = (_price(client) * Decimal("0.98")).quantize(Decimal("0.01"))

    error = _api_error(client.order_limit_buy, symbol="BTCUSDT", quantity="0.00001",
                       price=str(price))

    assert (error.status_code, error.code) == (400, -1013)
    assert error.message.startswith("Filter failure:")


def test_order_test_checks_without_placing(client: Client):
    price = (_price(client) * Decimal("0.98")).quantize(Decimal("0.01"))

    assert client.create_test_order(symbol="BTCUSDT", side="BUY", type="LIMIT",
                                    timeInForce="GTC", quantity="0.001", price=str(price)) == {}
    assert client.get_open_orders(symbol="BTCUSDT") == []


def test_bad_signature_is_1022(sim: SimServer):
    client = make_client(sim, secret="not-the-secret")

    error = _api_error(client.get_account)

    assert (error.status_code, error.code) == (400, -1022)
    assert int(error.response.headers["X-MBX-USED-WEIGHT-1M"]) >= 20
    client.close_connection()


def test_unknown_api_key_is_2015_and_missing_key_is_2014(sim: SimServer):
    client = make_client(sim, key="nobody")

    error = _api_error(client.get_account)
    bare = requests.get(f"{sim.base_url}/api/v3/account?timestamp=1&signature=ab", timeout=5)

    assert (error.status_code, error.code) == (401, -2015)
    assert (bare.status_code, bare.json()["code"]) == (401, -2014)
    client.close_connection()


def test_stale_timestamp_is_1021(client: Client):
    client.timestamp_offset = -20_000  # python-binance always sends recvWindow=10000

    error = _api_error(client.get_account)

    assert (error.status_code, error.code) == (400, -1021)


def test_weight_limit_answers_429_then_bans_with_418(strict_sim: SimServer):
    client = make_client(strict_sim)
    for _ in range(10):
        client.ping()

    first = _api_error(client.ping)
    statuses = [first.status_code]
    for _ in range(3):
        statuses.append(_api_error(client.ping).status_code)

    assert (first.code, first.status_code) == (-1003, 429)
    assert int(first.response.headers["Retry-After"]) >= 1
    assert statuses[-1] == 418
    assert int(client.response.headers["Retry-After"]) > 60
    client.close_connection()


def test_stop_closes_open_streams_within_two_seconds():
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from .conftest import start_server

    server = start_server()
    with connect(f"{server.ws_url}/ws/btcusdt@bookTicker", open_timeout=5) as socket:
        socket.recv(timeout=5)
        started = time.monotonic()

        server.stop()

        assert time.monotonic() - started < 2.0
        assert not server.running
        with pytest.raises(ConnectionClosed):
            while True:
                socket.recv(timeout=2)


def test_cancel_all_open_orders_uses_a_delete_body(client: Client):
    price = (_price(client, "ETHUSDT") * Decimal("0.97")).quantize(Decimal("0.01"))
    for i in range(3):
        client.order_limit_buy(symbol="ETHUSDT", quantity="0.01", price=str(price),
                               newClientOrderId=f"ladder-{i}")

    cancelled = client.cancel_all_open_orders(symbol="ETHUSDT")

    assert sorted(c["origClientOrderId"] for c in cancelled) == ["ladder-0", "ladder-1",
                                                                  "ladder-2"]
    assert all(c["status"] == "CANCELED" for c in cancelled)
    assert len(client.get_all_orders(symbol="ETHUSDT")) == 3


def test_legacy_order_oco_endpoint_places_a_list(client: Client):
    client.order_market_buy(symbol="BTCUSDT", quantity="0.002")
    price = _price(client)

    oco = client._post("order/oco", True, data={
        "symbol": "BTCUSDT", "side": "SELL", "quantity": "0.0015",
        "price": str((price * Decimal("1.03")).quantize(Decimal("0.01"))),
        "stopPrice": str((price * Decimal("0.97")).quantize(Decimal("0.01"))),
        "stopLimitPrice": str((price * Decimal("0.969")).quantize(Decimal("0.01"))),
        "stopLimitTimeInForce": "GTC"})

    assert oco["contingencyType"] == "OCO"
    assert {o["type"] for o in oco["orderReports"]} == {"LIMIT_MAKER", "STOP_LOSS_LIMIT"}
