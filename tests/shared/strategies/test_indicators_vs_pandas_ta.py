"""Incremental EMA / RSI / ATR equal pandas-ta (talib=False) on real BTCUSDT 1m candles, and the
documented warm-up makes the seeding choice (pandas-ta vs TA-Lib style) irrelevant."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas_ta as ta
import pytest

from shared.strategies.base import Candle
from shared.strategies.indicators import PANDAS_TA_TALIB, Atr, Ema, Rsi, Sma, decay_candles

PERIODS = [2, 9, 14, 21, 50]
RTOL = 1e-9


@pytest.fixture(scope="module")
def frame(real_candles: list[Candle]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "high": [c.high for c in real_candles],
            "low": [c.low for c in real_candles],
            "close": [c.close for c in real_candles],
            "volume": [c.volume for c in real_candles],
        }
    )


def as_array(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def assert_same_series(mine: np.ndarray, theirs: pd.Series) -> None:
    expected = theirs.to_numpy(dtype=float)
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(expected))
    defined = ~np.isnan(expected)
    np.testing.assert_allclose(mine[defined], expected[defined], rtol=RTOL, atol=0)


def test_the_talib_choice_is_pandas_ta_without_talib() -> None:
    assert PANDAS_TA_TALIB is False


@pytest.mark.parametrize("period", PERIODS)
def test_ema_equals_pandas_ta(frame: pd.DataFrame, period: int) -> None:
    ema = Ema(period)

    mine = as_array([ema.update(x) for x in frame["close"]])

    assert_same_series(mine, ta.ema(frame["close"], period, talib=PANDAS_TA_TALIB))


@pytest.mark.parametrize("period", PERIODS)
def test_rsi_equals_pandas_ta(frame: pd.DataFrame, period: int) -> None:
    rsi = Rsi(period)

    mine = as_array([rsi.update(x) for x in frame["close"]])

    expected = ta.rsi(frame["close"], period, talib=PANDAS_TA_TALIB).to_numpy(dtype=float)
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(expected))
    defined = ~np.isnan(expected)
    # RSI lives on 0..100 and touches 0, so the relative bound gets an absolute floor.
    np.testing.assert_allclose(mine[defined], expected[defined], rtol=RTOL, atol=100 * RTOL)


@pytest.mark.parametrize("period", PERIODS)
def test_atr_equals_pandas_ta(frame: pd.DataFrame, period: int) -> None:
    atr = Atr(period)

    rows = zip(frame["high"], frame["low"], frame["close"], strict=True)
    mine = as_array([atr.update(h, lo, c) for h, lo, c in rows])

    expected = ta.atr(frame["high"], frame["low"], frame["close"], period, talib=PANDAS_TA_TALIB)
    assert_same_series(mine, expected)


@pytest.mark.parametrize("period", [2, 20])
def test_sma_equals_pandas_ta(frame: pd.DataFrame, period: int) -> None:
    sma = Sma(period)

    mine = as_array([sma.update(x) for x in frame["volume"]])

    assert_same_series(mine, ta.sma(frame["volume"], period, talib=PANDAS_TA_TALIB))


def test_rsi_is_ready_where_pandas_ta_starts_answering() -> None:
    rsi = Rsi(14)
    for x in range(14):
        rsi.update(100.0 + (x % 3))
    assert not rsi.ready

    rsi.update(99.0)

    assert rsi.ready


def wilder_rsi_sma_seeded(close: np.ndarray, period: int) -> np.ndarray:
    """TA-Lib / Wilder's book: averages seeded with the SMA of the first ``period`` changes."""
    change = np.diff(close)
    gains, losses = np.clip(change, 0, None), np.clip(-change, 0, None)
    out = np.full(close.shape, np.nan)
    avg_gain, avg_loss = gains[:period].mean(), losses[:period].mean()
    out[period] = 100 * avg_gain / (avg_gain + avg_loss)
    for i in range(period, len(change)):
        avg_gain = (avg_gain * (period - 1) + gains[i]) / period
        avg_loss = (avg_loss * (period - 1) + losses[i]) / period
        out[i + 1] = 100 * avg_gain / (avg_gain + avg_loss)
    return out


@pytest.mark.parametrize("period", [9, 14, 21])
def test_after_warmup_rsi_does_not_depend_on_the_seeding(frame: pd.DataFrame, period: int) -> None:
    close = frame["close"].to_numpy()
    warm = Rsi(period).warmup_length()

    ours = ta.rsi(frame["close"], period, talib=PANDAS_TA_TALIB).to_numpy()
    talib_style = wilder_rsi_sma_seeded(close, period)

    assert warm < len(close)
    assert np.nanmax(np.abs(ours[warm:] - talib_style[warm:])) < 1e-6
    assert np.nanmax(np.abs(ours[period + 1:warm] - talib_style[period + 1:warm])) > 1e-6


@pytest.mark.parametrize("period", [9, 21])
def test_after_warmup_ema_does_not_depend_on_the_seeding(frame: pd.DataFrame, period: int) -> None:
    warm = Ema(period).warmup_length()

    sma_seeded = ta.ema(frame["close"], period, talib=PANDAS_TA_TALIB, presma=True).to_numpy()
    first_value_seeded = ta.ema(frame["close"], period, talib=PANDAS_TA_TALIB, presma=False)

    np.testing.assert_allclose(sma_seeded[warm:], first_value_seeded.to_numpy()[warm:], rtol=RTOL)


def test_after_warmup_atr_does_not_depend_on_the_seeding(frame: pd.DataFrame) -> None:
    warm = Atr(14).warmup_length()
    args = (frame["high"], frame["low"], frame["close"], 14)

    sma_seeded = ta.atr(*args, talib=PANDAS_TA_TALIB).to_numpy()
    first_value_seeded = ta.atr(*args, talib=PANDAS_TA_TALIB, presma=False).to_numpy()

    np.testing.assert_allclose(sma_seeded[warm:], first_value_seeded[warm:], rtol=RTOL)


def test_indicators_started_later_agree_after_their_warmup(frame: pd.DataFrame) -> None:
    close = frame["close"].tolist()
    early, late = Rsi(14), Rsi(14)
    start = 1000
    for x in close[:start]:
        early.update(x)

    pairs = []
    for i, x in enumerate(close[start:]):
        a, b = early.update(x), late.update(x)
        if i >= late.warmup_length():
            pairs.append((a, b))

    assert pairs
    assert max(abs(a - b) for a, b in pairs) < 1e-6


def test_decay_candles_matches_the_documented_defaults() -> None:
    assert decay_candles(1.0) == 0
    assert (Ema(21).warmup_length(), Rsi(14).warmup_length(), Atr(14).warmup_length()) == (
        239, 295, 294
    )
