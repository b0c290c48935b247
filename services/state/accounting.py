"""Positions, PnL and completed trades from fills, in ``Decimal``, FIFO from buys to sells.

Fees follow Binance's default commission: a BUY pays its fee in the base asset it receives
(the bot holds less than it bought), a SELL pays it in the quote asset it receives (the
proceeds are smaller). A fee in the quote asset on a BUY is added to the cost; a fee in the
base asset on a SELL takes that much more out of the position. A fee in a third asset (BNB)
cannot be priced here: it is kept on the fill and left out of the PnL.

A round trip starts when a flat position buys and ends when sells bring it back to flat;
it then becomes a ``CompletedTrade`` with its PnL, PnL % of cost and duration, as in the
original bot's order history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

ZERO = Decimal(0)
HUNDRED = Decimal(100)
RATIO_QUANTUM = Decimal("1e-8")
COST_QUANTUM = Decimal("1e-12")
"""Shares of a lot's cost are rounded to this, so sums of quote amounts stay exact."""


def to_decimal(value: Any, name: str = "value") -> Decimal:
    """Parse a decimal string, int or Decimal; floats are refused (they are not exact)."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, (str, int)) and not isinstance(value, bool):
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{name} must be a decimal number, got {value!r}") from None
    else:
        raise ValueError(f"{name} must be a decimal string, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"{name} must be finite, got {value!r}")
    return result


def fmt(value: Decimal | None) -> str | None:
    """A decimal as a plain string without exponent or trailing zeros ("0.1", "100")."""
    if value is None:
        return None
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def ratio(numerator: Decimal, denominator: Decimal) -> Decimal:
    """``numerator / denominator`` rounded to 1e-8, 0 when the denominator is 0 (for display)."""
    if denominator == 0:
        return ZERO
    return (numerator / denominator).quantize(RATIO_QUANTUM, rounding=ROUND_HALF_EVEN)


def split_symbol(symbol: str, asset: str) -> str:
    """Say whether ``asset`` is the ``"base"`` or ``"quote"`` of ``symbol``, else ``"other"``."""
    if asset and len(asset) < len(symbol):
        if symbol.endswith(asset):
            return "quote"
        if symbol.startswith(asset):
            return "base"
    return "other"


@dataclass(frozen=True)
class Fill:
    """One execution as accounting needs it: side, price, quantity and its fee."""

    side: str
    price: Decimal
    qty: Decimal
    fee: Decimal = ZERO
    fee_asset: str = ""
    ts_ms: int = 0


@dataclass
class Lot:
    """Base bought by one fill and not sold yet: ``cost`` is the quote paid for what is left."""

    qty: Decimal
    cost: Decimal
    price: Decimal
    opened_at_ms: int


@dataclass
class RoundTrip:
    """Running totals of the current round trip (first buy from flat until flat again)."""

    opened_at_ms: int
    buy_qty: Decimal = ZERO
    buy_quote: Decimal = ZERO
    sell_qty: Decimal = ZERO
    sell_quote: Decimal = ZERO
    cost: Decimal = ZERO
    proceeds: Decimal = ZERO
    fees_quote: Decimal = ZERO
    pnl: Decimal = ZERO


@dataclass(frozen=True)
class CompletedTrade:
    """A closed round trip with its performance."""

    symbol: str
    opened_at_ms: int
    closed_at_ms: int
    buy_qty: Decimal
    sell_qty: Decimal
    entry_price: Decimal
    exit_price: Decimal
    cost: Decimal
    proceeds: Decimal
    fees_quote: Decimal
    pnl: Decimal
    pnl_pct: Decimal

    @property
    def duration_s(self) -> float:
        return (self.closed_at_ms - self.opened_at_ms) / 1000

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "opened_at_ms": self.opened_at_ms,
            "closed_at_ms": self.closed_at_ms,
            "duration_s": self.duration_s,
            "buy_qty": fmt(self.buy_qty),
            "sell_qty": fmt(self.sell_qty),
            "entry_price": fmt(self.entry_price),
            "exit_price": fmt(self.exit_price),
            "cost": fmt(self.cost),
            "proceeds": fmt(self.proceeds),
            "fees_quote": fmt(self.fees_quote),
            "pnl": fmt(self.pnl),
            "pnl_pct": fmt(self.pnl_pct),
        }


@dataclass(frozen=True)
class FillEffect:
    """What one fill did: PnL realised by a sell, quantity it could not match, a closed trip."""

    realized_pnl: Decimal = ZERO
    matched_qty: Decimal = ZERO
    unmatched_qty: Decimal = ZERO
    trade: CompletedTrade | None = None


@dataclass
class Position:
    """A bot's holding of one symbol as FIFO lots, with cumulative realised PnL and fees.

    ``dust_notional`` (quote) lets a round trip close while a remainder too small to sell
    (after stepSize rounding) stays in the book; 0 means only an exactly flat position closes.
    """

    symbol: str
    lots: list[Lot] = field(default_factory=list)
    trip: RoundTrip | None = None
    realized_pnl: Decimal = ZERO
    fees_quote: Decimal = ZERO
    dust_notional: Decimal = ZERO

    @property
    def qty(self) -> Decimal:
        return sum((lot.qty for lot in self.lots), ZERO)

    @property
    def cost(self) -> Decimal:
        """Quote paid for the base still held, fees included."""
        return sum((lot.cost for lot in self.lots), ZERO)

    @property
    def avg_entry_price(self) -> Decimal:
        """Average fill price of the base still held."""
        return ratio(sum((lot.price * lot.qty for lot in self.lots), ZERO), self.qty)

    @property
    def break_even_price(self) -> Decimal:
        """Cost per unit held, fees included: the price at which selling breaks even."""
        return ratio(self.cost, self.qty)

    @property
    def opened_at_ms(self) -> int | None:
        return self.trip.opened_at_ms if self.trip else None

    def unrealized_pnl(self, mid_price: Decimal) -> Decimal:
        """What selling everything at ``mid_price`` would realise, before the exit fee."""
        return self.qty * mid_price - self.cost

    def apply(self, fill: Fill) -> FillEffect:
        """Book one fill; a SELL realises PnL against the oldest lots first."""
        if fill.qty <= 0 or fill.price <= 0:
            raise ValueError("a fill needs a positive price and quantity")
        if fill.side == "BUY":
            self._buy(fill)
            return FillEffect()
        if fill.side == "SELL":
            return self._sell(fill)
        raise ValueError(f"side must be BUY or SELL, got {fill.side!r}")

    def _fee_kind(self, fill: Fill) -> str:
        return split_symbol(self.symbol, fill.fee_asset) if fill.fee else "none"

    def _buy(self, fill: Fill) -> None:
        gross = fill.price * fill.qty
        qty, cost, fee_quote = fill.qty, gross, ZERO
        kind = self._fee_kind(fill)
        if kind == "base":
            qty -= fill.fee
            fee_quote = fill.fee * fill.price
        elif kind == "quote":
            cost += fill.fee
            fee_quote = fill.fee
        if self.trip is None:
            self.trip = RoundTrip(opened_at_ms=fill.ts_ms)
        if qty > 0:
            self.lots.append(Lot(qty=qty, cost=cost, price=fill.price, opened_at_ms=fill.ts_ms))
        self.trip.buy_qty += fill.qty
        self.trip.buy_quote += gross
        self.trip.fees_quote += fee_quote
        self.fees_quote += fee_quote

    def _sell(self, fill: Fill) -> FillEffect:
        gross = fill.price * fill.qty
        to_consume, proceeds, fee_quote = fill.qty, gross, ZERO
        kind = self._fee_kind(fill)
        if kind == "quote":
            proceeds -= fill.fee
            fee_quote = fill.fee
        elif kind == "base":
            to_consume += fill.fee
            fee_quote = fill.fee * fill.price
        matched, cost_matched = self._consume(to_consume)
        if matched < to_consume:
            # Sold base the bot never bought here: only the matched share has a cost basis.
            proceeds = (proceeds * matched / to_consume).quantize(COST_QUANTUM)
        pnl = proceeds - cost_matched
        self.realized_pnl += pnl
        self.fees_quote += fee_quote
        trade = None
        if self.trip is not None:
            self._add_sell_to_trip(fill, gross, proceeds, cost_matched, fee_quote, pnl)
            if self.qty * fill.price <= self.dust_notional:
                trade = self._close_trip(fill.ts_ms)
        return FillEffect(pnl, matched, to_consume - matched, trade)

    def _consume(self, qty: Decimal) -> tuple[Decimal, Decimal]:
        """Take ``qty`` from the oldest lots; return (quantity taken, its cost)."""
        taken, cost = ZERO, ZERO
        while qty > 0 and self.lots:
            lot = self.lots[0]
            if lot.qty <= qty:
                taken += lot.qty
                cost += lot.cost
                qty -= lot.qty
                self.lots.pop(0)
            else:
                part_cost = (lot.cost * qty / lot.qty).quantize(COST_QUANTUM)
                lot.cost -= part_cost
                lot.qty -= qty
                taken += qty
                cost += part_cost
                qty = ZERO
        return taken, cost

    def _add_sell_to_trip(self, fill, gross, proceeds, cost_matched, fee_quote, pnl) -> None:
        trip = self.trip
        trip.sell_qty += fill.qty
        trip.sell_quote += gross
        trip.cost += cost_matched
        trip.proceeds += proceeds
        trip.fees_quote += fee_quote
        trip.pnl += pnl

    def _close_trip(self, closed_at_ms: int) -> CompletedTrade:
        trip = self.trip
        self.trip = RoundTrip(opened_at_ms=closed_at_ms) if self.lots else None
        return CompletedTrade(
            symbol=self.symbol,
            opened_at_ms=trip.opened_at_ms,
            closed_at_ms=closed_at_ms,
            buy_qty=trip.buy_qty,
            sell_qty=trip.sell_qty,
            entry_price=ratio(trip.buy_quote, trip.buy_qty),
            exit_price=ratio(trip.sell_quote, trip.sell_qty),
            cost=trip.cost,
            proceeds=trip.proceeds,
            fees_quote=trip.fees_quote,
            pnl=trip.pnl,
            pnl_pct=ratio(trip.pnl * HUNDRED, trip.cost),
        )

    def to_dict(self, mid_price: Decimal | None = None) -> dict[str, Any]:
        """The position as a client shows it (decimals as strings)."""
        holding = self.qty > 0
        result = {
            "symbol": self.symbol,
            "qty": fmt(self.qty),
            "cost": fmt(self.cost),
            "avg_entry_price": fmt(self.avg_entry_price) if holding else None,
            "break_even_price": fmt(self.break_even_price) if holding else None,
            "opened_at_ms": self.opened_at_ms if holding else None,
            "realized_pnl": fmt(self.realized_pnl),
            "fees_quote": fmt(self.fees_quote),
        }
        if mid_price is not None:
            result["mid_price"] = fmt(mid_price)
            result["unrealized_pnl"] = fmt(self.unrealized_pnl(mid_price))
        return result

    def to_state(self) -> dict[str, Any]:
        """Everything needed to rebuild this position exactly (lots and the open trip)."""
        return {
            "lots": [
                [fmt(lot.qty), fmt(lot.cost), fmt(lot.price), lot.opened_at_ms]
                for lot in self.lots
            ],
            "trip": None if self.trip is None else _trip_to_state(self.trip),
            "realized_pnl": fmt(self.realized_pnl),
            "fees_quote": fmt(self.fees_quote),
        }

    @classmethod
    def from_state(
        cls, symbol: str, state: dict[str, Any], dust_notional: Decimal = ZERO
    ) -> Position:
        lots = [
            Lot(Decimal(qty), Decimal(cost), Decimal(price), int(opened))
            for qty, cost, price, opened in state["lots"]
        ]
        trip = None if state["trip"] is None else _trip_from_state(state["trip"])
        return cls(
            symbol=symbol,
            lots=lots,
            trip=trip,
            realized_pnl=Decimal(state["realized_pnl"]),
            fees_quote=Decimal(state["fees_quote"]),
            dust_notional=dust_notional,
        )


_TRIP_AMOUNTS = (
    "buy_qty", "buy_quote", "sell_qty", "sell_quote", "cost", "proceeds", "fees_quote", "pnl",
)


def _trip_to_state(trip: RoundTrip) -> dict[str, Any]:
    state: dict[str, Any] = {name: fmt(getattr(trip, name)) for name in _TRIP_AMOUNTS}
    state["opened_at_ms"] = trip.opened_at_ms
    return state


def _trip_from_state(state: dict[str, Any]) -> RoundTrip:
    amounts = {name: Decimal(state[name]) for name in _TRIP_AMOUNTS}
    return RoundTrip(opened_at_ms=int(state["opened_at_ms"]), **amounts)
