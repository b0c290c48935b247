"""SWING: EMA fast/slow cross with an RSI filter, on closed candles (long only).

Entry: the fast EMA crosses above the slow EMA on a closed candle while
``rsi_oversold < RSI < rsi_overbought`` (optionally also close above a trend EMA and volume above
its average). Exit, checked on every closed candle in this order: stop-loss touched (candle low),
take-profit touched (candle high), the fast EMA crosses back below the slow one, or RSI at or
above ``rsi_overbought``. Stop-loss and take-profit are a percent of the entry price or a
multiple of ATR at the signal; an optional trailing stop follows the highest high since entry
and only ever moves up. The BUY intent carries the initial stop-loss and take-profit so
execution can also protect the position on the exchange.

Params carried over from the original bot: EMA_SHORT_PERIOD -> ``ema_fast``, EMA_LONG_PERIOD ->
``ema_slow``, EMA_FILTER_PERIOD / USE_EMA_FILTER, RSI_PERIOD, RSI_OVERBOUGHT, RSI_OVERSOLD,
VOLUME_AVG_PERIOD / USE_VOLUME_CONFIRMATION, STOP_LOSS_PERCENTAGE, TAKE_PROFIT_1_PERCENTAGE,
TRAILING_STOP_PERCENTAGE. Position sizing (RISK_PER_TRADE, CAPITAL_ALLOCATION) is execution's
job; this strategy only hints ``order_quote_amount``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from shared.params import ParamSchema, ParamSpec, Rule
from shared.strategies.base import (
    KLINE_INTERVALS_MS,
    SYMBOL_PATTERN,
    Candle,
    MarketInfo,
    OrderIntent,
    Position,
    Strategy,
    to_decimal,
)
from shared.strategies.indicators import Atr, Ema, Rsi, Sma

SWING_PARAMS = ParamSchema(
    [
        ParamSpec("symbol", "str", "BTCUSDT", "Binance Spot symbol traded.",
                  pattern=SYMBOL_PATTERN),
        ParamSpec("timeframe", "choice", "1m", "Kline interval the strategy reads.",
                  choices=tuple(KLINE_INTERVALS_MS)),
        ParamSpec("ema_fast", "int", 9, "Fast EMA period (was EMA_SHORT_PERIOD).",
                  min=2, max=200, unit="candles"),
        ParamSpec("ema_slow", "int", 21, "Slow EMA period (was EMA_LONG_PERIOD).",
                  min=3, max=200, unit="candles"),
        ParamSpec("use_ema_filter", "bool", False,
                  "Only buy when the close is above the trend EMA."),
        ParamSpec("ema_filter_period", "int", 50, "Trend EMA period (was EMA_FILTER_PERIOD).",
                  min=2, max=200, unit="candles"),
        ParamSpec("rsi_period", "int", 14, "RSI period (Wilder).", min=2, max=100,
                  unit="candles"),
        ParamSpec("rsi_overbought", "float", 70.0,
                  "No entry at or above this RSI; an open position exits when RSI reaches it.",
                  min=50.0, max=100.0),
        ParamSpec("rsi_oversold", "float", 30.0,
                  "No entry at or below this RSI (falling-knife guard); 0 disables.",
                  min=0.0, max=50.0),
        ParamSpec("use_volume_confirmation", "bool", False,
                  "Only buy when the candle's volume is above the average of the previous ones."),
        ParamSpec("volume_avg_period", "int", 20, "Candles in the volume average.",
                  min=2, max=500, unit="candles"),
        ParamSpec("sl_tp_mode", "choice", "percent",
                  "Stop-loss and take-profit as a percent of entry or as a multiple of ATR.",
                  choices=("percent", "atr")),
        ParamSpec("stop_loss_pct", "decimal", Decimal("0.5"),
                  "Stop-loss below entry, in percent (percent mode).",
                  min=Decimal("0.01"), max=Decimal("50"), unit="%"),
        ParamSpec("take_profit_pct", "decimal", Decimal("1.0"),
                  "Take-profit above entry, in percent (percent mode).",
                  min=Decimal("0.01"), max=Decimal("1000"), unit="%"),
        ParamSpec("atr_period", "int", 14, "ATR period (Wilder) for atr mode.",
                  min=2, max=100, unit="candles"),
        ParamSpec("stop_loss_atr", "decimal", Decimal("1.5"),
                  "Stop-loss below entry, in ATRs (atr mode).",
                  min=Decimal("0.1"), max=Decimal("50"), unit="x ATR"),
        ParamSpec("take_profit_atr", "decimal", Decimal("3.0"),
                  "Take-profit above entry, in ATRs (atr mode).",
                  min=Decimal("0.1"), max=Decimal("100"), unit="x ATR"),
        ParamSpec("trailing_stop", "bool", False,
                  "Trail the stop below the highest high since entry; it only moves up."),
        ParamSpec("trailing_stop_pct", "decimal", Decimal("0.3"),
                  "Trailing distance below the highest high, in percent.",
                  min=Decimal("0.01"), max=Decimal("50"), unit="%"),
        ParamSpec("order_quote_amount", "decimal", Decimal("20"),
                  "Quote amount to spend per entry (a hint; execution sizes and risk-checks).",
                  min=Decimal("0.00000001"), unit="quote asset"),
    ],
    rules=[
        Rule("ema_fast", "<", "ema_slow", "must be less than ema_slow"),
        Rule("rsi_oversold", "<", "rsi_overbought", "must be less than rsi_overbought"),
    ],
)


class SwingStrategy(Strategy):
    """EMA cross + RSI filter on closed candles, with percent/ATR stops and a trailing stop."""

    name = "SWING"
    params_schema = SWING_PARAMS
    needs = frozenset({"kline"})

    def __init__(
        self, bot_id: str, params: Mapping[str, Any], market: MarketInfo | None = None
    ) -> None:
        super().__init__(bot_id, params, market)
        p = self.params
        self.timeframe: str = p["timeframe"]
        self._interval_ms = KLINE_INTERVALS_MS[self.timeframe]
        self._ema_fast = Ema(p["ema_fast"])
        self._ema_slow = Ema(p["ema_slow"])
        self._rsi = Rsi(p["rsi_period"])
        self._atr = Atr(p["atr_period"]) if p["sl_tp_mode"] == "atr" else None
        self._ema_filter = Ema(p["ema_filter_period"]) if p["use_ema_filter"] else None
        self._volume_avg = Sma(p["volume_avg_period"]) if p["use_volume_confirmation"] else None
        self._candles_seen = 0
        self._last_open_ms: int | None = None
        self._diff: float | None = None  # fast EMA - slow EMA at the last closed candle
        self._signal_atr: float | None = None
        self._base_stop: float | None = None
        self._trail_stop: float | None = None
        self._take_profit: float | None = None
        self._high_water: float | None = None

    # -- interface ---------------------------------------------------------------------------

    def warmup_candles(self) -> int:
        """Candles until every indicator in use forgets its seed (see ``indicators``), plus one
        so the first live candle has a previous EMA difference to detect a cross against.
        296 with the defaults (RSI 14 needs 295)."""
        used = [self._ema_fast, self._ema_slow, self._rsi, self._atr, self._ema_filter,
                self._volume_avg]
        return 1 + max(ind.warmup_length() for ind in used if ind is not None)

    @property
    def ready(self) -> bool:
        return self._candles_seen >= self.warmup_candles()

    @property
    def stop_price(self) -> float | None:
        """The stop in force: the higher of the initial stop and the trailing stop."""
        stops = [s for s in (self._base_stop, self._trail_stop) if s is not None]
        return max(stops) if stops else None

    @property
    def take_profit_price(self) -> float | None:
        return self._take_profit

    def on_candle(self, candle: Candle) -> list[OrderIntent]:
        if not candle.closed:
            return []
        if self._last_open_ms is not None and candle.open_time_ms <= self._last_open_ms:
            return []  # a candle already seen (replay or duplicate) changes nothing
        self._last_open_ms = candle.open_time_ms
        self._candles_seen += 1
        prev_diff = self._diff
        volume_avg_before = self._volume_avg.value if self._volume_avg is not None else None
        self._update_indicators(candle)
        if not self.ready:
            return []
        if self.position.is_open:
            return self._manage_position(candle, prev_diff)
        if self._pending_side(candle.open_time_ms, self._pending_timeout_ms()) is not None:
            return []
        return self._maybe_enter(candle, prev_diff, volume_avg_before)

    def snapshot(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "candles_seen": self._candles_seen,
            "ema_fast": self._ema_fast.value,
            "ema_slow": self._ema_slow.value,
            "rsi": self._rsi.value,
            "atr": self._atr.value if self._atr is not None else None,
            "stop_loss": self.stop_price,
            "take_profit": self._take_profit,
        }

    # -- indicators and signals --------------------------------------------------------------

    def _update_indicators(self, candle: Candle) -> None:
        fast = self._ema_fast.update(candle.close)
        slow = self._ema_slow.update(candle.close)
        self._rsi.update(candle.close)
        if self._atr is not None:
            self._atr.update(candle.high, candle.low, candle.close)
        if self._ema_filter is not None:
            self._ema_filter.update(candle.close)
        if self._volume_avg is not None:
            self._volume_avg.update(candle.volume)
        self._diff = fast - slow if fast is not None and slow is not None else None

    def _pending_timeout_ms(self) -> int:
        """An unanswered intent stops blocking after one candle (at least a minute)."""
        return max(self._interval_ms, 60_000)

    def _maybe_enter(
        self, candle: Candle, prev_diff: float | None, volume_avg_before: float | None
    ) -> list[OrderIntent]:
        p = self.params
        rsi = self._rsi.value
        diff = self._diff
        crossed_up = prev_diff is not None and diff is not None and prev_diff <= 0 < diff
        if not crossed_up or rsi is None:
            return []
        if not p["rsi_oversold"] < rsi < p["rsi_overbought"]:
            return []
        if not self._filters_pass(candle, volume_avg_before):
            return []
        self._signal_atr = self._atr.value if self._atr is not None else None
        stop_loss, take_profit = self._initial_levels(candle.close, self._signal_atr)
        reason = (
            f"ema_cross_up: EMA{p['ema_fast']} crossed above EMA{p['ema_slow']}, "
            f"RSI {rsi:.1f} < {p['rsi_overbought']:g}"
        )
        return [
            self._intent(
                "BUY", "MARKET", candle.open_time_ms,
                quote_amount=p["order_quote_amount"],
                stop_loss=to_decimal(stop_loss),
                take_profit=to_decimal(take_profit),
                reason=reason,
            )
        ]

    def _filters_pass(self, candle: Candle, volume_avg_before: float | None) -> bool:
        """The optional trend filter (close above its EMA) and volume confirmation."""
        if self._ema_filter is not None:
            trend = self._ema_filter.value
            if trend is None or not candle.close > trend:
                return False
        if self._volume_avg is not None:
            return volume_avg_before is not None and candle.volume > volume_avg_before
        return True

    def _initial_levels(self, entry: float, atr: float | None) -> tuple[float, float]:
        """Stop-loss and take-profit for an entry at ``entry`` (percent or ATR mode)."""
        p = self.params
        if p["sl_tp_mode"] == "atr" and atr is not None:
            return (entry - float(p["stop_loss_atr"]) * atr,
                    entry + float(p["take_profit_atr"]) * atr)
        return (entry * (1.0 - float(p["stop_loss_pct"]) / 100.0),
                entry * (1.0 + float(p["take_profit_pct"]) / 100.0))

    # -- the open position -------------------------------------------------------------------

    def _position_changed(self, old: Position, new: Position) -> None:
        if not new.is_open:
            self._base_stop = self._trail_stop = self._take_profit = self._high_water = None
            self._signal_atr = None
            return
        entry = float(new.entry_price)  # type: ignore[arg-type]  # is_open implies a price
        atr = self._signal_atr
        if atr is None and self._atr is not None:
            atr = self._atr.value
        self._base_stop, self._take_profit = self._initial_levels(entry, atr)
        self._high_water = max(self._high_water or entry, entry)
        self._raise_trailing_stop()

    def _raise_trailing_stop(self) -> None:
        if not self.params["trailing_stop"] or self._high_water is None:
            return
        trail = self._high_water * (1.0 - float(self.params["trailing_stop_pct"]) / 100.0)
        if self._trail_stop is None or trail > self._trail_stop:
            self._trail_stop = trail

    def _manage_position(self, candle: Candle, prev_diff: float | None) -> list[OrderIntent]:
        reason = self._exit_reason(candle, prev_diff)
        intents: list[OrderIntent] = []
        if reason and self._pending_side(candle.open_time_ms, self._pending_timeout_ms()) is None:
            intents.append(self._exit(candle.open_time_ms, reason))
        # The stop for the next candle follows this candle's high; checked above before moving.
        self._high_water = max(self._high_water or candle.high, candle.high)
        self._raise_trailing_stop()
        return intents

    def _exit_reason(self, candle: Candle, prev_diff: float | None) -> str | None:
        p = self.params
        stop = self.stop_price
        if stop is not None and candle.low <= stop:
            trailing = self._trail_stop is not None and self._trail_stop >= (
                self._base_stop or float("-inf")
            )
            return f"{'trailing_stop' if trailing else 'stop_loss'}: low reached {stop:.8g}"
        if self._take_profit is not None and candle.high >= self._take_profit:
            return f"take_profit: high reached {self._take_profit:.8g}"
        diff = self._diff
        if prev_diff is not None and diff is not None and prev_diff >= 0 > diff:
            return f"ema_cross_down: EMA{p['ema_fast']} crossed below EMA{p['ema_slow']}"
        rsi = self._rsi.value
        if rsi is not None and rsi >= p["rsi_overbought"]:
            return f"rsi_overbought: RSI {rsi:.1f} >= {p['rsi_overbought']:g}"
        return None
