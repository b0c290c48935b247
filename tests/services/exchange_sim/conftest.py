"""Fixtures for the exchange simulator: a running server and python-binance pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from binance.base_client import BaseClient
from binance.client import Client
from binance.ws.streams import BinanceSocketManager

from services.exchange_sim.ratelimit import RateLimits
from services.exchange_sim.server import SimServer
from services.exchange_sim.venue import Venue

API_KEY, API_SECRET = "sim-key", "sim-secret"


def start_server(**venue_kwargs) -> SimServer:
    venue_kwargs.setdefault("history_s", 2 * 86_400)
    server = SimServer(Venue(**venue_kwargs), port=0)
    server.start()
    return server


@pytest.fixture
def sim() -> Iterator[SimServer]:
    """A simulator on a free loopback port, stopped after the test."""
    server = start_server()
    yield server
    server.stop()
    assert not server.running


@pytest.fixture
def strict_sim() -> Iterator[SimServer]:
    """A simulator with a tiny weight budget, to reach 429 and 418 in a few calls."""
    server = start_server(limits=RateLimits(weight_per_minute=10, strikes_before_ban=2))
    yield server
    server.stop()


def make_client(server: SimServer, secret: str = API_SECRET, key: str = API_KEY) -> Client:
    """An unmodified sync python-binance Client whose REST URL is the simulator's."""
    client = Client(key, secret, ping=False, requests_params={"timeout": 5})
    client.API_URL = f"{server.base_url}/api"
    return client


@pytest.fixture
def client(sim: SimServer) -> Iterator[Client]:
    c = make_client(sim)
    yield c
    c.close_connection()


@pytest.fixture
def binance_urls(sim: SimServer, monkeypatch: pytest.MonkeyPatch) -> SimServer:
    """Class-level URL overrides (protocol doc 1.3) so AsyncClient and BSM reach ``sim``."""
    for name in ("API_URL", "API_TESTNET_URL"):
        monkeypatch.setattr(BaseClient, name, f"{sim.base_url}/api")
    for name in ("WS_API_URL", "WS_API_TESTNET_URL"):
        monkeypatch.setattr(BaseClient, name, f"{sim.ws_url}/ws-api/v3")
    for name in ("STREAM_URL", "STREAM_TESTNET_URL"):
        monkeypatch.setattr(BinanceSocketManager, name, f"{sim.ws_url}/")
    return sim
