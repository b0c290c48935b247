"""Risk rules and order sizing, checked before anything is sent to the exchange.

``RiskConfig`` is the configurable part (shown and changed through the execution API).
``RiskEngine.prepare`` turns an intent into a rounded order or raises ``RiskRejected`` /
``InvalidOrderError`` with a sentence a user can read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

from shared.errors import InvalidOrderError, RiskRejected, ValidationError
from shared.filters import ROUND_DOWN as FILTER_DOWN
from shared.filters import (
    ROUND_UP,
    FilterFailure,
    SymbolFilters,
    check_order,
    round_price,
    round_qty,
)

SIZING_MODES = ("fixed_quote", "percent_equity", "risk_per_trade")


class BalanceRejected(RiskRejected):
    """Refused for want of free balance: worth one fresh balance read before refusing."""

ORDER_TYPES = ("MARKET", "LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
ZERO = Decimal(0)


@dataclass(frozen=True)
class RiskConfig:
    """Limits and sizing; decimals in quote currency unless named otherwise."""

    sizing_mode: str = "fixed_quote"
    fixed_quote: Decimal = Decimal("100")
    percent_equity: Decimal = Decimal("5")  # % of equity per entry
    risk_per_trade_pct: Decimal = Decimal("1")  # % of equity lost if the stop is hit
    max_order_quote: Decimal = Decimal("1000")
    max_position_quote: Decimal = Decimal("2000")
    daily_loss_limit_quote: Decimal = Decimal("200")
    max_open_orders: int = 10
    fee_rate: Decimal = Decimal("0.001")
    stop_limit_slippage_pct: Decimal = Decimal("0.5")  # stop-limit price below the stop
    trailing_stop_pct: Decimal = ZERO  # 0 = no trailing
    limit_timeout_s: float = 0.0  # 0 = a LIMIT rests until filled or cancelled
    limit_reprice: bool = False  # on timeout, re-place at the touch instead of cancelling
    limit_time_in_force: str = "GTC"  # of entry LIMIT orders: GTC, IOC or FOK
    kill_switch: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Decimal) else value
        return out

    def updated(self, changes: dict[str, Any]) -> RiskConfig:
        """A copy with ``changes`` applied; every bad field is reported at once."""
        problems: dict[str, str] = {}
        values: dict[str, Any] = {}
        types = {f.name: f.type for f in dataclasses.fields(self)}
        for name, raw in changes.items():
            if name not in types:
                problems[name] = f"unknown setting; known: {', '.join(sorted(types))}"
                continue
            try:
                values[name] = _coerce(types[name], raw)
            except (ValueError, ArithmeticError, TypeError):
                problems[name] = f"expected {types[name]}, got {raw!r}"
        new = dataclasses.replace(self, **values) if not problems else self
        problems.update(new.problems() if not problems else {})
        if problems:
            raise ValidationError(problems, "bad risk settings")
        return new

    def problems(self) -> dict[str, str]:
        out = {}
        if self.sizing_mode not in SIZING_MODES:
            out["sizing_mode"] = f"one of {', '.join(SIZING_MODES)}"
        for name in ("fixed_quote", "percent_equity", "risk_per_trade_pct", "max_order_quote",
                     "max_position_quote", "daily_loss_limit_quote", "fee_rate",
                     "stop_limit_slippage_pct", "trailing_stop_pct"):
            if getattr(self, name) < 0:
                out[name] = "must be >= 0"
        if self.percent_equity > 100:
            out["percent_equity"] = "must be <= 100"
        if self.max_open_orders < 1:
            out["max_open_orders"] = "must be >= 1"
        if self.limit_time_in_force not in ("GTC", "IOC", "FOK"):
            out["limit_time_in_force"] = "one of GTC, IOC, FOK"
        if self.limit_timeout_s < 0:
            out["limit_timeout_s"] = "must be >= 0"
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RiskConfig:
        return cls().updated({k: v for k, v in data.items() if k in _FIELDS})


_FIELDS = {f.name for f in dataclasses.fields(RiskConfig)}


def _coerce(kind: Any, raw: Any) -> Any:
    kind = str(kind)
    if "Decimal" in kind:
        if isinstance(raw, bool):
            raise ValueError
        value = Decimal(str(raw))
        if not value.is_finite():
            raise ValueError
        return value
    if kind == "bool":
        if not isinstance(raw, bool):
            raise ValueError
        return raw
    if kind == "int":
        if isinstance(raw, bool) or int(raw) != float(raw):
            raise ValueError
        return int(raw)
    if kind == "float":
        if isinstance(raw, bool):
            raise ValueError
        return float(raw)
    if not isinstance(raw, str):
        raise ValueError
    return raw


@dataclass(frozen=True)
class Exposure:
    """What the account and the bot hold now, as the risk check needs it."""

    quote_free: Decimal
    base_free: Decimal
    position_qty: Decimal = ZERO
    open_orders: int = 0
    daily_realized_pnl: Decimal = ZERO
    equity_quote: Decimal = ZERO


@dataclass(frozen=True)
class PreparedOrder:
    """An intent after sizing and rounding: what will be sent."""

    side: str
    order_type: str
    quantity: Decimal | None
    quote_qty: Decimal | None
    price: Decimal | None
    stop_price: Decimal | None
    notional: Decimal
    time_in_force: str | None


def size_quantity(config: RiskConfig, price: Decimal, equity: Decimal,
                  stop_loss: Decimal | None) -> Decimal:
    """Base quantity for an entry at ``price`` under the configured sizing mode."""
    if price <= 0:
        raise RiskRejected("no price to size the order with")
    if config.sizing_mode == "fixed_quote":
        return config.fixed_quote / price
    if config.sizing_mode == "percent_equity":
        return equity * config.percent_equity / 100 / price
    if stop_loss is None or stop_loss >= price:
        raise RiskRejected("risk-per-trade sizing needs a stop loss below the entry price")
    risk_quote = equity * config.risk_per_trade_pct / 100
    return risk_quote / (price - stop_loss)


class RiskEngine:
    """Applies :class:`RiskConfig` to one intent at a time."""

    def __init__(self, config: RiskConfig | None = None) -> None:
        self.config = config or RiskConfig()

    def prepare(self, intent: Any, filters: SymbolFilters, ref_price: Decimal,
                exposure: Exposure, closing: bool = False) -> PreparedOrder:
        """Size, round and check ``intent`` (a SubmitIntent); raise with a readable reason."""
        cfg = self.config
        side, order_type = intent.side, intent.order_type
        if side not in ("BUY", "SELL"):
            raise ValidationError({"side": "BUY or SELL"}, "bad intent")
        if order_type not in ORDER_TYPES:
            raise ValidationError({"order_type": f"one of {', '.join(ORDER_TYPES)}"},
                                  "bad intent")
        if cfg.kill_switch and not closing:
            raise RiskRejected("the kill switch is on: no new orders")
        if exposure.open_orders >= cfg.max_open_orders and not closing:
            raise RiskRejected(f"too many open orders ({exposure.open_orders}, "
                               f"max {cfg.max_open_orders})")
        price, stop_price = self._prices(intent, filters)
        exec_price = price if price is not None else ref_price
        qty = self._quantity(intent, filters, exec_price, exposure, side)
        notional = qty * exec_price
        self._check_filters(filters, side, order_type, price, qty, stop_price, ref_price)
        if not closing:
            self._check_limits(side, notional, exec_price, exposure)
        self._check_balance(side, qty, notional, exposure, filters)
        tif = None if order_type == "MARKET" else "GTC"
        if order_type == "LIMIT":
            tif = cfg.limit_time_in_force
        return PreparedOrder(side, order_type, qty, None, price, stop_price, notional, tif)

    def _prices(self, intent: Any, filters: SymbolFilters
                ) -> tuple[Decimal | None, Decimal | None]:
        order_type = intent.order_type
        if order_type == "MARKET":
            return None, None
        if intent.price is None:
            raise ValidationError({"price": f"required for a {order_type} order"}, "bad intent")
        # a BUY never pays more than asked, a SELL never sells for less
        mode = FILTER_DOWN if intent.side == "BUY" else ROUND_UP
        price = round_price(intent.price, filters, mode)
        stop = None
        if order_type == "STOP_LOSS_LIMIT":
            stop = intent.stop_loss
        elif order_type == "TAKE_PROFIT_LIMIT":
            stop = intent.take_profit
        if order_type != "LIMIT":
            if stop is None:
                raise ValidationError({"stop_loss" if "STOP" in order_type else "take_profit":
                                       "the trigger price of this order"}, "bad intent")
            stop = round_price(stop, filters, mode)
        return price, stop

    def _quantity(self, intent: Any, filters: SymbolFilters, price: Decimal,
                  exposure: Exposure, side: str) -> Decimal:
        if intent.quantity is not None:
            raw = intent.quantity
        elif intent.quote_qty is not None:
            raw = intent.quote_qty / price
        elif side == "SELL":
            raw = exposure.position_qty
        else:
            raw = size_quantity(self.config, price, exposure.equity_quote, intent.stop_loss)
        if side == "SELL":
            # a long-only bot's SELL is an exit: never more than it holds and has not already
            # sold or put up for sale (its BUY fees were taken in base, so a strategy's gross
            # count is a little above what is there); the account is shared, so what is free
            # beyond that belongs to other bots
            if exposure.position_qty <= 0:
                raise BalanceRejected(f"bot {intent.bot_id} holds no {filters.base_asset} that"
                                      " is not already sold or on sale")
            raw = min(raw, exposure.base_free, exposure.position_qty)
        qty = round_qty(raw, filters, is_market=intent.order_type == "MARKET")
        if qty <= 0:
            error = BalanceRejected if side == "SELL" else RiskRejected
            raise error(f"the order size {raw} rounds to zero at step {filters.step_size}")
        return qty

    @staticmethod
    def _check_filters(filters: SymbolFilters, side: str, order_type: str,
                       price: Decimal | None, qty: Decimal, stop: Decimal | None,
                       ref_price: Decimal) -> None:
        try:
            check_order(filters, side, order_type, price, qty, stop_price=stop,
                        avg_price=ref_price)
        except FilterFailure as exc:
            raise InvalidOrderError(f"the order breaks the symbol's {exc.filter_type} rule "
                                    f"(qty {qty}, price {price or ref_price})",
                                    exc.code) from None

    def _check_limits(self, side: str, notional: Decimal, price: Decimal,
                      exposure: Exposure) -> None:
        cfg = self.config
        if side != "BUY":
            return
        if exposure.daily_realized_pnl <= -cfg.daily_loss_limit_quote:
            raise RiskRejected(f"daily loss limit reached ({exposure.daily_realized_pnl} ≤ "
                               f"-{cfg.daily_loss_limit_quote}): no new entries today")
        if notional > cfg.max_order_quote:
            raise RiskRejected(f"order value {notional:.2f} is above the maximum "
                               f"{cfg.max_order_quote}")
        position_value = exposure.position_qty * price
        if position_value + notional > cfg.max_position_quote:
            raise RiskRejected(f"position would be worth more than the maximum "
                               f"{cfg.max_position_quote}")

    def _check_balance(self, side: str, qty: Decimal, notional: Decimal,
                       exposure: Exposure, filters: SymbolFilters) -> None:
        if side == "BUY":
            needed = (notional * (1 + self.config.fee_rate)).quantize(Decimal("0.00000001"),
                                                                       rounding=ROUND_DOWN)
            if needed > exposure.quote_free:
                raise BalanceRejected(f"not enough {filters.quote_asset}: need {needed} with fees, "
                                   f"have {exposure.quote_free} free")
        elif qty > exposure.base_free:
            raise BalanceRejected(f"not enough {filters.base_asset}: need {qty}, "
                               f"have {exposure.base_free} free")
