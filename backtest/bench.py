"""``make bench`` rows for the backtester: SWING over 1,000,000 one-minute candles, end to end.

The million candles are the shipped real BTCUSDT month (``data/klines``, 42,915 candles) laid
end to end 24 times and cut at 1,000,000: open times continue minute by minute, prices are the
recorded ones (so the price jumps back at each of the 23 seams). Rows:

* candles/s of the compiled driver end to end (indicators, decisions, every fill through
  ``shared.matching``, equity curve), and of the pure-Python driver on the first 100,000;
* candles/s of the kernel alone (same run with RSI bounds that never let it trade);
* peak memory: the process's max RSS after the 1M run, and the tracemalloc peak of a 100k run
  (tracemalloc slows allocation-heavy code several times, so it is kept out of the timings);
* time to a first result in a fresh process (imports, numba cache load, 3,000 candles), with
  the numba cache warm and cold;
* backtesting.py (if installed) on the same rules and data, in the same run;
* vectorbt (if installed): ``Portfolio.from_signals`` on the same rules and data, in the same
  run. It is not in ``requirements-bench.txt``: vectorbt 1.1+ needs numpy >= 2.4.6 and
  numba >= 0.66, vectorbt <= 1.0 needs pandas < 3, and the project pins numpy 2.2.6, numba
  0.61.2 (which pandas-ta 0.4.71b0 pins) and pandas 3.1.1. In an environment that has it (e.g.
  a separate virtualenv with the project on ``PYTHONPATH``) the rows appear.

``python -m backtest.bench`` prints the rows. Rates are given per wall second and per CPU second
of this process: on a shared machine the second is the steadier one, and the comparison with
backtesting.py uses it.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from backtest.engine import BacktestConfig, run_backtest
from backtest.history import CandleArrays, read_candles

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "klines" / "BTCUSDT_1m_20210420-20210520.csv.gz"
SMALL = ROOT / "tests" / "data" / "klines" / "BTCUSDT_1m_20210420_first3000.csv"
N = 1_000_000
Row = tuple[str, str, str]


def million(candles: CandleArrays, n: int = N) -> CandleArrays:
    """``candles`` repeated to ``n`` rows with open times continuing minute by minute (prices
    as recorded, so the price jumps back at each of the seams; no price is invented)."""
    copies = -(-n // len(candles))
    start = int(candles.open_time_ms[0])
    times = start + 60_000 * np.arange(copies * len(candles), dtype=np.int64)
    cols = [np.tile(col, copies)[:n] for col in candles.columns()[1:]]
    return CandleArrays(times[:n], *cols)


def _timed(config: BacktestConfig, candles: CandleArrays, driver: str
           ) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds of this process, and fills of one run."""
    started, cpu = time.perf_counter(), time.process_time()
    result = run_backtest(config, candles, driver=driver)
    return time.perf_counter() - started, time.process_time() - cpu, len(result.fills)


def _rate(n: int, wall: float, cpu: float, extra: str = "") -> tuple[str, str]:
    return f"{n / wall:,.0f}", f"candles/s wall ({n / cpu:,.0f} per CPU-second{extra})"


def _fresh_process(cache_dir: str | None) -> float:
    code = ("import time; t = time.perf_counter()\n"
            "from backtest.history import read_candles\n"
            "from backtest.engine import BacktestConfig, run_backtest\n"
            f"r = run_backtest(BacktestConfig(), read_candles({str(SMALL)!r}), driver='fast')\n"
            "print(time.perf_counter() - t)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    return time.perf_counter() - started


def _backtesting_py(candles: CandleArrays) -> tuple[str, float, float, int] | None:
    """backtesting.py on SWING's default rules (EMA 9/21 cross, RSI 14 in (30, 70), SL 0.5 %,
    TP 1 %, exit on cross down or RSI >= 70); indicators by pandas-ta, talib=False."""
    try:
        import backtesting
        import pandas as pd
        import pandas_ta as ta
        from backtesting import Strategy
        from backtesting.lib import FractionalBacktest
    except ImportError:
        return None

    class Swing(Strategy):
        def init(self) -> None:
            close = pd.Series(self.data.Close)
            self.fast = self.I(lambda: ta.ema(close, 9, talib=False).to_numpy())
            self.slow = self.I(lambda: ta.ema(close, 21, talib=False).to_numpy())
            self.rsi = self.I(lambda: ta.rsi(close, 14, talib=False).to_numpy())

        def next(self) -> None:
            fast, slow, rsi = self.fast, self.slow, self.rsi
            if len(fast) < 2:
                return
            up = fast[-2] <= slow[-2] and fast[-1] > slow[-1]
            down = fast[-2] >= slow[-2] and fast[-1] < slow[-1]
            price = self.data.Close[-1]
            if self.position:
                if down or rsi[-1] >= 70:
                    self.position.close()
            elif up and 30 < rsi[-1] < 70:
                self.buy(size=0.002, sl=price * 0.995, tp=price * 1.01)

    frame = pd.DataFrame({"Open": candles.open, "High": candles.high, "Low": candles.low,
                          "Close": candles.close, "Volume": candles.volume},
                         index=pd.to_datetime(candles.open_time_ms, unit="ms"))
    started, cpu = time.perf_counter(), time.process_time()
    stats = FractionalBacktest(frame, Swing, cash=10_000, commission=0.001,
                               finalize_trades=True).run()
    return (backtesting.__version__, time.perf_counter() - started,
            time.process_time() - cpu, int(stats["# Trades"]))


def _vectorbt(candles: CandleArrays) -> tuple[str, float, float, int] | None:
    """vectorbt's vectorised engine on SWING's default rules: enter where EMA 9 crosses above
    EMA 21 with RSI 14 in (30, 70), exit where it crosses below or RSI >= 70, ``sl_stop`` 0.5 %
    and ``tp_stop`` 1 % checked against each candle's high and low, 0.1 % fees, 0.002 base a
    trade. Indicators in pandas as pandas-ta computes them (EMA seeded with the SMA, RSI from
    RMAs), signals and portfolio timed together; numba compiled on a small slice first."""
    try:
        import pandas as pd
        import vectorbt as vbt
    except ImportError:
        return None

    def run(c: CandleArrays) -> int:
        index = pd.to_datetime(c.open_time_ms, unit="ms")
        close = pd.Series(c.close, index=index)

        def ema(n: int) -> pd.Series:
            seeded = close.copy()
            seeded.iloc[:n - 1] = np.nan
            seeded.iloc[n - 1] = close.iloc[:n].mean()
            return seeded.ewm(span=n, adjust=False).mean()

        change = close.diff()
        gain = change.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
        loss = (-change).clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
        rsi = 100 * gain / (gain + loss)
        diff = ema(9) - ema(21)
        before = diff.shift()
        entries = (before <= 0) & (diff > 0) & (rsi > 30) & (rsi < 70)
        exits = ((before >= 0) & (diff < 0)) | (rsi >= 70)
        portfolio = vbt.Portfolio.from_signals(
            close, entries, exits, open=pd.Series(c.open, index=index),
            high=pd.Series(c.high, index=index), low=pd.Series(c.low, index=index),
            size=0.002, fees=0.001, sl_stop=0.005, tp_stop=0.01, init_cash=10_000, freq="1min")
        return int(portfolio.trades.count())

    run(candles.slice(0, 5000))
    started, cpu = time.perf_counter(), time.process_time()
    trades = run(candles)
    return vbt.__version__, time.perf_counter() - started, time.process_time() - cpu, trades


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run() -> list[Row]:
    rows: list[Row] = []
    started = time.perf_counter()
    real = read_candles(DATA)
    rows.append(("backtest: read 42,915-candle CSV.gz", f"{time.perf_counter() - started:.3f}",
                 "s"))
    config = BacktestConfig()
    run_backtest(config, real.slice(0, 5000), driver="fast")  # load the numba cache
    rss_before = _max_rss_mib()
    big = million(real)
    wall, cpu, fills = _timed(config, big, "fast")
    rows.append(("backtest: SWING 1M 1m candles, compiled driver, end to end",
                 *_rate(N, wall, cpu, f"; {wall:.1f} s, {fills} fills")))
    rows.append(("backtest: peak RSS of the process after that run",
                 f"{_max_rss_mib():.0f}", f"MiB ({rss_before:.0f} MiB before the 1M candles)"))
    wall_n, cpu_n, fills_n = _timed(BacktestConfig(protective="none"), big, "fast")
    rows.append(("backtest: same, strategy exits only (no protective OCO)",
                 *_rate(N, wall_n, cpu_n, f"; {fills_n} fills")))
    quiet = BacktestConfig(params={"rsi_oversold": 49.999, "rsi_overbought": 50.0})
    wall_q, cpu_q, fills_q = _timed(quiet, big, "fast")
    rows.append(("backtest: SWING kernel alone (1M candles, no trades)",
                 *_rate(N, wall_q, cpu_q, f"; {fills_q} fills")))
    part = big.slice(0, 100_000)
    wall_p, cpu_p, _ = _timed(config, part, "pure")
    rows.append(("backtest: SWING pure-Python driver (strategy class), 100k candles",
                 *_rate(len(part), wall_p, cpu_p)))
    tracemalloc.start()
    _timed(config, part, "fast")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rows.append(("backtest: tracemalloc peak, compiled driver, 100k candles",
                 f"{peak / 2**20:.1f}", "MiB"))
    rows.append(("backtest: fresh process to first result (numba cache warm)",
                 f"{_fresh_process(None):.2f}", "s"))
    with tempfile.TemporaryDirectory() as cold:
        rows.append(("backtest: fresh process to first result (numba cache cold)",
                     f"{_fresh_process(cold):.2f}", "s"))
    other = _backtesting_py(big)
    if other is None:
        rows.append(("backtest: backtesting.py same rules", "not installed", ""))
    else:
        version, wall_b, cpu_b, trades = other
        rows.append((f"backtest: backtesting.py {version}, same rules, 1M candles",
                     *_rate(N, wall_b, cpu_b, f"; {trades} trades")))
        rows.append(("backtest: compiled driver vs backtesting.py (CPU time, OCO / no OCO)",
                     f"{cpu_b / cpu:.2f} / {cpu_b / cpu_n:.2f}", "x"))
    vectorised = _vectorbt(big)
    if vectorised is None:
        rows.append(("backtest: vectorbt same rules", "not installed", ""))
    else:
        version, wall_v, cpu_v, trades_v = vectorised
        rows.append((f"backtest: vectorbt {version} Portfolio.from_signals, same rules, "
                     "1M candles", *_rate(N, wall_v, cpu_v, f"; {trades_v} trades")))
        rows.append(("backtest: compiled driver vs vectorbt (CPU time, OCO / no OCO)",
                     f"{cpu_v / cpu:.2f} / {cpu_v / cpu_n:.2f}", "x"))
    return rows


if __name__ == "__main__":
    for row in run():
        print(" | ".join(row))
