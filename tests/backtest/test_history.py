"""History download against the offline simulator (python-binance unmodified): paging, resume,
weight budget, gap detection; and the verifier on its own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from backtest.history import (
    WeightBudget,
    download,
    main,
    make_client,
    read_candles,
    verify,
)
from services.exchange_sim.market import Market, build_market
from services.exchange_sim.ratelimit import RateLimits
from services.exchange_sim.server import SimServer
from services.exchange_sim.venue import Venue, default_sources, spec_for
from shared.clock import TestClock
from shared.filters import default_symbols

MINUTE = 60_000
ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "data" / "klines" / "BTCUSDT_1m_20210420_first3000.csv"


class GappyMarket(Market):
    """The replayed market with a hole in its klines, like a Binance maintenance window."""

    hole: tuple[int, int] = (0, 0)

    def klines(self, *args, **kwargs) -> list[list]:
        lo, hi = self.hole
        return [row for row in super().klines(*args, **kwargs) if not lo <= row[0] < hi]


def serve(clock: TestClock, **venue_kwargs) -> SimServer:
    server = SimServer(Venue(clock, **venue_kwargs), port=0)
    server.start()
    return server


@pytest.fixture
def clock() -> TestClock:
    return TestClock(1_700_000_000.0)


@pytest.fixture
def sim(clock: TestClock) -> Iterator[SimServer]:
    server = serve(clock)
    yield server
    server.stop()


@pytest.fixture
def client(sim: SimServer):
    c = make_client(f"{sim.base_url}/api")
    yield c
    c.close_connection()


def origin(server: SimServer) -> int:
    return server.venue.market.paths["BTCUSDT"].origin_ms


def test_download_pages_and_returns_the_replayed_real_candles(sim, client, tmp_path) -> None:
    start = origin(sim)
    out = tmp_path / "btc.csv"

    result = download(client, "BTCUSDT", "1m", start, start + 2499 * MINUTE, out,
                      progress=False)

    got, real = read_candles(out), read_candles(FIXTURE)
    assert result.ok and result.rows == 2500 and result.gaps == ()
    assert np.array_equal(got.open_time_ms, start + MINUTE * np.arange(2500))
    for name in ("open", "high", "low", "close"):
        assert np.array_equal(getattr(got, name), getattr(real, name)[:2500])


def test_a_second_run_resumes_after_the_last_row(sim, client, tmp_path) -> None:
    start = origin(sim)
    resumed, at_once = tmp_path / "resumed.csv", tmp_path / "once.csv"
    download(client, "BTCUSDT", "1m", start, start + 1234 * MINUTE, resumed, progress=False)

    result = download(client, "BTCUSDT", "1m", start, start + 2499 * MINUTE, resumed,
                      progress=False)
    download(client, "BTCUSDT", "1m", start, start + 2499 * MINUTE, at_once, progress=False)

    assert result.ok and result.rows == 2500 and not result.duplicates
    assert resumed.read_text() == at_once.read_text()


def test_only_closed_candles_are_kept(sim, client, clock, tmp_path) -> None:
    now_ms = clock.time_ms()

    result = download(client, "BTCUSDT", "1m", now_ms - 10 * MINUTE, now_ms, tmp_path / "x.csv",
                      progress=False)

    last = read_candles(tmp_path / "x.csv").open_time_ms[-1]
    assert result.ok and last + MINUTE - 1 <= now_ms


def test_the_weight_budget_waits_for_the_next_minute_instead_of_a_429(clock, tmp_path) -> None:
    server = serve(clock, limits=RateLimits(weight_per_minute=10, strikes_before_ban=2))
    c = make_client(f"{server.base_url}/api")
    budget = WeightBudget(limit=10, time_ms=clock.time_ms, sleep=clock.advance)
    start = origin(server)
    try:
        result = download(c, "BTCUSDT", "1m", start, start + 5999 * MINUTE, tmp_path / "w.csv",
                          budget=budget, progress=False)
    finally:
        c.close_connection()
        server.stop()

    assert result.ok and result.rows == 6000
    assert budget.waits >= 1


def test_gaps_of_the_exchange_are_reported_not_filled(clock, tmp_path) -> None:
    symbols = default_symbols()
    base = build_market(clock, default_sources(), specs={n: spec_for(f)
                                                         for n, f in symbols.items()})
    market = GappyMarket(clock, base.paths, book_levels=base.book_levels)
    start = base.paths["BTCUSDT"].origin_ms
    market.hole = (start + 1500 * MINUTE, start + 1784 * MINUTE)  # 284 minutes, like 2021-04-25
    server = serve(clock, market=market)
    c = make_client(f"{server.base_url}/api")
    try:
        result = download(c, "BTCUSDT", "1m", start, start + 2499 * MINUTE, tmp_path / "g.csv",
                          progress=False)
    finally:
        c.close_connection()
        server.stop()

    assert result.ok and result.rows == 2500 - 284
    assert [(g.after_ms, g.before_ms, g.missing) for g in result.gaps] == [
        (start + 1499 * MINUTE, start + 1784 * MINUTE, 284)]


def test_verify_flags_duplicates_and_steps_back() -> None:
    times = np.array([0, MINUTE, MINUTE, 3 * MINUTE, 2 * MINUTE], dtype=np.int64)

    result = verify(times, MINUTE)

    assert not result.ok and result.duplicates == (MINUTE, 2 * MINUTE)


def test_verify_flags_times_off_the_interval_grid() -> None:
    result = verify(np.array([0, MINUTE + 5, 2 * MINUTE], dtype=np.int64), MINUTE)

    assert not result.ok and result.misaligned == (MINUTE + 5, 2 * MINUTE)


def test_command_line_downloads_and_prints_the_verification(sim, tmp_path, capsys) -> None:
    start = origin(sim)
    out = tmp_path / "cli.csv.gz"

    code = main(["--symbol", "BTCUSDT", "--interval", "1m", "--start", str(start),
                 "--end", str(start + 99 * MINUTE), "--out", str(out),
                 "--base-url", f"{sim.base_url}/api", "--no-progress"])

    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["rows"] == 100 and report["ok"]
    assert len(read_candles(out)) == 100
