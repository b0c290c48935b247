"""The compiled driver gives exactly the fills of the pure strategy class on real data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backtest import fast
from backtest.engine import Backtest, BacktestConfig
from backtest.history import CandleArrays, read_candles

ROOT = Path(__file__).resolve().parents[2]
MONTH = ROOT / "data" / "klines" / "BTCUSDT_1m_20210420-20210520.csv.gz"


@pytest.fixture(scope="module")
def real() -> CandleArrays:
    """8,000 real candles from the shipped month, across the 2021-04-25 maintenance gap."""
    return read_candles(MONTH).slice(0, 8_000)


@pytest.mark.parametrize("params, protective", [
    ({}, "oco"),
    ({}, "none"),
    ({"trailing_stop": True}, "oco"),
    ({"sl_tp_mode": "atr", "trailing_stop": True, "trailing_stop_pct": "0.2"}, "oco"),
    ({"use_ema_filter": True, "use_volume_confirmation": True, "ema_fast": 5,
      "ema_slow": 30, "rsi_period": 7}, "oco"),
])
def test_fast_driver_fills_equal_the_strategy_class(real, params, protective) -> None:
    config = BacktestConfig(params=params, protective=protective)

    pure = Backtest(config, real).run()
    compiled = fast.run(config, real)

    assert compiled.driver == "fast" and len(pure.fills) > 20
    assert compiled.fills == pure.fills  # times, sides, quantities, prices, fees, reasons
    assert np.array_equal(compiled.equity, pure.equity)


def test_unsorted_candles_fall_back_to_the_pure_driver(real) -> None:
    shuffled = real.slice(0, 500)
    shuffled = CandleArrays(shuffled.open_time_ms[::-1].copy(), *shuffled.columns()[1:])

    assert fast.run(BacktestConfig(), shuffled).driver == "pure"


def test_numba_cache_defaults_to_a_kept_directory_of_the_project() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "DATA_DIR")}
    code = "import backtest.fast, numba; print(numba.config.CACHE_DIR)"

    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout.strip()

    assert out == str(ROOT / "var" / "cache" / "numba")
