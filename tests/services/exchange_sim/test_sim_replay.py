"""bookTicker replay (data/quotes) and replay speed: the recorded quotes top the served book."""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterator
from decimal import Decimal

import pytest
from binance.client import Client

from services.exchange_sim.market import QUOTES_PREFIX, ScaledClock
from services.exchange_sim.server import SimServer
from services.exchange_sim.settings import DEFAULT_QUOTES
from services.exchange_sim.venue import Venue
from shared.clock import SYSTEM_CLOCK, TestClock

from .conftest import make_client

START_S = 1_760_000_000.0


def recorded_quote(offset_ms: int) -> dict:
    """The last recorded quote at ``offset_ms`` into the recording (looping), read afresh."""
    with gzip.open(DEFAULT_QUOTES, "rt", newline="") as handle:
        rows = list(csv.DictReader(handle))
    first, last = int(rows[0]["ts_ms"]), int(rows[-1]["ts_ms"])
    at = first + offset_ms % (last - first + 1)
    return [r for r in rows if int(r["ts_ms"]) <= at][-1]


@pytest.fixture
def quotes_sim() -> Iterator[tuple[SimServer, TestClock, Client]]:
    clock = TestClock(START_S)
    venue = Venue(clock, sources={"BTCUSDT": f"{QUOTES_PREFIX}{DEFAULT_QUOTES}"},
                  history_s=600, signing_clock=SYSTEM_CLOCK)
    server = SimServer(venue, port=0)
    server.start()
    client = make_client(server)
    yield server, clock, client
    client.close_connection()
    server.stop()


def test_book_ticker_is_the_recorded_quote(quotes_sim):
    server, clock, client = quotes_sim
    clock.advance(125.5)
    market = server.venue.market
    offset_ms = market.now_index("BTCUSDT") * market.paths["BTCUSDT"].step_ms

    ticker = client.get_orderbook_ticker(symbol="BTCUSDT")
    depth = client.get_order_book(symbol="BTCUSDT", limit=5)

    row = recorded_quote(offset_ms)
    assert ticker["bidPrice"] == row["bid"] and ticker["bidQty"] == row["bid_qty"]
    assert ticker["askPrice"] == row["ask"] and ticker["askQty"] == row["ask_qty"]
    assert depth["bids"][0] == [row["bid"], row["bid_qty"]]
    assert Decimal(depth["bids"][1][0]) < Decimal(row["bid"])
    assert Decimal(depth["asks"][1][0]) > Decimal(row["ask"])


def test_replayed_trades_print_at_the_quotes(quotes_sim):
    server, clock, client = quotes_sim
    clock.advance(30)

    trades = client.get_recent_trades(symbol="BTCUSDT", limit=20)
    books = [server.venue.market.book("BTCUSDT", i)
             for i in range(server.venue.market.now_index("BTCUSDT") - 19,
                            server.venue.market.now_index("BTCUSDT") + 1)]

    assert len(trades) == 20
    for trade, book in zip(trades, books, strict=True):
        assert trade["price"] in (book.bids[0][0], book.asks[0][0])


def test_speed_runs_the_market_faster_than_the_wall_clock():
    wall = TestClock(START_S)
    market_clock = ScaledClock(wall, 10)
    venue = Venue(market_clock, replay=False, history_s=600, signing_clock=wall)
    before = venue.market.now_index("BTCUSDT")

    wall.advance(3)

    assert venue.market.now_index("BTCUSDT") - before == 30
    assert venue.signing_clock.time() == START_S + 3
    with pytest.raises(ValueError):
        ScaledClock(wall, 0)
