"""The pieces on their own: kline gap filling, the local order book, backoff, weight budget."""

from __future__ import annotations

import asyncio
import random

from services.marketdata.candles import KlineTracker
from services.marketdata.depth import LocalBook
from services.marketdata.rest import WeightBudget
from services.marketdata.settings import MarketdataSettings
from services.marketdata.streams import backoff_delay
from shared.clock import TestClock
from shared.errors import TemporaryError
from shared.messages import Candle

STEP = 60_000


def row(open_ms: int, price: float = 1.0) -> list:
    p = str(price)
    return [open_ms, p, p, p, p, "1", open_ms + STEP - 1, "1", 1, "0", "0", "0"]


def candle(open_ms: int, closed: bool) -> Candle:
    return Candle("BTCUSDT", "1m", open_ms, open_ms + STEP - 1, 1.0, 1.0, 1.0, 1.0, 1.0, closed)


class FakeKlines:
    """REST klines over a fixed history; can fail the next calls."""

    def __init__(self, opens: range) -> None:
        self.rows = [row(o) for o in opens]
        self.calls: list[tuple[int, int, int]] = []
        self.failures = 0

    async def __call__(self, start_ms: int, end_ms: int, limit: int) -> list[list]:
        self.calls.append((start_ms, end_ms, limit))
        if self.failures:
            self.failures -= 1
            raise TemporaryError("venue away")
        return [r for r in self.rows if start_ms <= r[0] <= end_ms][:limit]


def run_tracker(events: list[Candle], fetch: FakeKlines) -> tuple[list[Candle], KlineTracker]:
    out: list[Candle] = []
    tracker = KlineTracker("BTCUSDT", "1m", STEP, fetch, out.append)

    async def feed() -> None:
        for event in events:
            await tracker.on_candle(event)

    asyncio.run(feed())
    return out, tracker


def test_tracker_drops_repeats_and_fills_a_gap_from_rest():
    fetch = FakeKlines(range(0, 3000 * STEP, STEP))
    events = [candle(0, True), candle(0, True), candle(STEP, False),
              candle(5 * STEP, False), candle(5 * STEP, True), candle(4 * STEP, True)]

    out, tracker = run_tracker(events, fetch)

    closed = [c.open_time_ms // STEP for c in out if c.closed]
    assert closed == [0, 1, 2, 3, 4, 5]
    assert tracker.backfilled == 4 and len(fetch.calls) == 1


def test_tracker_pages_a_long_gap_1000_at_a_time():
    fetch = FakeKlines(range(0, 3000 * STEP, STEP))

    out, tracker = run_tracker([candle(0, True), candle(2500 * STEP, True)], fetch)

    assert [c.open_time_ms // STEP for c in out] == list(range(2501))
    assert [limit for *_, limit in fetch.calls] == [1000, 1000, 1000]


def test_tracker_publishes_nothing_newer_until_the_gap_is_filled():
    fetch = FakeKlines(range(0, 10 * STEP, STEP))
    fetch.failures = 1

    out, _ = run_tracker([candle(0, True), candle(3 * STEP, True), candle(4 * STEP, True)],
                         fetch)

    assert [c.open_time_ms // STEP for c in out] == [0, 1, 2, 3, 4]


class FakeDepth:
    """Snapshots handed out in order."""

    def __init__(self, *snapshots: dict) -> None:
        self.snapshots = list(snapshots)

    async def __call__(self) -> dict:
        return self.snapshots.pop(0)


def snap(last_id: int, bid: str = "10") -> dict:
    return {"lastUpdateId": last_id, "bids": [[bid, "1"], ["9", "2"]], "asks": [["11", "1"]]}


def diff(first: int, last: int, bids=(), asks=()) -> dict:
    return {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": first, "u": last,
            "b": [list(b) for b in bids], "a": [list(a) for a in asks]}


def run_book(events: list[dict], fetch: FakeDepth) -> tuple[list, LocalBook]:
    out: list = []
    book = LocalBook("BTCUSDT", fetch, out.append, TestClock(), levels=5)

    async def feed() -> None:
        for event in events:
            await book.on_event(event)

    asyncio.run(feed())
    return out, book


def test_book_applies_diffs_after_the_snapshot_and_deletes_zero_levels():
    events = [diff(95, 100), diff(100, 102, bids=[("10", "0"), ("9.5", "3")]),
              diff(103, 104, asks=[("10.5", "4")])]

    out, book = run_book(events, FakeDepth(snap(101)))

    assert book.synced and book.last_update_id == 104 and book.gaps == 0
    assert out[-1].bids == ((9.5, 3.0), (9.0, 2.0))
    assert out[-1].asks == ((10.5, 4.0), (11.0, 1.0))


def test_book_resynchronises_on_a_gap_and_refetches_a_stale_snapshot():
    events = [diff(100, 101), diff(102, 103), diff(110, 112), diff(113, 114)]
    fetch = FakeDepth(snap(100), snap(105), snap(111, bid="10.2"))

    out, book = run_book(events, fetch)

    assert book.gaps == 1 and book.snapshots == 2 and not fetch.snapshots
    assert book.last_update_id == 114 and out[-1].bids[0] == (10.2, 1.0)


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling():
    settings = MarketdataSettings(backoff_min_s=0.5, backoff_max_s=8.0)
    rng = random.Random(1)

    delays = [backoff_delay(n, settings, rng) for n in range(8)]

    for n, delay in enumerate(delays):
        ceiling = min(8.0, 0.5 * 2 ** n)
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays}) == len(delays)


def test_weight_budget_waits_for_the_next_minute_and_honours_blocks():
    clock = TestClock(start_s=1_699_999_990.0)  # 10 s into a minute
    budget = WeightBudget(100, clock)

    budget.observe(95)
    assert budget.delay_for(5) == 0.0
    assert abs(budget.delay_for(6) - 50.05) < 1e-6
    clock.advance(50)
    assert budget.delay_for(6) == 0.0  # a new minute: Binance reset the count
    budget.block(30)
    assert budget.delay_for(1) == 30.0


def test_each_mode_reads_its_own_venue():
    from services.marketdata.settings import venue_urls
    from shared.config import load_config

    def urls(mode: str, **env: str) -> tuple[str, str]:
        config = load_config("marketdata", env={"MODE": mode, "LIVE_CONFIRM": "yes", **env})
        return venue_urls(config, MarketdataSettings())

    assert urls("sim", SIM_PORT="9011") == ("http://127.0.0.1:9011/api", "ws://127.0.0.1:9011/")
    assert urls("paper") == ("https://api.binance.com/api", "wss://stream.binance.com:9443/")
    assert urls("live") == urls("paper")
    assert urls("testnet") == ("https://testnet.binance.vision/api",
                               "wss://stream.testnet.binance.vision/")


def test_budget_keeps_the_highest_reading_of_the_shared_ip_counter():
    from services.marketdata.rest import WeightBudget
    from shared.clock import TestClock

    budget = WeightBudget(6000, TestClock(1_700_000_000.0))
    budget.observe(100)
    budget.observe_shared(5990)
    budget.observe_shared(50)

    assert budget.used == 5990
    assert budget.delay_for(20) > 0
    assert budget.delay_for(5) == 0
