"""Candle history for warm-up: pages REST 1000 at a time, then serves from the cache."""

from __future__ import annotations

import threading

import pytest

from shared.errors import RemoteError, ValidationError
from shared.messages import Candle, GetCandles, Ping
from tests.services.marketdata.conftest import set_faults

MINUTE_MS = 60_000


def candles_of(result: dict) -> list[Candle]:
    return [Candle.from_dict(d) for d in result["candles"]]


def test_history_pages_rest_then_serves_from_the_cache(sim, start_md, md_client):
    service = start_md(sim)
    history = service.supervisor.history

    candles = candles_of(md_client.call(GetCandles("BTCUSDT", "1m", limit=1500)))

    assert len(candles) == 1500
    opens = [c.open_time_ms for c in candles]
    assert all(b - a == MINUTE_MS for a, b in zip(opens, opens[1:], strict=False))
    assert all(c.closed for c in candles)
    assert candles[-1].close_time_ms < sim.venue.clock.time_ms()
    assert history.rest_pages == 3  # the newest closed candle, then 1000 + 499 older ones
    assert service.supervisor.rest.budget.used > 0  # followed X-MBX-USED-WEIGHT-1M

    again = candles_of(md_client.call(GetCandles("BTCUSDT", "1m", limit=1500)))

    assert history.rest_pages == 4  # only the newest-candle probe
    assert again[-1].open_time_ms >= candles[-1].open_time_ms
    assert again[0].open_time_ms >= candles[0].open_time_ms


def test_history_ends_where_asked_and_matches_rest(sim, start_md, md_client):
    start_md(sim)
    recent = candles_of(md_client.call(GetCandles("BTCUSDT", "1m", limit=200)))
    end = recent[99].close_time_ms + 1

    older = candles_of(md_client.call(GetCandles("BTCUSDT", "1m", limit=10, end_time_ms=end)))

    assert [c.open_time_ms for c in older] == [c.open_time_ms for c in recent[90:100]]
    row = sim.venue.market.kline("BTCUSDT", "1m", older[-1].open_time_ms)
    assert (older[-1].open, older[-1].high, older[-1].low, older[-1].close) == \
        tuple(float(x) for x in row[1:5])


def test_history_refuses_bad_requests_with_every_field(sim, start_md, md_client):
    start_md(sim)

    with pytest.raises(ValidationError) as err:
        md_client.call(GetCandles("btc", "7m", limit=0))

    assert set(err.value.fields) == {"symbol", "interval", "limit"}


def test_history_respects_429_and_does_not_call_again_while_blocked(sim, start_md, md_client):
    service = start_md(sim)
    set_faults(sim, http_429=1, retry_after_s=30)

    with pytest.raises(RemoteError) as first:
        md_client.call(GetCandles("BTCUSDT", "1m", limit=10))
    calls = service.supervisor.rest.calls
    with pytest.raises(RemoteError) as second:
        md_client.call(GetCandles("BTCUSDT", "1m", limit=10))

    assert first.value.code == second.value.code == "rate_limited"
    assert service.supervisor.rest.calls == calls  # refused locally: no call during Retry-After


def test_slow_history_does_not_hold_up_other_requests(sim, start_md, md_client, ctx, endpoints):
    from shared.bus import RequestClient

    start_md(sim)
    set_faults(sim, latency_ms=1500)
    slow: dict = {}
    worker = threading.Thread(
        target=lambda: slow.update(r=md_client.request(GetCandles("ETHUSDT", "5m", limit=20))))
    worker.start()
    pinger = RequestClient(ctx, endpoints.marketdata, timeout_ms=2000, retries=1)
    try:
        assert pinger.call(Ping("x"))["nonce"] == "x"  # answered while history waits on REST
        assert worker.is_alive()
    finally:
        worker.join(10)
        pinger.close()
    assert slow["r"].ok and len(slow["r"].result["candles"]) == 20


def test_a_pause_broadcast_by_execution_holds_rest_calls(sim, start_md, md_client, ctx,
                                                         endpoints):
    """Binance counts weight per IP: execution's 429 pause (exec.pause) holds us too."""
    import time

    from shared.bus import Publisher
    from shared.messages import TradingPaused

    service = start_md(sim)
    calls = service.supervisor.rest.calls
    pub = Publisher(ctx, endpoints.bus_xsub)
    pause = TradingPaused(reason="429 from the exchange", retry_after_s=60.0,
                          until_ts=time.time() + 60, halted=False)
    deadline = time.monotonic() + 10
    while service.supervisor.rest.budget.delay_for(1) == 0 and time.monotonic() < deadline:
        pub.publish("exec.pause", pause)  # until the subscription is through
        time.sleep(0.05)

    with pytest.raises(RemoteError) as err:
        md_client.call(GetCandles("BTCUSDT", "1h", limit=10))

    assert err.value.code == "rate_limited"
    assert service.supervisor.rest.calls == calls
    pub.close()
