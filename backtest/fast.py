"""The compiled driver: SWING's per-candle logic in numba, fills still by ``shared.matching``.

The loop over candles (indicators, entry and exit decisions, trailing stop) runs in one numba
kernel that is a line-by-line copy of ``shared/strategies/swing.py`` and ``indicators.py``
(same float operations in the same order; ``math.fsum`` seeds ported from CPython). The kernel
stops and hands over to Python only where the engine must act: an intent (executed at the next
open by the very ``Broker`` of ``backtest.engine``) or a candle that may touch a protective order
(``engine.may_touch``, the same expression). Fills come back through the same callbacks that
feed the strategy object in the pure driver. ``tests/backtest`` checks that both drivers give
identical fills on the shipped real data, for several parameter sets.

numba's cache goes to ``$NUMBA_CACHE_DIR``, by default ``DATA_DIR/cache/numba`` (``var/...``),
kept between runs, so only the first run on a machine compiles (a few seconds).
"""

from __future__ import annotations

import math
import os
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
from tqdm import tqdm

from backtest.engine import Backtest, BacktestConfig, BacktestResult, Broker
from backtest.history import CandleArrays
from shared.strategies.base import Fill, OrderIntent, Position

_ROOT = Path(__file__).resolve().parents[1]
_CACHE = _ROOT / os.environ.get("DATA_DIR", "var") / "cache" / "numba"  # absolute DATA_DIR wins
os.environ.setdefault("NUMBA_CACHE_DIR", str(_CACHE))

import numba  # noqa: E402  (the cache directory must be set first)

if not numba.config.CACHE_DIR:
    numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]

NAN = math.nan

# state slots
EMA_F, EMA_S, EMA_T, RSI_G, RSI_L, RSI_PREV, ATR, ATR_PREV, SMA_SUM, DIFF, SEEN = range(11)
POS_OPEN, BASE_STOP, TRAIL_STOP, TAKE, HIGH_WATER, SIGNAL_ATR = range(11, 17)
OCO_STOP, OCO_TAKE, WANT_STOP, WANT_TAKE, WATCH = range(17, 22)
OUT_A, OUT_B, OUT_RSI, OUT_REASON = range(22, 26)
N_STATE = 26

# params slots
(P_FAST, P_SLOW, P_TREND_ON, P_TREND, P_RSI, P_OB, P_OS, P_VOL_ON, P_VOL, P_ATR_MODE, P_SL_PCT,
 P_TP_PCT, P_ATR, P_SL_ATR, P_TP_ATR, P_TRAIL_ON, P_TRAIL_PCT, P_WARMUP, P_OCO, P_TICK) = range(20)

DONE, BUY, SELL, NEED_OPEN = 0, 1, 2, 3
R_STOP, R_TRAIL, R_TAKE, R_CROSS, R_RSI = 1, 2, 3, 4, 5


def supports(config: BacktestConfig) -> bool:
    """Whether the compiled driver has a copy of ``config``'s strategy (SWING only, so far)."""
    return config.strategy == "SWING"


@numba.njit(cache=True)
def _fsum(a, lo, hi):  # pragma: no cover - compiled; CPython's math_fsum for finite input
    p = np.empty(256)
    n = 0
    for idx in range(lo, hi):
        x = a[idx]
        i = 0
        for j in range(n):
            y = p[j]
            if abs(x) < abs(y):
                x, y = y, x
            s = x + y
            yr = s - x
            lo_ = y - yr
            if lo_ != 0.0:
                p[i] = lo_
                i += 1
            x = s
        n = i
        if x != 0.0:
            p[n] = x
            n += 1
    s = 0.0
    if n > 0:
        n -= 1
        s = p[n]
        lo_ = 0.0
        while n > 0:
            x = s
            n -= 1
            y = p[n]
            s = x + y
            yr = s - x
            lo_ = y - yr
            if lo_ != 0.0:
                break
        if n > 0 and ((lo_ < 0.0 and p[n - 1] < 0.0) or (lo_ > 0.0 and p[n - 1] > 0.0)):
            y = lo_ * 2.0
            x = s + y
            yr = x - s
            if y == yr:
                s = x
    return s


@numba.njit(cache=True)
def _ewm(prev, x, alpha):  # pragma: no cover - compiled; indicators._ewm_step
    old_wt = 1.0 - alpha
    return (old_wt * prev + alpha * x) / (old_wt + alpha)


@numba.njit(cache=True)
def _ema(st, slot, period, c, k):  # pragma: no cover - compiled; indicators.Ema.update
    count = k + 1
    if math.isnan(st[slot]):
        if count == period:
            st[slot] = _fsum(c, 0, period) / period
        return
    st[slot] = _ewm(st[slot], c[k], 2.0 / (period + 1))


@numba.njit(cache=True)
def _tr(h, lo, c, k):  # pragma: no cover - compiled
    tr = h[k] - lo[k]
    if k > 0:
        prev = c[k - 1]
        tr = max(tr, abs(h[k] - prev), abs(prev - lo[k]))
    return tr


@numba.njit(cache=True)
def _indicators(st, pr, h, lo, c, v, k):  # pragma: no cover - compiled
    _ema(st, EMA_F, int(pr[P_FAST]), c, k)
    _ema(st, EMA_S, int(pr[P_SLOW]), c, k)
    # RSI (pandas-ta flavour: averages start at the first change)
    if k > 0:
        change = c[k] - c[k - 1]
        gain = change if change > 0 else 0.0
        loss = -change if change < 0 else 0.0
        if math.isnan(st[RSI_G]):
            st[RSI_G], st[RSI_L] = gain, loss
        else:
            alpha = 1.0 / pr[P_RSI]
            st[RSI_G] = _ewm(st[RSI_G], gain, alpha)
            st[RSI_L] = _ewm(st[RSI_L], loss, alpha)
    if pr[P_ATR_MODE] > 0:
        period = int(pr[P_ATR])
        if math.isnan(st[ATR]):
            if k + 1 == period:
                trs = np.empty(period)
                for j in range(period):
                    trs[j] = _tr(h, lo, c, j)
                st[ATR] = _fsum(trs, 0, period) / period
        else:
            st[ATR] = _ewm(st[ATR], _tr(h, lo, c, k), 1.0 / period)
    if pr[P_TREND_ON] > 0:
        _ema(st, EMA_T, int(pr[P_TREND]), c, k)
    if pr[P_VOL_ON] > 0:
        period = int(pr[P_VOL])
        count = k + 1
        if count > period:
            st[SMA_SUM] -= v[k - period]
        st[SMA_SUM] += v[k]
        if count % period == 0:
            st[SMA_SUM] = _fsum(v, max(0, k + 1 - period), k + 1)
    if math.isnan(st[EMA_F]) or math.isnan(st[EMA_S]):
        st[DIFF] = np.nan
    else:
        st[DIFF] = st[EMA_F] - st[EMA_S]


@numba.njit(cache=True)
def _rsi(st):  # pragma: no cover - compiled
    g, lo_ = st[RSI_G], st[RSI_L]
    if math.isnan(g) or g + lo_ == 0.0:
        return np.nan
    return 100.0 * g / (g + lo_)


@numba.njit(cache=True)
def _stop_price(st):  # pragma: no cover - compiled
    a, b = st[BASE_STOP], st[TRAIL_STOP]
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return max(a, b)


@numba.njit(cache=True)
def _levels(pr, entry, atr):  # pragma: no cover - compiled; SwingStrategy._initial_levels
    if pr[P_ATR_MODE] > 0 and not math.isnan(atr):
        return entry - pr[P_SL_ATR] * atr, entry + pr[P_TP_ATR] * atr
    return entry * (1.0 - pr[P_SL_PCT] / 100.0), entry * (1.0 + pr[P_TP_PCT] / 100.0)


@numba.njit(cache=True)
def _raise_trail(st, pr):  # pragma: no cover - compiled
    if pr[P_TRAIL_ON] == 0 or math.isnan(st[HIGH_WATER]):
        return
    trail = st[HIGH_WATER] * (1.0 - pr[P_TRAIL_PCT] / 100.0)
    if math.isnan(st[TRAIL_STOP]) or trail > st[TRAIL_STOP]:
        st[TRAIL_STOP] = trail


@numba.njit(cache=True)
def _enter(st, pr, c, v, k, prev_diff, vol_before):  # pragma: no cover - compiled
    rsi, diff = _rsi(st), st[DIFF]
    if math.isnan(prev_diff) or math.isnan(diff) or not (prev_diff <= 0 < diff):
        return False
    if math.isnan(rsi) or not (pr[P_OS] < rsi < pr[P_OB]):
        return False
    if pr[P_TREND_ON] > 0 and (math.isnan(st[EMA_T]) or not c[k] > st[EMA_T]):
        return False
    if pr[P_VOL_ON] > 0 and (math.isnan(vol_before) or not v[k] > vol_before):
        return False
    st[SIGNAL_ATR] = st[ATR] if pr[P_ATR_MODE] > 0 else np.nan
    st[OUT_A], st[OUT_B] = _levels(pr, c[k], st[SIGNAL_ATR])
    st[OUT_RSI] = rsi
    return True


@numba.njit(cache=True)
def _exit_reason(st, pr, h, lo, k, prev_diff):  # pragma: no cover - compiled
    stop = _stop_price(st)
    if not math.isnan(stop) and lo[k] <= stop:
        st[OUT_A] = stop
        trailing = not math.isnan(st[TRAIL_STOP]) and (
            math.isnan(st[BASE_STOP]) or st[TRAIL_STOP] >= st[BASE_STOP])
        return R_TRAIL if trailing else R_STOP
    if not math.isnan(st[TAKE]) and h[k] >= st[TAKE]:
        st[OUT_A] = st[TAKE]
        return R_TAKE
    diff = st[DIFF]
    if not math.isnan(prev_diff) and not math.isnan(diff) and prev_diff >= 0 > diff:
        return R_CROSS
    rsi = _rsi(st)
    if not math.isnan(rsi) and rsi >= pr[P_OB]:
        st[OUT_RSI] = rsi
        return R_RSI
    return 0


@numba.njit(cache=True)
def _close(st, pr, h, lo, c, v, k, trade_start):  # pragma: no cover - compiled
    """SwingStrategy.on_candle for candle k; returns BUY, SELL or DONE (no intent)."""
    st[SEEN] += 1
    prev_diff = st[DIFF]
    period = int(pr[P_VOL])
    vol_before = st[SMA_SUM] / period if pr[P_VOL_ON] > 0 and k >= period else np.nan
    _indicators(st, pr, h, lo, c, v, k)
    if st[SEEN] < pr[P_WARMUP] or k < trade_start:
        return DONE
    code = DONE
    if st[POS_OPEN] > 0:
        reason = _exit_reason(st, pr, h, lo, k, prev_diff)
        if reason > 0:
            st[OUT_REASON] = reason
            code = SELL
        hw = st[HIGH_WATER]
        st[HIGH_WATER] = h[k] if math.isnan(hw) else max(hw, h[k])
        _raise_trail(st, pr)
        if pr[P_OCO] > 0 and pr[P_TRAIL_ON] > 0:
            stop = _stop_price(st)
            if not math.isnan(stop) and not math.isnan(st[TAKE]):
                st[WANT_STOP], st[WANT_TAKE] = stop, st[TAKE]
    elif _enter(st, pr, c, v, k, prev_diff, vol_before):
        code = BUY
    return code


@numba.njit(cache=True)
def _needs_open(st, pr, lo, h, c, o, k):  # pragma: no cover - compiled; engine.may_touch
    if st[WATCH] > 0:
        return True
    has_oco, has_want = not math.isnan(st[OCO_STOP]), not math.isnan(st[WANT_STOP])
    if not has_oco and not has_want:
        return False
    if has_oco and has_want:
        stop, take = max(st[OCO_STOP], st[WANT_STOP]), min(st[OCO_TAKE], st[WANT_TAKE])
    elif has_oco:
        stop, take = st[OCO_STOP], st[OCO_TAKE]
    else:
        stop, take = st[WANT_STOP], st[WANT_TAKE]
    prev = c[k - 1] if k > 0 else o[k]
    margin = 2 * pr[P_TICK]
    low, high = min(lo[k], prev), max(h[k], prev)
    return low - margin <= stop or high + margin >= take


@numba.njit(cache=True)
def scan(st, pr, o, h, lo, c, v, start, check_first, trade_start):  # pragma: no cover
    """Run candles from ``start`` until one needs Python: (index, BUY | SELL | NEED_OPEN)."""
    n = len(c)
    for k in range(start, n):
        if (k > start or check_first) and _needs_open(st, pr, lo, h, c, o, k):
            return k, NEED_OPEN
        code = _close(st, pr, h, lo, c, v, k, trade_start)
        if code != DONE:
            return k, code
    return n, DONE


# --------------------------------------------------------------------------- the Python side


def _params_array(config: BacktestConfig, warmup: int, tick: Decimal) -> np.ndarray:
    p = config.strategy_params()
    return np.array([
        p["ema_fast"], p["ema_slow"], float(p["use_ema_filter"]), p["ema_filter_period"],
        p["rsi_period"], p["rsi_overbought"], p["rsi_oversold"],
        float(p["use_volume_confirmation"]), p["volume_avg_period"],
        float(p["sl_tp_mode"] == "atr"), float(p["stop_loss_pct"]), float(p["take_profit_pct"]),
        p["atr_period"], float(p["stop_loss_atr"]), float(p["take_profit_atr"]),
        float(p["trailing_stop"]), float(p["trailing_stop_pct"]), warmup,
        float(config.protective == "oco"), float(tick),
    ], dtype=np.float64)


class _KernelStrategy:
    """Receives the broker's fills like the strategy object would; keeps the kernel's state.

    The strategy's position after a fill is the broker's (``Broker._record`` applies the same
    fill just before calling ``on_fill``), so it is read from there rather than recomputed."""

    def __init__(self, st: np.ndarray, pr: np.ndarray, broker: Broker) -> None:
        self.st, self.pr, self.broker = st, pr, broker
        self.position = Position()

    def on_fill(self, fill: Fill) -> list:
        self._set(self.broker.position)
        return []

    def on_position(self, position: Position) -> list:
        self._set(position)
        return []

    def _set(self, new: Position) -> None:
        """SwingStrategy._position_changed, on the kernel's state (plain floats: the same IEEE
        operations as the kernel's ``_levels`` and ``_raise_trail``)."""
        st, pr = self.st, self.pr
        self.position = new
        if not new.is_open:
            st[POS_OPEN] = 0.0
            for slot in (BASE_STOP, TRAIL_STOP, TAKE, HIGH_WATER, SIGNAL_ATR):
                st[slot] = NAN
            return
        st[POS_OPEN] = 1.0
        entry = float(new.entry_price)  # type: ignore[arg-type]
        atr = float(st[SIGNAL_ATR])
        if math.isnan(atr) and pr[P_ATR_MODE] > 0:
            atr = float(st[ATR])
        if pr[P_ATR_MODE] > 0 and not math.isnan(atr):
            stop = entry - float(pr[P_SL_ATR]) * atr
            take = entry + float(pr[P_TP_ATR]) * atr
        else:
            stop = entry * (1.0 - float(pr[P_SL_PCT]) / 100.0)
            take = entry * (1.0 + float(pr[P_TP_PCT]) / 100.0)
        st[BASE_STOP], st[TAKE] = stop, take
        hw = float(st[HIGH_WATER])
        hw = max(entry if math.isnan(hw) or not hw else hw, entry)
        st[HIGH_WATER] = hw
        if pr[P_TRAIL_ON] > 0:
            trail = hw * (1.0 - float(pr[P_TRAIL_PCT]) / 100.0)
            old = float(st[TRAIL_STOP])
            if math.isnan(old) or trail > old:
                st[TRAIL_STOP] = trail


def _sync_to_broker(bt: Backtest, st: np.ndarray) -> None:
    """The levels the kernel's strategy wants, as ``Backtest.step`` hands them over."""
    if not math.isnan(st[WANT_STOP]):
        want = (float(st[WANT_STOP]), float(st[WANT_TAKE]))
        if want != bt.broker.wanted_raw:
            bt.broker.want_levels(*want)


def _sync_from_broker(bt: Backtest, st: np.ndarray) -> None:
    b = bt.broker
    st[OCO_STOP], st[OCO_TAKE] = b.oco_raw if b.oco_raw is not None else (NAN, NAN)
    st[WANT_STOP], st[WANT_TAKE] = b.wanted_raw if b.wanted_raw is not None else (NAN, NAN)
    st[WATCH] = 1.0 if b.watch_always else 0.0


def _intent(bt: Backtest, st: np.ndarray, code: int, k: int) -> OrderIntent:
    p = bt.strategy.params
    ts = int(bt.candles.open_time_ms[k])
    iid = f"{bt.config.bot_id}-{ts}-0"
    if code == BUY:
        reason = (f"ema_cross_up: EMA{p['ema_fast']} crossed above EMA{p['ema_slow']}, "
                  f"RSI {st[OUT_RSI]:.1f} < {p['rsi_overbought']:g}")
        return OrderIntent(iid, bt.config.bot_id, bt.config.symbol, "BUY", "MARKET", ts,
                           quote_amount=p["order_quote_amount"],
                           stop_loss=Decimal(repr(float(st[OUT_A]))),
                           take_profit=Decimal(repr(float(st[OUT_B]))), reason=reason)
    why = int(st[OUT_REASON])
    if why in (R_STOP, R_TRAIL):
        reason = (f"{'trailing_stop' if why == R_TRAIL else 'stop_loss'}: "
                  f"low reached {st[OUT_A]:.8g}")
    elif why == R_TAKE:
        reason = f"take_profit: high reached {st[OUT_A]:.8g}"
    elif why == R_CROSS:
        reason = f"ema_cross_down: EMA{p['ema_fast']} crossed below EMA{p['ema_slow']}"
    else:
        reason = f"rsi_overbought: RSI {st[OUT_RSI]:.1f} >= {p['rsi_overbought']:g}"
    return OrderIntent(iid, bt.config.bot_id, bt.config.symbol, "SELL", "MARKET", ts,
                       base_qty=bt.broker.position.base_qty, reason=reason)


def _strictly_increasing(times: np.ndarray) -> bool:
    return bool(len(times) < 2 or np.all(np.diff(times) > 0))


def run(config: BacktestConfig, candles: CandleArrays, progress: bool = False) -> BacktestResult:
    """The compiled SWING over ``candles``: the same fills as ``Backtest(...).run()``."""
    if not supports(config) or not _strictly_increasing(candles.open_time_ms):
        return Backtest(config, candles).run(progress=progress)
    started = time.perf_counter()
    bt = Backtest(config, candles)
    st = np.full(N_STATE, NAN)
    st[SEEN] = st[SMA_SUM] = st[POS_OPEN] = st[WATCH] = 0.0
    pr = _params_array(config, bt.warmup, bt.filters.tick_size)
    kernel = _KernelStrategy(st, pr, bt.broker)
    bt.broker.listen(kernel.on_fill, kernel.on_position)
    cols = [np.ascontiguousarray(a, dtype=np.float64) for a in
            (candles.open, candles.high, candles.low, candles.close, candles.volume)]
    o, h, lo, c, v = cols
    n = len(candles)
    i, check = 0, False
    bar = tqdm(total=n, disable=not progress, unit="candle", mininterval=0.5, desc="backtest")
    while i < n:
        k, code = scan(st, pr, o, h, lo, c, v, i, check, bt.warmup)
        bar.update(k - bar.n)
        if code == DONE:
            break
        if code == NEED_OPEN:
            _sync_to_broker(bt, st)
            bt.broker.open_candle(k)
            _sync_from_broker(bt, st)
            i, check = k, False
            continue
        bt.broker.queue([_intent(bt, st, code, k)])
        i, check = k + 1, False
        if i < n:
            _sync_to_broker(bt, st)
            bt.broker.open_candle(i)
            _sync_from_broker(bt, st)
    bar.close()
    return bt.result(time.perf_counter() - started, "fast")
