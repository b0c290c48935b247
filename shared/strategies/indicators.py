"""Incremental indicators, one closed candle at a time in O(1): EMA, RSI (Wilder), ATR (Wilder).

Each class reproduces pandas-ta's *pure-pandas* implementation (``talib=False``) exactly, seeding
included, so a bot warmed up on history and a backtest over the same candles compute the same
numbers as ``pandas_ta.ema/rsi/atr(..., talib=False)`` (equal to ~1e-12 relative; the tests use
1e-9). The choice is made once, here, in ``PANDAS_TA_TALIB``; tests and tools that cross-check
with pandas-ta pass ``talib=PANDAS_TA_TALIB``.

Why not TA-Lib's flavour: pandas-ta defaults to TA-Lib when it is installed, and the two differ
during warm-up, so the same code would give different signals on two machines. Seeding:

* **EMA(n)** (pandas-ta ``presma=True``, same as TA-Lib): the first value, at the n-th close, is
  the SMA of the first n closes; then ``ema = (1 - a) * ema + a * close`` with ``a = 2 / (n + 1)``.
* **RSI(n)** (pandas-ta: RMA of gains and of losses, ``ewm(alpha=1/n, adjust=False)``, with
  *no* SMA seed): the averages start at the first close-to-close change, so RSI exists from the
  2nd close (pandas-ta returns nothing at all for fewer than n + 1 closes). TA-Lib and Wilder's
  book seed both averages with the SMA of the first n changes instead and start at close n + 1.
* **ATR(n)** (pandas-ta ``presma=True``, ``mamode="rma"``): true range of the first candle is
  ``high - low`` (no previous close); the first ATR, at the n-th candle, is the SMA of the first
  n true ranges; then ``atr = (1 - 1/n) * atr + tr / n``. pandas-ta adds float epsilon
  (2.2e-16) to every ``high - low`` when any candle of the *whole* series has
  ``high == low``; that shifts ATR by at most 2.2e-16 absolute and is not reproduced.

Warm-up: the two seedings differ only through the seed, whose weight decays by ``(1 - a)`` per
candle. ``warmup_length`` returns the candles after which that weight is below ``SEED_TOL``
(1e-9): by then the pandas-ta and TA-Lib flavours (and any two start points in the history)
agree to ~1e-9 relative, so the choice cannot flip a signal unless a value sits within ~1e-7 of
its threshold. Defaults give EMA(21) 239, RSI(14) 295, ATR(14) 294 candles.
"""

from __future__ import annotations

import math
from collections import deque

PANDAS_TA_TALIB = False
"""The one place the TA-Lib choice is made: indicators follow pandas-ta with ``talib=False``."""

SEED_TOL = 1e-9
"""Residual weight of the seed below which warm-up is complete (see module docstring)."""


def decay_candles(alpha: float, tol: float = SEED_TOL) -> int:
    """Candles after which a seed's weight ``(1 - alpha) ** k`` falls below ``tol``."""
    if alpha >= 1.0:
        return 0
    return math.ceil(math.log(tol) / math.log(1.0 - alpha))


def _ewm_step(prev: float, x: float, alpha: float) -> float:
    """One ``ewm(adjust=False)`` step written as pandas writes it, to stay within an ulp of it."""
    old_wt = 1.0 - alpha
    return (old_wt * prev + alpha * x) / (old_wt + alpha)


class Ema:
    """Exponential moving average of closes; ``value`` is None until ``period`` closes are in."""

    def __init__(self, period: int) -> None:
        if period < 1:
            raise ValueError("EMA period must be >= 1")
        self.period = period
        self.alpha = 2.0 / (period + 1)
        self.count = 0
        self.value: float | None = None
        self._seed: list[float] = []

    @property
    def ready(self) -> bool:
        return self.value is not None

    def warmup_length(self) -> int:
        return self.period + decay_candles(self.alpha)

    def update(self, x: float) -> float | None:
        self.count += 1
        if self.value is None:
            self._seed.append(x)
            if len(self._seed) == self.period:
                self.value = math.fsum(self._seed) / self.period
                self._seed = []
            return self.value
        self.value = _ewm_step(self.value, x, self.alpha)
        return self.value


class Rsi:
    """Wilder's RSI as pandas-ta computes it: RMA of gains and losses seeded at the first change.

    ``value`` is None before the second close and while both averages are zero (pandas-ta gives
    NaN there); ``ready`` turns true at ``period + 1`` closes, where pandas-ta starts answering.
    """

    def __init__(self, period: int) -> None:
        if period < 1:
            raise ValueError("RSI period must be >= 1")
        self.period = period
        self.alpha = 1.0 / period
        self.count = 0
        self.avg_gain: float | None = None
        self.avg_loss: float | None = None
        self._prev_close: float | None = None

    @property
    def value(self) -> float | None:
        if self.avg_gain is None or self.avg_loss is None:
            return None
        total = self.avg_gain + self.avg_loss
        if total == 0.0:
            return None
        return 100.0 * self.avg_gain / total

    @property
    def ready(self) -> bool:
        return self.count > self.period and self.value is not None

    def warmup_length(self) -> int:
        return self.period + 1 + decay_candles(self.alpha)

    def update(self, close: float) -> float | None:
        self.count += 1
        prev, self._prev_close = self._prev_close, close
        if prev is None:
            return None
        change = close - prev
        gain = change if change > 0 else 0.0
        loss = -change if change < 0 else 0.0
        if self.avg_gain is None or self.avg_loss is None:
            self.avg_gain, self.avg_loss = gain, loss
        else:
            self.avg_gain = _ewm_step(self.avg_gain, gain, self.alpha)
            self.avg_loss = _ewm_step(self.avg_loss, loss, self.alpha)
        return self.value


class Atr:
    """Average true range, Wilder smoothing with an SMA seed (pandas-ta ``atr``, ``presma``)."""

    def __init__(self, period: int) -> None:
        if period < 1:
            raise ValueError("ATR period must be >= 1")
        self.period = period
        self.alpha = 1.0 / period
        self.count = 0
        self.value: float | None = None
        self._prev_close: float | None = None
        self._seed: list[float] = []

    @property
    def ready(self) -> bool:
        return self.value is not None

    def warmup_length(self) -> int:
        return self.period + decay_candles(self.alpha)

    def update(self, high: float, low: float, close: float) -> float | None:
        self.count += 1
        tr = high - low
        if self._prev_close is not None:
            tr = max(tr, abs(high - self._prev_close), abs(self._prev_close - low))
        self._prev_close = close
        if self.value is None:
            self._seed.append(tr)
            if len(self._seed) == self.period:
                self.value = math.fsum(self._seed) / self.period
                self._seed = []
            return self.value
        self.value = _ewm_step(self.value, tr, self.alpha)
        return self.value


class Sma:
    """Simple moving average over a fixed window (used for the volume average).

    A running sum keeps updates O(1); it is recomputed exactly with ``fsum`` once per window so
    rounding cannot drift over long runs.
    """

    def __init__(self, period: int) -> None:
        if period < 1:
            raise ValueError("SMA period must be >= 1")
        self.period = period
        self.count = 0
        self._window: deque[float] = deque(maxlen=period)
        self._sum = 0.0

    @property
    def value(self) -> float | None:
        if len(self._window) < self.period:
            return None
        return self._sum / self.period

    @property
    def ready(self) -> bool:
        return self.value is not None

    def warmup_length(self) -> int:
        return self.period

    def update(self, x: float) -> float | None:
        self.count += 1
        if len(self._window) == self.period:
            self._sum -= self._window[0]
        self._window.append(x)
        self._sum += x
        if self.count % self.period == 0:
            self._sum = math.fsum(self._window)
        return self.value
