"""Market streams and the user-data socket through AsyncClient + BinanceSocketManager."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import requests
from binance.async_client import AsyncClient
from binance.base_client import BaseClient
from binance.exceptions import BinanceAPIException
from binance.ws.constants import WSListenerState
from binance.ws.streams import BinanceSocketManager

from services.exchange_sim.server import SimServer
from services.exchange_sim.streams import MAX_CATCH_UP
from services.exchange_sim.venue import Venue
from shared.clock import TestClock

TIMEOUT_S = 5.0


def run(scenario: Callable[[AsyncClient, BinanceSocketManager], Awaitable[Any]],
        server: SimServer) -> Any:
    """Run ``scenario`` with a fresh AsyncClient (closed afterwards) on a new event loop."""

    async def main() -> Any:
        client = await AsyncClient.create("sim-key", "sim-secret")
        try:
            return await asyncio.wait_for(scenario(client, BinanceSocketManager(client)), 20)
        finally:
            await asyncio.wait_for(close_client(client, server), TIMEOUT_S)

    return asyncio.run(main())


async def close_client(client: AsyncClient, server: SimServer) -> None:
    """Close ``client`` without its 10 s wait on an idle WebSocket API read loop.

    python-binance's close only ends the WS-API read loop when a frame arrives or its 10 s
    receive timeout passes; once the loop is told to exit, the simulator drops the socket.
    """
    closing = asyncio.create_task(client.close_connection())
    ws_api = client.ws_api
    if ws_api.ws is not None:
        while ws_api.ws_state != WSListenerState.EXITING and not closing.done():
            await asyncio.sleep(0.01)
        await asyncio.to_thread(requests.post, f"{server.base_url}/sim/faults",
                                json={"drop_ws": "ws_api"}, timeout=5)
    await closing


async def recv_until(stream, wanted: Callable[[dict], bool], limit: int = 200,
                     errors_ok: bool = False) -> dict:
    for _ in range(limit):
        msg = await asyncio.wait_for(stream.recv(), TIMEOUT_S)
        assert errors_ok or msg.get("e") != "error", msg
        if wanted(msg):
            return msg
    raise AssertionError("wanted message never came")


def test_kline_stream_delivers_the_open_candle(binance_urls: SimServer):
    async def scenario(client: AsyncClient, bsm: BinanceSocketManager) -> tuple[dict, list]:
        async with bsm.kline_socket("BTCUSDT", interval="1m") as stream:
            msg = await asyncio.wait_for(stream.recv(), TIMEOUT_S)
        # ask REST for that very candle: a minute may have turned since the stream spoke
        rest = await client.get_klines(symbol="BTCUSDT", interval="1m",
                                       startTime=msg["k"]["t"], limit=1)
        return msg, rest

    msg, rest = run(scenario, binance_urls)

    assert msg["e"] == "kline" and msg["s"] == "BTCUSDT"
    assert msg["k"]["i"] == "1m" and msg["k"]["x"] is False
    assert msg["k"]["t"] == rest[0][0] and msg["k"]["o"] == rest[0][1]


def test_combined_stream_wraps_each_stream(binance_urls: SimServer):
    names = {"btcusdt@bookTicker", "ethusdt@depth5@100ms", "bnbusdt@kline_5m"}

    async def scenario(client: AsyncClient, bsm: BinanceSocketManager) -> set[str]:
        seen: set[str] = set()
        async with bsm.multiplex_socket(sorted(names)) as stream:
            while seen != names:
                msg = await asyncio.wait_for(stream.recv(), TIMEOUT_S)
                assert set(msg) == {"stream", "data"}
                seen.add(msg["stream"])
        return seen

    assert run(scenario, binance_urls) == names


def test_diff_depth_ids_are_dense_and_line_up_with_rest(binance_urls: SimServer):
    async def scenario(client: AsyncClient, bsm: BinanceSocketManager) -> tuple[list, dict]:
        async with bsm.depth_socket("ETHUSDT", interval=100) as stream:
            first = await asyncio.wait_for(stream.recv(), TIMEOUT_S)
            snapshot = await client.get_order_book(symbol="ETHUSDT", limit=100)
            events = [first]
            while events[-1]["u"] <= snapshot["lastUpdateId"]:
                events.append(await asyncio.wait_for(stream.recv(), TIMEOUT_S))
        return events, snapshot

    events, snapshot = run(scenario, binance_urls)

    assert all(e["e"] == "depthUpdate" for e in events)
    assert all(b["U"] == a["u"] + 1 for a, b in zip(events, events[1:], strict=False))
    assert any(e["U"] <= snapshot["lastUpdateId"] + 1 <= e["u"] for e in events)


def test_user_socket_delivers_execution_report_after_an_order(binance_urls: SimServer):
    async def scenario(client: AsyncClient, bsm: BinanceSocketManager) -> tuple[dict, ...]:
        async with bsm.user_socket() as stream:
            order = await client.order_market_buy(symbol="ETHUSDT", quantity="0.01")
            report = await recv_until(stream, lambda m: m.get("e") == "executionReport"
                                      and m["X"] == "FILLED")
            position = await recv_until(stream, lambda m: m.get("e") == "outboundAccountPosition")
        return order, report, position

    order, report, position = run(scenario, binance_urls)

    assert report["i"] == order["orderId"] and report["c"] == order["clientOrderId"]
    assert report["s"] == "ETHUSDT" and report["x"] == "TRADE"
    assert {b["a"] for b in position["B"]} >= {"ETH", "USDT"}


def test_dropped_stream_reconnects_and_carries_on(binance_urls: SimServer):
    async def scenario(client: AsyncClient, bsm: BinanceSocketManager) -> tuple[dict, dict]:
        async with bsm.trade_socket("BTCUSDT") as stream:
            await asyncio.wait_for(stream.recv(), TIMEOUT_S)
            await asyncio.to_thread(requests.post, f"{binance_urls.base_url}/sim/faults",
                                    json={"drop_ws": "streams"}, timeout=5)
            closed = await recv_until(stream, lambda m: m.get("e") == "error", errors_ok=True)
            trade = await recv_until(stream, lambda m: m.get("e") == "trade", errors_ok=True)
            return closed, trade

    closed, trade = run(scenario, binance_urls)

    assert closed["type"] in ("ConnectionClosedError", "BinanceWebsocketClosed")
    assert trade["s"] == "BTCUSDT"
    assert binance_urls.venue.faults.snapshot()["ws_dropped"] >= 1


def test_websocket_api_places_and_queries_orders(binance_urls: SimServer):
    async def scenario(client: AsyncClient, bsm: BinanceSocketManager) -> tuple[dict, ...]:
        placed = await client.ws_create_order(symbol="BNBUSDT", side="BUY", type="MARKET",
                                              quantity="0.1", newClientOrderId="ws-order-1")
        status = await client.ws_get_order(symbol="BNBUSDT", origClientOrderId="ws-order-1")
        account = await client.ws_get_account()
        return placed, status, account

    placed, status, account = run(scenario, binance_urls)

    assert placed["status"] == "FILLED" and status["orderId"] == placed["orderId"]
    assert "BNB" in {b["asset"] for b in account["balances"]}


def test_kline_catch_up_burst_after_a_clock_jump_arrives_whole(monkeypatch):
    clock = TestClock(1_760_000_000.0)
    server = SimServer(Venue(clock, replay=False, history_s=3600), port=0)
    server.start()
    monkeypatch.setattr(BaseClient, "API_URL", f"{server.base_url}/api")
    monkeypatch.setattr(BinanceSocketManager, "STREAM_URL", f"{server.ws_url}/")

    async def scenario(client: AsyncClient, bsm: BinanceSocketManager) -> list[dict]:
        async with bsm.kline_socket("ETHUSDT", interval="1m") as stream:
            await asyncio.wait_for(stream.recv(), TIMEOUT_S)
            clock.advance(150 * 60)
            closed: list[dict] = []
            while len(closed) < MAX_CATCH_UP:
                msg = await recv_until(stream, lambda m: m["k"]["x"])
                closed.append(msg["k"])
        return closed

    try:
        closed = run(scenario, server)
    finally:
        server.stop()

    opens = [k["t"] for k in closed]
    assert opens == sorted(set(opens)) and len(opens) == MAX_CATCH_UP
    assert all(b - a == 60_000 for a, b in zip(opens, opens[1:], strict=False))


def test_user_socket_with_a_bad_signature_is_refused(binance_urls: SimServer):
    async def scenario(client: AsyncClient, bsm: BinanceSocketManager) -> BinanceAPIException:
        client.API_SECRET = "not-the-secret"
        with pytest.raises(BinanceAPIException) as info:
            async with bsm.user_socket():
                pass
        return info.value

    error = run(scenario, binance_urls)

    assert (error.status_code, error.code) == (400, -1022)
