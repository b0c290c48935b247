"""Paper mode against a LOCAL fake upstream: real-market data relayed, orders matched locally.

The network stays closed: the upstream is :class:`FakeUpstream` on loopback.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from decimal import Decimal

import pytest
from binance.async_client import AsyncClient
from binance.base_client import BaseClient
from binance.client import Client
from binance.exceptions import BinanceAPIException
from binance.ws.streams import BinanceSocketManager

from services.exchange_sim.paper import Upstream, feed_streams
from services.exchange_sim.server import SimServer
from services.exchange_sim.service import ExchangeSimService
from services.exchange_sim.settings import load_sim_settings
from services.exchange_sim.venue import Venue
from shared.config import load_config
from tests.conftest import wait_until

from .conftest import make_client
from .fake_upstream import BOOK_FRAME, KLINES, FakeUpstream

TIMEOUT_S = 5.0




@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture
def paper(upstream: FakeUpstream) -> Iterator[SimServer]:
    """A simulator in paper mode whose upstream is the fake, fed until it knows BTCUSDT."""
    venue = Venue(sources={}, history_s=600, local_feed=False)
    server = SimServer(venue, port=0, upstream=Upstream(upstream.rest_url, upstream.ws_url))
    server.start()
    wait_until(lambda: venue.engine.book("BTCUSDT").best_ask(), what="the feed's first book")
    yield server
    server.stop()


@pytest.fixture
def paper_client(paper: SimServer) -> Iterator[Client]:
    client = make_client(paper)
    yield client
    client.close_connection()


def test_rest_market_data_is_the_upstream_reply(paper_client: Client, upstream: FakeUpstream):
    rows = paper_client.get_klines(symbol="BTCUSDT", interval="1m", limit=2)

    assert rows == KLINES
    assert "/api/v3/klines?interval=1m&limit=2&symbol=BTCUSDT" in upstream.requests


def test_upstream_errors_reach_the_client_as_binance_errors(paper_client: Client):
    with pytest.raises(BinanceAPIException) as info:
        paper_client.get_order_book(symbol="NOPEUSDT")

    assert (info.value.status_code, info.value.code) == (400, -1121)


def test_market_streams_are_relayed_to_the_socket_manager(paper: SimServer,
                                                          upstream: FakeUpstream,
                                                          monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(BaseClient, "API_URL", f"{paper.base_url}/api")
    monkeypatch.setattr(BinanceSocketManager, "STREAM_URL", f"{paper.ws_url}/")
    trade = {"e": "trade", "E": 1723161254200, "s": "BTCUSDT", "t": 3735683259,
             "p": "50000.05", "q": "0.010", "T": 1723161254199, "m": True, "M": True}
    upstream.repeat_s = 0.1  # python-binance leaves a socket only when a frame comes

    async def scenario() -> tuple[dict, dict]:
        client = await AsyncClient.create("sim-key", "sim-secret")
        try:
            bsm = BinanceSocketManager(client)
            async with bsm.multiplex_socket(["btcusdt@bookTicker", "btcusdt@trade"]) as stream:
                first = await asyncio.wait_for(stream.recv(), TIMEOUT_S)
                await asyncio.to_thread(upstream.push, "btcusdt@trade", trade)
                second = await asyncio.wait_for(stream.recv(), TIMEOUT_S)
                while second["stream"] != "btcusdt@trade":
                    second = await asyncio.wait_for(stream.recv(), TIMEOUT_S)
            return first, second
        finally:
            await client.close_connection()

    first, second = asyncio.run(scenario())

    assert first == {"stream": "btcusdt@bookTicker", "data": BOOK_FRAME}
    assert second == {"stream": "btcusdt@trade", "data": trade}


def test_engine_is_fed_by_the_upstream_book_and_trades(paper: SimServer, paper_client: Client,
                                                       upstream: FakeUpstream):
    bought = paper_client.order_market_buy(symbol="BTCUSDT", quantity="0.01")
    resting = paper_client.order_limit_buy(symbol="BTCUSDT", quantity="0.01", price="49990.00")

    upstream.push("btcusdt@trade", {"e": "trade", "E": 1, "s": "BTCUSDT", "t": 7,
                                    "p": "49980.00", "q": "0.5", "T": 1, "m": True, "M": True})
    wait_until(lambda: paper.venue.engine.get_order("sim", "BTCUSDT", resting["orderId"])
               .status == "FILLED", what="the resting order to fill on the upstream trade")
    resting_now = paper_client.get_order(symbol="BTCUSDT", orderId=resting["orderId"])

    assert bought["status"] == "FILLED"
    assert Decimal(bought["fills"][0]["price"]) == Decimal(BOOK_FRAME["a"])
    assert resting["status"] == "NEW"
    assert resting_now["status"] == "FILLED"
    assert Decimal(resting_now["price"]) == Decimal("49990.00")


def test_the_engine_feed_reconnects_after_the_upstream_drops_it(paper: SimServer,
                                                                upstream: FakeUpstream):
    wait_until(lambda: upstream.connections == 1, what="the feed's connection")

    upstream.drop_all()
    wait_until(lambda: upstream.connections == 0, what="the drop")
    wait_until(lambda: upstream.connections == 1, what="the feed to reconnect")
    upstream.push("btcusdt@bookTicker", {**BOOK_FRAME, "u": BOOK_FRAME["u"] + 1,
                                         "a": "50001.00"})

    wait_until(lambda: paper.venue.engine.book("BTCUSDT").best_ask() == Decimal("50001.00"),
               what="the new book to reach the engine")


def test_the_feed_subscribes_every_symbol_to_book_and_trades():
    path = feed_streams(["BTCUSDT", "ETHUSDT"])

    names = path.removeprefix("/stream?streams=").split("/")

    assert "btcusdt@depth20@100ms" in names and "ethusdt@trade" in names
    assert "ethusdt@bookTicker" in names and len(names) == 6


def test_paper_mode_service_relays_from_the_configured_upstream(upstream: FakeUpstream,
                                                                tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"MODE": "paper", "SIM_PORT": str(port), "DATA_DIR": str(tmp_path),
           "BUS_XSUB_ENDPOINT": f"ipc://{tmp_path}/xsub",
           "SIM_UPSTREAM_REST": upstream.rest_url, "SIM_UPSTREAM_WS": upstream.ws_url}
    service = ExchangeSimService(load_config("exchange_sim", env=env),
                                 settings=load_sim_settings(env))
    service.start()
    try:
        client = make_client(service.server)
        ticker = client.get_orderbook_ticker(symbol="BTCUSDT")
        client.close_connection()
        detail = service.heartbeat_detail()
    finally:
        service.stop()

    assert json.loads(json.dumps(ticker))["askPrice"] == "50000.10000000"
    assert detail["mode"] == "paper" and detail["source"] == "upstream"
