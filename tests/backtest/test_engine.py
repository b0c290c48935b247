"""The event-driven engine: real strategy + shared fill model, on real and hand-made candles."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from backtest.engine import ACCOUNT, Backtest, BacktestConfig, Broker, symbol_filters
from backtest.history import CandleArrays, read_candles
from shared.strategies.base import OrderIntent, Position

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "data" / "klines" / "BTCUSDT_1m_20210420_first3000.csv"
MINUTE = 60_000
D = Decimal


@pytest.fixture(scope="module")
def real() -> CandleArrays:
    return read_candles(FIXTURE)


def candles(rows: list[tuple[float, float, float, float]]) -> CandleArrays:
    """Hand-made 1m candles (open, high, low, close) from t = 0, volume 10 each."""
    o, h, lo, c = (np.array(col, dtype=float) for col in zip(*rows, strict=True))
    return CandleArrays(np.arange(len(rows), dtype=np.int64) * MINUTE, o, h, lo, c,
                        np.full(len(rows), 10.0))


def entry(ts_ms: int = 0) -> OrderIntent:
    return OrderIntent(f"bt-{ts_ms}-0", "bt", "BTCUSDT", "BUY", "MARKET", ts_ms,
                       quote_amount=D("20"), stop_loss=D("99.5"), take_profit=D("101"))


class Seen:
    """Stands in for the strategy: records what the broker tells it."""

    def __init__(self) -> None:
        self.fills: list = []
        self.positions: list[Position] = []


def broker_over(rows: list[tuple[float, float, float, float]], **config) -> tuple[Broker, Seen]:
    seen = Seen()
    broker = Broker(BacktestConfig(**config), candles(rows), symbol_filters("BTCUSDT"),
                    seen.fills.append, seen.positions.append)
    return broker, seen


FLAT_THEN_UP = [(100, 100.5, 99.5, 100), (100, 100.5, 99.8, 100.2)]


def test_market_entry_fills_at_the_next_open_on_the_derived_ask() -> None:
    broker, seen = broker_over(FLAT_THEN_UP)
    broker.queue([entry()])

    broker.open_candle(1)

    buy = broker.fills[0]
    assert (buy.ts_ms, buy.side, buy.price, buy.qty) == (MINUTE, "BUY", D("100"), D("0.2"))
    assert buy.commission == D("0.0002") and seen.fills[0].base_qty == D("0.1998")


def test_entry_is_protected_by_a_native_oco_at_the_intent_levels() -> None:
    broker, _ = broker_over(FLAT_THEN_UP)
    broker.queue([entry()])

    broker.open_candle(1)

    legs = {o.type: o for o in broker.engine.open_orders(ACCOUNT, "BTCUSDT")}
    assert legs["LIMIT_MAKER"].price == D("101")
    assert legs["STOP_LOSS_LIMIT"].stop_price == D("99.5")
    assert legs["STOP_LOSS_LIMIT"].price == D("99.40")  # 0.1 % below the stop, tick-rounded


def test_stop_fills_on_the_path_step_that_reaches_it() -> None:
    broker, seen = broker_over(FLAT_THEN_UP + [(100.2, 100.3, 98.3, 98.5)])
    broker.queue([entry()])
    broker.open_candle(1)

    broker.open_candle(2)

    sell = broker.fills[-1]
    # falling candle: open -> high (second 20) -> low (second 40), 0.10 a second: 99.5 at 28 s
    assert (sell.side, sell.price, sell.qty) == ("SELL", D("99.5"), D("0.1998"))
    assert sell.ts_ms == 2 * MINUTE + 28_000 and sell.reason == "protective_stop_loss"
    assert not broker.position.is_open and seen.fills[-1].side == "SELL"


def test_take_profit_fills_as_maker_once_the_price_trades_through() -> None:
    broker, _ = broker_over(FLAT_THEN_UP + [(100.2, 101.5, 100.1, 101.2)])
    broker.queue([entry()])
    broker.open_candle(1)

    broker.open_candle(2)

    sell = broker.fills[-1]
    # low (second 20) -> high (second 40), 0.07 a second: the bid first reaches 101 at 33 s
    assert (sell.price, sell.is_maker, sell.ts_ms) == (D("101"), True, 2 * MINUTE + 33_000)


def test_an_intent_the_venue_refuses_is_recorded_and_the_strategy_told() -> None:
    broker, seen = broker_over(FLAT_THEN_UP, starting_quote=D("5"))
    broker.queue([entry()])

    broker.open_candle(1)

    assert broker.fills == [] and "insufficient balance" in broker.rejections[0].reason
    assert seen.positions == [Position()]


def test_swing_on_real_candles_gives_the_same_trades_every_run(real: CandleArrays) -> None:
    first = Backtest(BacktestConfig(), real).run()
    second = Backtest(BacktestConfig(), real).run()

    assert first.trade_keys() == second.trade_keys()
    assert len(first.fills) == 120
    # decided at the close of 2021-04-21T02:27Z, filled at the next open on the ask
    assert first.fills[0].key() == (1618972080000, "BUY", "0.00035000", "56017.79000000")
    assert first.fills[1].key() == (1618972560000, "SELL", "0.00034000", "56214.28000000")


def test_skipping_quiet_candles_changes_nothing(real: CandleArrays,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine is consulted only where it can act; consulting it on every candle with a
    position or an order, at every step of the path, gives exactly the same fills."""
    config = BacktestConfig(params={"trailing_stop": True})
    lazy = Backtest(config, real).run()
    monkeypatch.setattr(Broker, "needs_open", lambda self, i: bool(
        self._queued or self.position.is_open or self._open_orders))
    monkeypatch.setattr(Broker, "_reach", lambda self: (math.inf, -math.inf)
                        if self._open_orders else None)

    eager = Backtest(config, real).run()

    assert eager.trade_keys() == lazy.trade_keys()


def test_any_driver_of_step_gets_the_same_trades(real: CandleArrays) -> None:
    """The parity hook: whoever feeds candles through ``step`` (here, one at a time from a
    generator, as a live replay would) gets the trades of ``run``."""
    expected = Backtest(BacktestConfig(), real).run().trade_keys()
    bt = Backtest(BacktestConfig(), real)
    bt.warm_up()

    for i in (i for i in range(bt.warmup, len(real))):
        bt.step(i)

    assert [f.key() for f in bt.broker.fills] == expected


def test_strategy_without_kline_input_is_refused_with_a_reason(real: CandleArrays) -> None:
    with pytest.raises(ValueError, match="order book"):
        Backtest(BacktestConfig(strategy="SCALPING"), real)


def limit_entry(price: str, ttl_ms: int) -> OrderIntent:
    return OrderIntent("bt-0-0", "bt", "BTCUSDT", "BUY", "LIMIT", 0, quote_amount=D("20"),
                       limit_price=D(price), time_in_force="GTC", ttl_ms=ttl_ms)


def test_a_resting_limit_fills_at_its_price_when_the_path_comes_down_to_it() -> None:
    broker, _ = broker_over(FLAT_THEN_UP, protective="none")
    broker.queue([limit_entry("99.9", ttl_ms=MINUTE)])

    broker.open_candle(1)

    buy = broker.fills[0]
    assert (buy.price, buy.qty, buy.is_maker) == (D("99.9"), D("0.2002"), True)
    assert buy.ts_ms == MINUTE + 11_000  # 0.01 a second down from 100: the ask is 99.9 at 11 s


def test_an_unfilled_limit_is_cancelled_after_its_ttl_and_the_strategy_told() -> None:
    broker, seen = broker_over(FLAT_THEN_UP + [(100.2, 100.4, 100.0, 100.1)], protective="none")
    broker.queue([limit_entry("99", ttl_ms=MINUTE)])
    broker.open_candle(1)

    broker.open_candle(2)

    assert broker.fills == [] and broker.engine.open_orders(ACCOUNT, "BTCUSDT") == []
    assert seen.positions == [Position()]
