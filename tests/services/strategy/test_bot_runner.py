"""A bot runner on its own: spec from state rows, warm-up with live candles kept meanwhile,
fair share arithmetic. Pure objects, no sockets."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.strategy.bot_runner import BotRunner, BotSpec, position_of
from services.strategy.leases import fair_share, preference
from shared import messages as m
from shared.errors import ValidationError
from shared.strategies import get_strategy

MINUTE_MS = 60_000


def candle(i: int, close: float = 100.0) -> m.Candle:
    return m.Candle(symbol="BTCUSDT", interval="1m", open_time_ms=i * MINUTE_MS,
                    close_time_ms=(i + 1) * MINUTE_MS - 1, open=close, high=close + 0.5,
                    low=close - 0.5, close=close, volume=1.0, closed=True)


def spec(version: int = 1, **params) -> BotSpec:
    bot = {"id": 7, "params_version": version}
    values = {**get_strategy("SWING").params_schema.defaults(), **params}
    values.pop("symbol"), values.pop("timeframe")
    row = {"version": version, "strategy": "SWING", "symbol": "BTCUSDT", "timeframe": "1m",
           "params": values}
    return BotSpec.from_state(bot, row)


def test_a_spec_waits_for_the_params_row_of_the_bots_current_version():
    bot = {"id": 7, "params_version": 2}
    assert BotSpec.from_state(bot, {"version": 1}) is None
    assert BotSpec.from_state(bot, None) is None


def test_live_candles_during_the_warm_up_are_fed_after_it_once_each():
    runner = BotRunner(7, spec())
    limit = runner.begin(runner.spec)
    assert runner.status == "STARTING" and limit > 0
    assert runner.topics == {"md.kline.BTCUSDT.1m"}
    history = [candle(i) for i in range(limit)]
    live = [candle(limit - 1), candle(limit), candle(limit + 1)]  # one overlaps the history
    for msg in live:
        assert runner.on_candle(msg) == []  # kept, not traded, while STARTING

    runner.finish_warmup(history, position_of(None))

    assert runner.status == "RUNNING"
    assert runner._last_open_ms == (limit + 1) * MINUTE_MS
    assert runner.on_candle(candle(limit + 1)) == []  # a repeat is ignored
    assert list(runner.unreported) == [("STARTING", ""), ("RUNNING", "")]


def test_bad_params_make_an_error_with_the_reason():
    runner = BotRunner(7, spec())
    broken = BotSpec("SWING", "BTCUSDT", "1m", {"ema_fast": "fast"}, 2)
    with pytest.raises(ValidationError):
        runner.begin(broken)
    assert runner.status == "ERROR" and "ema_fast" in runner.reason
    assert runner.strategy is None and runner.on_candle(candle(1)) == []


def test_a_stop_is_stopping_then_stopped_and_drops_the_strategy():
    runner = BotRunner(7, spec())
    runner.begin(runner.spec)
    runner.finish_warmup([], position_of(None))
    runner.stop()
    runner.stopped()
    assert runner.strategy is None and runner.topics == frozenset()
    assert [s for s, _ in runner.unreported] == ["STARTING", "RUNNING", "STOPPING", "STOPPED"]


def test_fair_share_is_the_ceiling_of_bots_per_live_worker():
    assert fair_share(6, 3) == 2
    assert fair_share(6, 2) == 3
    assert fair_share(7, 3) == 3
    assert fair_share(0, 3) == 0
    assert fair_share(4, 0) == 4


def test_workers_rank_bots_differently():
    bots = range(1, 50)
    first = sorted(bots, key=lambda b: preference("host-1", b))
    second = sorted(bots, key=lambda b: preference("host-2", b))
    assert first != second
    assert first == sorted(bots, key=lambda b: preference("host-1", b))  # stable


def test_a_remainder_the_exchange_would_not_sell_is_flat_for_the_strategy():
    """BNBUSDT sells whole 0.001 steps for at least 10 USDT. 0.016584 at 608 is worth 10.08,
    but 0.016 is worth 9.73: every exit for it was refused (MIN_NOTIONAL), every 2 s, and the
    bot could not enter again while it held it (seen in a short chaos run)."""
    stuck = {"symbol": "BNBUSDT", "qty": "0.016584", "avg_entry_price": "608",
             "opened_at_ms": 1}
    sellable = {**stuck, "qty": "0.0172"}  # 0.017 x 608 = 10.34
    unknown_symbol = {**stuck, "symbol": "XYZUSDT"}  # no filters known: the value decides

    assert not position_of(stuck).is_open
    assert position_of(sellable).is_open
    assert position_of(unknown_symbol).is_open


def test_a_bot_counts_ticks_in_its_symbols_own_tick_size():
    """SCALPING's max_spread_ticks: BNBUSDT moves in 0.1 steps, BTCUSDT in 0.01 (the worker
    built every strategy with 0.01, so a 1-tick BNB spread counted as 10 ticks live while the
    backtester counted 1)."""
    def tick(symbol: str) -> Decimal:
        params = get_strategy("SCALPING").params_schema.validate(
            {"symbol": symbol, "timeframe": "1m"}, partial=True)
        return BotSpec("SCALPING", symbol, "1m", params, 1).build(5).market.tick_size

    assert tick("BNBUSDT") == Decimal("0.1")
    assert tick("BTCUSDT") == Decimal("0.01")
    assert tick("XYZUSDT") == Decimal("0.01")  # filters unknown here: the default
