"""Faults switched at run time through /sim/faults, seen by python-binance."""

from __future__ import annotations

import time

import pytest
import requests
from binance.client import Client
from binance.exceptions import BinanceAPIException

from services.exchange_sim.server import SimServer


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
    set_faults(sim, unknown_status=1)

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
