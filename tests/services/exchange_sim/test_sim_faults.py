"""Faults switched at run time through /sim/faults, seen by python-binance."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Iterator
from unittest import mock
from urllib.parse import urlencode

import aiohttp
import pytest
import requests
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from binance.client import Client
from binance.exceptions import BinanceAPIException

from services.exchange_sim.faults import Faults
from services.exchange_sim.market import ScaledClock
from services.exchange_sim.server import SimServer, admin_loopback_only, is_loopback
from services.exchange_sim.venue import Venue
from shared.clock import SYSTEM_CLOCK


def set_faults(server: SimServer, **faults) -> dict:
    reply = requests.post(f"{server.base_url}/sim/faults", json=faults, timeout=5)
    reply.raise_for_status()
    return reply.json()


def test_injected_5xx_then_normal_service(sim: SimServer, client: Client):
    set_faults(sim, http_5xx=1)

    with pytest.raises(BinanceAPIException) as info:
        client.get_server_time()

    assert info.value.status_code >= 500
    assert "serverTime" in client.get_server_time()


def test_injected_429_and_418_carry_retry_after(sim: SimServer, client: Client):
    set_faults(sim, http_429=1, http_418=1, retry_after_s=7)

    with pytest.raises(BinanceAPIException) as banned:
        client.ping()
    with pytest.raises(BinanceAPIException) as limited:
        client.ping()

    assert (banned.value.status_code, banned.value.code) == (418, -1003)
    assert (limited.value.status_code, limited.value.code) == (429, -1003)
    assert limited.value.response.headers["Retry-After"] == "7"
    assert client.ping() == {}


def test_unknown_status_executes_the_order_then_answers_1007(sim: SimServer, client: Client):
    set_faults(sim, unknown_status=1, unknown_status_placed=1)

    with pytest.raises(BinanceAPIException) as info:
        client.order_market_buy(symbol="BTCUSDT", quantity="0.001",
                                newClientOrderId="intent-42")

    assert info.value.code == -1007
    order = client.get_order(symbol="BTCUSDT", origClientOrderId="intent-42")
    assert order["status"] == "FILLED"


def test_added_latency_delays_replies(sim: SimServer, client: Client):
    set_faults(sim, latency_ms=300)
    started = time.monotonic()

    client.ping()

    assert time.monotonic() - started >= 0.3
    assert requests.delete(f"{sim.base_url}/sim/faults", timeout=5).json()["latency_ms"] == 0


def test_unknown_fault_is_refused_with_the_field_named(sim: SimServer):
    reply = requests.post(f"{sim.base_url}/sim/faults", json={"http_999": 1}, timeout=5)

    assert reply.status_code == 400
    assert "http_999" in reply.json()["error"]["fields"]


def test_unknown_status_may_also_leave_the_order_unplaced(sim: SimServer, client: Client):
    set_faults(sim, unknown_status=1, unknown_status_placed=0)

    with pytest.raises(BinanceAPIException) as info:
        client.order_market_buy(symbol="BTCUSDT", quantity="0.001",
                                newClientOrderId="intent-43")

    assert info.value.code == -1007
    with pytest.raises(BinanceAPIException) as lookup:
        client.get_order(symbol="BTCUSDT", origClientOrderId="intent-43")
    assert lookup.value.code == -2013


def test_unknown_status_also_answers_order_place_on_the_websocket_api(sim: SimServer):
    set_faults(sim, unknown_status=1, unknown_status_placed=1)
    params = {"apiKey": "sim-key", "symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
              "quantity": "0.001", "newClientOrderId": "ws-intent-1",
              "timestamp": int(time.time() * 1000)}
    payload = urlencode(sorted(params.items()))
    params["signature"] = hmac.new(b"sim-secret", payload.encode(), hashlib.sha256).hexdigest()

    async def scenario() -> dict:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{sim.ws_url}/ws-api/v3") as ws:
                await ws.send_json({"id": "o1", "method": "order.place", "params": params})
                return await asyncio.wait_for(ws.receive_json(), 5.0)

    reply = asyncio.run(scenario())

    assert reply["status"] == 503 and reply["error"]["code"] == -1007
    order = sim.venue.engine.get_order("sim", "BTCUSDT", None, "ws-intent-1")
    assert order.status == "FILLED"


def outcomes(server: SimServer, client: Client, calls: int) -> list[bool]:
    """Which of ``calls`` pings failed."""
    failed = []
    for _ in range(calls):
        try:
            client.ping()
            failed.append(False)
        except BinanceAPIException:
            failed.append(True)
    return failed


def test_fault_rates_are_deterministic_for_a_seed(sim: SimServer, client: Client):
    set_faults(sim, seed=11, rate_http_5xx=0.5)
    first = outcomes(sim, client, 16)
    set_faults(sim, seed=11)
    again = outcomes(sim, client, 16)
    set_faults(sim, seed=12)
    other = outcomes(sim, client, 16)

    assert first == again
    assert any(first) and not all(first)
    assert other != first


def test_placed_or_not_after_1007_follows_the_seed():
    draws = []
    for _ in range(2):
        faults = Faults(seed=5)
        faults.update({"rate_unknown_status": 1.0})
        draws.append([(faults.take("unknown_status"), faults.placed_anyway())
                      for _ in range(20)])

    assert draws[0] == draws[1]
    assert {placed for _, placed in draws[0]} == {True, False}


@pytest.fixture
def fast_sim() -> Iterator[SimServer]:
    """A simulator whose market runs 20 times faster: a new book every 50 ms."""
    venue = Venue(ScaledClock(SYSTEM_CLOCK, 20), history_s=3600, replay=False,
                  signing_clock=SYSTEM_CLOCK)
    server = SimServer(venue, port=0)
    server.start()
    yield server
    server.stop()


def test_stalled_stream_stays_open_and_silent_until_released(fast_sim: SimServer):
    set_faults(fast_sim, stall_ws="streams")

    async def scenario() -> tuple[bool, bool, dict]:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{fast_sim.ws_url}/ws/btcusdt@bookTicker") as ws:
                try:
                    await asyncio.wait_for(ws.receive(), 1.0)
                    silent = False
                except TimeoutError:
                    silent = True
                still_open = not ws.closed
                await asyncio.to_thread(requests.post, f"{fast_sim.base_url}/sim/faults",
                                        json={"stall_ws": False}, timeout=5)
                frame = await asyncio.wait_for(ws.receive_json(), 5.0)
        return silent, still_open, frame

    silent, still_open, frame = asyncio.run(scenario())

    assert silent and still_open
    assert frame["s"] == "BTCUSDT" and "u" in frame


def test_stalled_websocket_api_holds_its_replies_until_released(sim: SimServer):
    set_faults(sim, stall_ws="ws_api")

    async def scenario() -> tuple[bool, dict]:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{sim.ws_url}/ws-api/v3") as ws:
                await ws.send_json({"id": "p1", "method": "ping"})
                try:
                    await asyncio.wait_for(ws.receive(), 0.5)
                    silent = False
                except TimeoutError:
                    silent = True
                await asyncio.to_thread(requests.delete, f"{sim.base_url}/sim/faults",
                                        timeout=5)
                reply = await asyncio.wait_for(ws.receive_json(), 5.0)
        return silent, reply

    silent, reply = asyncio.run(scenario())

    assert silent
    assert reply["id"] == "p1" and reply["status"] == 200


def test_bad_stall_target_is_refused(sim: SimServer):
    reply = requests.post(f"{sim.base_url}/sim/faults", json={"stall_ws": "everything"},
                          timeout=5)

    assert reply.status_code == 400
    assert "stall_ws" in reply.json()["error"]["fields"]


def mocked_request(path: str, peer: str) -> web.Request:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = (
        lambda name, default=None: (peer, 40000) if name == "peername" else default)
    return make_mocked_request("POST", path, transport=transport)


def test_admin_endpoints_refuse_clients_beyond_loopback():
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def call(path: str, peer: str) -> web.Response:
        return await admin_loopback_only(mocked_request(path, peer), handler)

    remote = asyncio.run(call("/sim/faults", "192.168.1.20"))
    local = asyncio.run(call("/sim/faults", "127.0.0.1"))
    public_api = asyncio.run(call("/api/v3/ping", "192.168.1.20"))

    assert remote.status == 403 and remote.content_type == "application/json"
    assert b"loopback" in remote.body
    assert local.status == 200 and public_api.status == 200


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("10.0.0.7", False), ("::ffff:10.0.0.7", False), ("", False), (None, False),
])
def test_loopback_addresses(address, expected):
    assert is_loopback(address) is expected
