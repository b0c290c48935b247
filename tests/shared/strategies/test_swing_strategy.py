"""SWING: a BUY on a constructed EMA cross, SL/TP in percent and ATR, exits, trailing stop."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pandas as pd
import pandas_ta as ta
import pytest

from shared.strategies.base import Candle, Fill, OrderIntent, Position
from shared.strategies.indicators import PANDAS_TA_TALIB
from shared.strategies.swing import SWING_PARAMS, SwingStrategy

T0_MS = 1_700_000_000_000
MINUTE_MS = 60_000
DOWN, UP = 320, 40  # candles of zig-zag decline, then of zig-zag rise


def zigzag_closes() -> list[float]:
    """A gentle zig-zag decline (fast EMA below slow) then a rise that crosses them."""
    closes = [100 - 0.01 * t + (0.3 if t % 2 else -0.3) for t in range(DOWN)]
    last = closes[-1]
    closes += [last + 0.06 * k + (0.3 if k % 2 else -0.3) for k in range(1, UP + 1)]
    return closes


def candle(i: int, close: float, high: float | None = None, low: float | None = None) -> Candle:
    return Candle(T0_MS + i * MINUTE_MS, close, high if high is not None else close + 0.2,
                  low if low is not None else close - 0.2, close, 1.0)


def swing(**params: object) -> SwingStrategy:
    return SwingStrategy("bot-1", SWING_PARAMS.validate(params, partial=True))


def feed(strategy: SwingStrategy, candles: list[Candle]) -> list[tuple[int, OrderIntent]]:
    return [(i, intent) for i, c in enumerate(candles) for intent in strategy.on_candle(c)]


def expected_cross_ups(closes: list[float], fast: int = 9, slow: int = 21) -> list[int]:
    """Where pandas-ta's EMAs say the fast one crosses above the slow one."""
    series = pd.Series(closes)
    diff = ta.ema(series, fast, talib=PANDAS_TA_TALIB) - ta.ema(series, slow, talib=PANDAS_TA_TALIB)
    return [i for i in range(1, len(closes)) if diff[i - 1] <= 0 < diff[i]]


@pytest.fixture
def entered() -> Callable[..., tuple[SwingStrategy, OrderIntent, int]]:
    """A strategy fed the zig-zag up to its BUY, which then filled at ``fill_price``."""

    def make(fill_price: float | None = None, **params: object):
        strategy = swing(**params)
        closes = zigzag_closes()
        for i, close in enumerate(closes):
            intents = strategy.on_candle(candle(i, close))
            if intents:
                (buy,) = intents
                price = fill_price if fill_price is not None else close
                strategy.on_fill(Fill("BUY", price, Decimal("0.2"), T0_MS + (i + 1) * MINUTE_MS))
                return strategy, buy, i
        raise AssertionError("no entry on the zig-zag")

    return make


def test_buy_on_the_candle_where_the_fast_ema_crosses_above_the_slow_one() -> None:
    closes = zigzag_closes()
    strategy = swing()

    intents = feed(strategy, [candle(i, c) for i, c in enumerate(closes)])

    assert expected_cross_ups(closes) == [DOWN]
    assert [(i, it.side, it.order_type) for i, it in intents] == [(DOWN, "BUY", "MARKET")]
    buy = intents[0][1]
    assert buy.quote_amount == Decimal("20")
    assert buy.reason.startswith("ema_cross_up")
    assert buy.intent_id == f"bot-1-{T0_MS + DOWN * MINUTE_MS}-0"


def test_no_buy_when_rsi_is_at_or_above_overbought() -> None:
    closes = zigzag_closes()
    strategy = swing(rsi_overbought=50)  # RSI at the cross is about 53

    assert feed(strategy, [candle(i, c) for i, c in enumerate(closes)]) == []


def test_no_intent_before_warmup_even_on_a_cross() -> None:
    closes = zigzag_closes()[DOWN - 30:]  # the same cross, but only 30 candles of history
    strategy = swing()

    assert feed(strategy, [candle(i, c) for i, c in enumerate(closes)]) == []
    assert strategy.warmup_candles() == 296


def test_percent_stop_loss_and_take_profit_from_the_signal_close() -> None:
    closes = zigzag_closes()
    strategy = swing(stop_loss_pct="0.5", take_profit_pct="1.0")

    (_, buy), = feed(strategy, [candle(i, c) for i, c in enumerate(closes)])

    assert float(buy.stop_loss) == pytest.approx(closes[DOWN] * 0.995, rel=1e-12)
    assert float(buy.take_profit) == pytest.approx(closes[DOWN] * 1.01, rel=1e-12)


def test_atr_stop_loss_and_take_profit_from_atr_at_the_signal() -> None:
    closes = zigzag_closes()
    candles = [candle(i, c) for i, c in enumerate(closes)]
    strategy = swing(sl_tp_mode="atr", atr_period=14, stop_loss_atr="1.5", take_profit_atr="3")

    (_, buy), = feed(strategy, candles)

    atr = ta.atr(pd.Series([c.high for c in candles]), pd.Series([c.low for c in candles]),
                 pd.Series(closes), 14, talib=PANDAS_TA_TALIB)[DOWN]
    assert float(buy.stop_loss) == pytest.approx(closes[DOWN] - 1.5 * atr, rel=1e-12)
    assert float(buy.take_profit) == pytest.approx(closes[DOWN] + 3 * atr, rel=1e-12)


def test_levels_follow_the_real_fill_price(entered) -> None:
    strategy, _, _ = entered(fill_price=98.0, stop_loss_pct="0.5", take_profit_pct="2")

    assert strategy.position.entry_price == Decimal("98.0")
    assert strategy.stop_price == pytest.approx(98.0 * 0.995)
    assert strategy.take_profit_price == pytest.approx(98.0 * 1.02)


def test_stop_loss_touched_sells_the_whole_position(entered) -> None:
    strategy, _, i = entered(fill_price=98.0)

    (sell,) = strategy.on_candle(candle(i + 1, 98.0, high=98.1, low=97.0))

    assert (sell.side, sell.order_type, sell.base_qty) == ("SELL", "MARKET", Decimal("0.2"))
    assert sell.reason.startswith("stop_loss")


def test_take_profit_touched_sells(entered) -> None:
    strategy, _, i = entered(fill_price=98.0, take_profit_pct="1")

    (sell,) = strategy.on_candle(candle(i + 1, 98.5, high=99.0, low=98.4))

    assert sell.reason.startswith("take_profit")


def test_rsi_overbought_exits_an_open_position(entered) -> None:
    strategy, _, i = entered(fill_price=98.0, take_profit_pct="50")
    price, reasons = 98.0, []
    for k in range(1, 30):
        price += 0.5
        reasons += [it.reason for it in strategy.on_candle(candle(i + k, price))]
        if reasons:
            break

    assert reasons and reasons[0].startswith("rsi_overbought")


def test_an_unanswered_exit_is_retried_next_candle_and_a_filled_one_is_not(entered) -> None:
    strategy, _, i = entered(fill_price=98.0)

    (first,) = strategy.on_candle(candle(i + 1, 97.0, high=97.1, low=96.0))
    (retry,) = strategy.on_candle(candle(i + 2, 96.5, high=96.6, low=96.0))
    strategy.on_fill(Fill("SELL", 96.4, retry.base_qty, T0_MS + (i + 3) * MINUTE_MS))
    after_fill = strategy.on_candle(candle(i + 3, 96.0, high=96.1, low=95.0))

    assert first.intent_id != retry.intent_id and retry.side == "SELL"
    assert after_fill == []


def test_the_position_learnt_from_a_snapshot_gets_levels_too() -> None:
    strategy = swing(stop_loss_pct="1", take_profit_pct="2")

    strategy.on_position(Position(Decimal("0.5"), Decimal("100"), T0_MS))

    assert strategy.stop_price == pytest.approx(99.0)
    assert strategy.take_profit_price == pytest.approx(102.0)


def test_flat_position_clears_the_levels(entered) -> None:
    strategy, _, _ = entered(fill_price=98.0)

    strategy.on_fill(Fill("SELL", 98.5, Decimal("0.2"), T0_MS + 10**9))

    assert not strategy.position.is_open
    assert strategy.stop_price is None and strategy.take_profit_price is None


def test_trailing_stop_moves_only_up(entered) -> None:
    strategy, _, i = entered(
        fill_price=98.0, trailing_stop=True, trailing_stop_pct="1", take_profit_pct="100",
        rsi_overbought=100,
    )
    highs = [98.5, 99.0, 99.8, 99.6, 99.2, 100.4, 100.1, 100.3]
    stops = [strategy.stop_price]
    for k, high in enumerate(highs, start=1):
        # Lows stay above any stop so the position stays open while the stop trails.
        assert strategy.on_candle(candle(i + k, high - 0.1, high=high, low=high - 0.3)) == []
        stops.append(strategy.stop_price)

    assert all(b >= a for a, b in zip(stops[:-1], stops[1:], strict=True))
    assert stops[-1] == pytest.approx(max(highs) * 0.99)
    # At entry the fixed 0.5 % stop is above the 1 % trail; the trail overtakes it as highs rise.
    assert stops[0] == pytest.approx(98.0 * 0.995)
    assert stops[-1] > stops[0]


def test_trailing_stop_touched_exits_as_trailing(entered) -> None:
    strategy, _, i = entered(
        fill_price=98.0, trailing_stop=True, trailing_stop_pct="1", take_profit_pct="100",
        rsi_overbought=100,
    )
    strategy.on_candle(candle(i + 1, 100.9, high=101.0, low=100.8))

    (sell,) = strategy.on_candle(candle(i + 2, 99.9, high=100.5, low=99.8))

    assert sell.reason.startswith("trailing_stop")
    assert strategy.stop_price == pytest.approx(101.0 * 0.99)


def test_open_and_duplicate_candles_are_ignored(entered) -> None:
    strategy, _, i = entered(fill_price=98.0)
    crash = candle(i + 1, 90.0, high=90.1, low=89.0)

    assert strategy.on_candle(Candle(crash.open_time_ms, 90, 90.1, 89, 90, 1, closed=False)) == []
    assert strategy.on_candle(candle(i, 90.0, high=90.1, low=89.0)) == []  # already seen
    assert len(strategy.on_candle(crash)) == 1


def test_snapshot_is_plain_data(entered) -> None:
    strategy, _, _ = entered(fill_price=98.0)

    snap = strategy.snapshot()

    assert snap["ready"] is True and snap["stop_loss"] == pytest.approx(98.0 * 0.995)
    assert {"ema_fast", "ema_slow", "rsi", "take_profit"} <= set(snap)


def test_volume_confirmation_needs_volume_above_the_previous_average() -> None:
    closes = zigzag_closes()
    ordinary = [candle(i, c) for i, c in enumerate(closes)]  # every volume is 1.0
    spike = [c if i != DOWN else Candle(c.open_time_ms, c.open, c.high, c.low, c.close, 5.0)
             for i, c in enumerate(ordinary)]

    assert feed(swing(use_volume_confirmation=True), ordinary) == []
    assert [i for i, _ in feed(swing(use_volume_confirmation=True), spike)] == [DOWN]


def long_zigzag(slope: float, down: int = 1300) -> list[float]:
    """Like ``zigzag_closes`` but long enough to warm up a 100-candle trend EMA."""
    closes = [200 - slope * t + (0.3 if t % 2 else -0.3) for t in range(down)]
    return closes + [closes[-1] + 0.06 * k + (0.3 if k % 2 else -0.3) for k in range(1, UP + 1)]


@pytest.mark.parametrize("slope, passes", [(0.01, True), (0.03, False)])
def test_trend_filter_takes_only_crosses_above_the_trend_ema(slope: float, passes: bool) -> None:
    closes = long_zigzag(slope)
    (cross,) = expected_cross_ups(closes)
    trend = ta.ema(pd.Series(closes), 100, talib=PANDAS_TA_TALIB)[cross]
    strategy = swing(use_ema_filter=True, ema_filter_period=100)

    intents = feed(strategy, [candle(i, c) for i, c in enumerate(closes)])

    assert strategy.warmup_candles() < cross
    assert bool(closes[cross] > trend) is passes
    assert [i for i, _ in intents] == ([cross] if passes else [])


def test_warm_up_drops_decisions_and_leaves_nothing_pending() -> None:
    closes = zigzag_closes()
    candles = [candle(i, c) for i, c in enumerate(closes)]
    strategy = swing()

    strategy.warm_up(candles[: DOWN + 1])  # history ends on the cross candle
    strategy.on_position(Position(Decimal("0.2"), Decimal(str(closes[DOWN])), T0_MS))

    assert strategy.ready and strategy.stop_price == pytest.approx(closes[DOWN] * 0.995)
    (sell,) = strategy.on_candle(candle(DOWN + 1, 90.0, high=closes[DOWN], low=89.0))
    assert sell.reason.startswith("stop_loss")
