"""The market model: deterministic paths, replayed candles, and data that agrees with itself."""

from __future__ import annotations

import gzip
from decimal import Decimal
from pathlib import Path

from services.exchange_sim.market import MINUTE_MS, build_market
from services.exchange_sim.streams import open_stream
from shared.clock import TestClock

BTC_1M = Path(__file__).resolve().parents[3] / "data/klines/BTCUSDT_1m_20210420-20210520.csv.gz"
START_S = 1_760_000_000.0


def test_random_walk_is_deterministic_by_seed():
    first = build_market(TestClock(START_S), seed=3)
    second = build_market(TestClock(START_S), seed=3)
    other = build_market(TestClock(START_S), seed=4)

    rows = first.klines("BTCUSDT", "1m", limit=50)

    assert rows == second.klines("BTCUSDT", "1m", limit=50)
    assert rows != other.klines("BTCUSDT", "1m", limit=50)


def test_replay_serves_the_recorded_candles():
    market = build_market(TestClock(START_S), {"BTCUSDT": str(BTC_1M)})
    with gzip.open(BTC_1M, "rt") as handle:
        recorded = [line.strip().split(",") for line in list(handle)[1:4]]

    rows = market.klines("BTCUSDT", "1m", start_ms=0, limit=3)

    for row, (_, o, h, low, c, _v) in zip(rows, recorded, strict=True):
        assert [Decimal(x) for x in row[1:5]] == [Decimal(o), Decimal(h), Decimal(low),
                                                   Decimal(c)]
        assert row[6] == row[0] + MINUTE_MS - 1


def test_klines_of_a_longer_interval_aggregate_the_shorter_ones():
    market = build_market(TestClock(START_S + 3600))
    fives = market.klines("ETHUSDT", "5m", limit=3)[:2]

    for five in fives:
        ones = market.klines("ETHUSDT", "1m", start_ms=five[0], limit=5)
        assert five[1] == ones[0][1] and five[4] == ones[-1][4]
        assert Decimal(five[2]) == max(Decimal(r[2]) for r in ones)
        assert Decimal(five[3]) == min(Decimal(r[3]) for r in ones)
        assert Decimal(five[5]) == sum(Decimal(r[5]) for r in ones)


def test_book_is_on_the_tick_grid_and_never_crossed():
    clock = TestClock(START_S)
    market = build_market(clock)
    for _ in range(20):
        book = market.book("BNBUSDT")
        bids = [Decimal(p) for p, _ in book.bids]
        asks = [Decimal(p) for p, _ in book.asks]
        assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
        assert bids[0] < asks[0]
        assert all(p % Decimal("0.1") == 0 for p in bids + asks)
        clock.advance(1)


def test_diff_depth_stream_rebuilds_the_rest_book_with_dense_ids():
    clock = TestClock(START_S)
    market = build_market(clock)
    snapshot = market.depth_snapshot("BTCUSDT", 100)
    stream = open_stream("btcusdt@depth@100ms", market)
    book = {"bids": {p: q for p, q in snapshot["bids"]},
            "asks": {p: q for p, q in snapshot["asks"]}}
    last_u = snapshot["lastUpdateId"]

    for step_s in (1, 1, 3, 1):
        clock.advance(step_s)
        (event,) = stream.poll()
        assert event["U"] == last_u + 1
        last_u = event["u"]
        for side, key in (("bids", "b"), ("asks", "a")):
            for price, qty in event[key]:
                if Decimal(qty) == 0:
                    book[side].pop(price, None)
                else:
                    book[side][price] = qty

    now = market.depth_snapshot("BTCUSDT", 100)
    assert now["lastUpdateId"] == last_u
    assert {p: q for p, q in now["bids"]} == book["bids"]
    assert {p: q for p, q in now["asks"]} == book["asks"]


def test_kline_stream_closes_each_candle_once_and_matches_rest():
    clock = TestClock(START_S)
    market = build_market(clock)
    stream = open_stream("ethusdt@kline_1m", market)
    stream.poll()

    clock.advance(60)
    events = stream.poll()

    closed = [e["k"] for e in events if e["k"]["x"]]
    assert len(closed) == 1
    rest = market.klines("ETHUSDT", "1m", start_ms=closed[0]["t"], limit=1)[0]
    assert [closed[0][k] for k in "tohlcv"] == [rest[0], *rest[1:6]]
