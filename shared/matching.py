"""Binance Spot fill model shared by the exchange simulator, paper trading and the backtester.

Pure and single-threaded: no I/O, no threads, no sockets. The caller owns the lock (if any),
feeds the market (``set_book``, ``on_trade``) and places/cancels orders for accounts. Every
operation returns the ``ExecutionEvent`` s it caused; all user-data events (executionReport,
listStatus, outboundAccountPosition, balanceUpdate) are also queued in order and handed over
by ``MatchingEngine.drain_events()``, each tagged with the account it belongs to (unless the
engine is made with ``user_data_stream=False``, as the backtester makes it: it reads only what
each call returns, and every fill costs less when no stream is built).

Model choices:
- User orders match only against the market book fed by ``set_book`` (external liquidity);
  they never match each other, so self-trade prevention never applies.
- A taker (MARKET or marketable LIMIT) walks the book, one fill per level at that level's
  price, and consumes the quantity it took until the next ``set_book``.
- A resting order fills as maker, at its own price, when a market trade prints strictly
  through its price (fill qty = min(remaining, trade qty), shared by the orders on that
  side in price-time priority), or when a new book crosses it (fill qty limited by the
  crossing levels' quantity).
- Stops trigger on the last trade price; once triggered they behave as LIMIT orders.
- Commission is charged on the asset received (BUY: base, SELL: quote), rounded half-up to
  8 decimals, and credited to the venue (``Ledger.VENUE``), so money is conserved.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import (
    ExchangeError,
    InsufficientFundsError,
    InvalidOrderError,
    UnknownOrderError,
)
from shared.filters import FilterFailure, SymbolFilters, check_order, round_to_step

ZERO = Decimal(0)
DEFAULT_COMMISSION_RATE = Decimal("0.001")
FEE_QUANTUM = Decimal("0.00000001")

# Binance messages (protocol doc section 6, Binance errors.md).
MSG_INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."
MSG_DUPLICATE_ORDER = "Duplicate order sent."
MSG_WOULD_TAKE = "Order would immediately match and take."
MSG_WOULD_TRIGGER = "Order would trigger immediately."
MSG_BAD_OCO_PRICES = "The relationship of the prices for the orders is not correct."
MSG_UNKNOWN_ORDER = "Unknown order sent."
MSG_NO_SUCH_ORDER = "Order does not exist."
MSG_INVALID_SYMBOL = "Invalid symbol."
MSG_NO_LIQUIDITY = "Order book liquidity is less than symbol minimum quantity."
MSG_LOT_LIQUIDITY = "Order book liquidity is less than LOT_SIZE filter minimum quantity."
MSG_QUOTE_QTY_NOT_ALLOWED = "Quote order qty market orders are not support for this symbol."
MSG_OCO_NOT_ALLOWED = "OCO orders are not supported for this symbol"
MSG_UNSUPPORTED = "Unsupported order combination."
MSG_NO_ORDER_ID = "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"

BUY, SELL = "BUY", "SELL"
STOP_LIMIT_TYPES = frozenset({"STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"})
LIMIT_TYPES = frozenset({"LIMIT", "LIMIT_MAKER"}) | STOP_LIMIT_TYPES
SUPPORTED_TYPES = LIMIT_TYPES | {"MARKET"}
TIME_IN_FORCES = frozenset({"GTC", "IOC", "FOK"})
OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})


class BadRequestError(InvalidOrderError):
    """A malformed request (-1102, -1106, -1115, -1116, -1117...); ``msg`` is Binance's text."""

    def __init__(self, msg: str, code: int) -> None:
        self.msg = msg
        super().__init__(msg, code)


class OrderRejectedError(InvalidOrderError):
    """-2010 NEW_ORDER_REJECTED for a reason other than balance (duplicate id, would take...)."""

    def __init__(self, msg: str, code: int = -2010) -> None:
        self.msg = msg
        super().__init__(msg, code)


class InsufficientBalanceError(InsufficientFundsError):
    """-2010 "Account has insufficient balance for requested action."."""

    def __init__(self, msg: str = MSG_INSUFFICIENT_BALANCE, code: int = -2010) -> None:
        self.msg = msg
        super().__init__(msg, code)


class CancelRejectedError(UnknownOrderError):
    """-2011 "Unknown order sent." on cancel of an unknown or already final order."""

    def __init__(self, msg: str = MSG_UNKNOWN_ORDER, code: int = -2011) -> None:
        self.msg = msg
        super().__init__(msg, code)


class NoSuchOrderError(UnknownOrderError):
    """-2013 "Order does not exist." on query of an unknown order."""

    def __init__(self, msg: str = MSG_NO_SUCH_ORDER, code: int = -2013) -> None:
        self.msg = msg
        super().__init__(msg, code)


class BadSymbolError(InvalidOrderError):
    """-1121 "Invalid symbol."."""

    def __init__(self, msg: str = MSG_INVALID_SYMBOL, code: int = -1121) -> None:
        self.msg = msg
        super().__init__(msg, code)


def error_body(exc: ExchangeError) -> dict[str, Any]:
    """Binance's JSON error body ``{"code": int, "msg": str}`` for an exception raised here."""
    msg = getattr(exc, "msg", None)
    if msg is None:
        msg = str(exc)
        prefix = f"[{exc.code}] "
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    return {"code": exc.code if exc.code is not None else -1000, "msg": msg}


def fmt(value: Decimal | None) -> str:
    """Render a Decimal like Binance: plain notation, 8 decimals, never rounded: digits past
    the 8th are shown only when they are not zero (an exact product can have more)."""
    if value is None:
        return "0.00000000"
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -8 and value != round(value, 8):
        return format(value.normalize(), "f")
    return f"{value:.8f}"


def stop_triggered(order_type: str, side: str, stop_price: Decimal, last_price: Decimal) -> bool:
    """Binance trigger rule: STOP_LOSS BUY / TAKE_PROFIT SELL trigger when last >= stop;
    STOP_LOSS SELL / TAKE_PROFIT BUY when last <= stop."""
    above = (order_type.startswith("STOP_LOSS") and side == BUY) or (
        order_type.startswith("TAKE_PROFIT") and side == SELL
    )
    return last_price >= stop_price if above else last_price <= stop_price


def _fee(amount: Decimal) -> Decimal:
    return amount.quantize(FEE_QUANTUM, rounding=ROUND_HALF_UP)


def _frozen(cls: type, values: dict[str, Any]) -> Any:
    """An instance of the frozen dataclass ``cls`` from a dict holding **every** field.

    The generated ``__init__`` of a frozen dataclass pays one ``object.__setattr__`` per field
    (about 5 µs for ``ExecutionEvent``'s 31), and the engine builds several such records per
    fill; filling the instance's ``__dict__`` directly gives the very same object (equal,
    hashable, still frozen) for a fraction of that. Only for classes without ``__post_init__``.
    """
    obj = object.__new__(cls)
    obj.__dict__.update(values)
    return obj


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class OrderRequest:
    """A new order as POST /api/v3/order takes it (already parsed to Decimal)."""

    symbol: str
    side: str  # BUY | SELL
    type: str  # MARKET | LIMIT | LIMIT_MAKER | STOP_LOSS_LIMIT | TAKE_PROFIT_LIMIT
    quantity: Decimal | None = None
    quote_order_qty: Decimal | None = None  # MARKET only
    price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: str | None = None  # GTC | IOC | FOK (LIMIT, *_LIMIT)
    client_order_id: str | None = None  # generated when None


@dataclass(frozen=True)
class OcoRequest:
    """A new OCO as POST /api/v3/orderList/oco takes it: an above leg and a below leg.

    SELL: above = LIMIT_MAKER (or TAKE_PROFIT_LIMIT), below = STOP_LOSS_LIMIT;
    limit > last > stop. BUY: above = STOP_LOSS_LIMIT, below = LIMIT_MAKER (or
    TAKE_PROFIT_LIMIT); limit < last < stop.
    """

    symbol: str
    side: str
    quantity: Decimal
    above_type: str
    below_type: str
    above_price: Decimal | None = None
    above_stop_price: Decimal | None = None
    above_time_in_force: str | None = None
    above_client_order_id: str | None = None
    below_price: Decimal | None = None
    below_stop_price: Decimal | None = None
    below_time_in_force: str | None = None
    below_client_order_id: str | None = None
    list_client_order_id: str | None = None


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Balance:
    """Free and locked amount of one asset in one account."""

    asset: str
    free: Decimal = ZERO
    locked: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.free + self.locked

    def to_dict(self) -> dict[str, str]:
        """``{"asset", "free", "locked"}`` as in GET /api/v3/account."""
        return {"asset": self.asset, "free": fmt(self.free), "locked": fmt(self.locked)}


@dataclass(frozen=True)
class BalanceDelta:
    """One change of one asset's balance, with the balance after it."""

    account: str
    asset: str
    free_delta: Decimal
    locked_delta: Decimal
    free: Decimal  # after the change
    locked: Decimal  # after the change
    reason: str  # deposit | withdraw | lock | unlock | fill | fee


@dataclass(frozen=True)
class Trade:
    """One fill of one user order (a myTrades row and a FULL response ``fills`` entry)."""

    symbol: str
    trade_id: int
    order_id: int
    order_list_id: int
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int
    is_buyer: bool
    is_maker: bool

    def to_dict(self) -> dict[str, Any]:
        """The GET /api/v3/myTrades row."""
        return {
            "symbol": self.symbol,
            "id": self.trade_id,
            "orderId": self.order_id,
            "orderListId": self.order_list_id,
            "price": fmt(self.price),
            "qty": fmt(self.qty),
            "quoteQty": fmt(self.quote_qty),
            "commission": fmt(self.commission),
            "commissionAsset": self.commission_asset,
            "time": self.time_ms,
            "isBuyer": self.is_buyer,
            "isMaker": self.is_maker,
            "isBestMatch": True,
        }

    def to_fill_dict(self) -> dict[str, Any]:
        """The FULL response ``fills`` entry: price, qty, commission, commissionAsset, tradeId."""
        return {
            "price": fmt(self.price),
            "qty": fmt(self.qty),
            "commission": fmt(self.commission),
            "commissionAsset": self.commission_asset,
            "tradeId": self.trade_id,
        }


@dataclass
class Order:
    """An order as the engine keeps it; mutated only by the engine. Queries return copies."""

    account: str
    symbol: str
    order_id: int
    client_order_id: str
    side: str
    type: str
    time_in_force: str
    orig_qty: Decimal
    price: Decimal
    stop_price: Decimal
    orig_quote_order_qty: Decimal
    time_ms: int
    update_time_ms: int
    working_time_ms: int  # -1 while an untriggered stop
    status: str = "NEW"
    executed_qty: Decimal = ZERO
    cumulative_quote_qty: Decimal = ZERO
    order_list_id: int = -1
    is_working: bool = True
    expiry_reason: str | None = None
    locked_asset: str = ""
    locked_amount: Decimal = ZERO  # still locked for this order
    trades: list[Trade] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining_qty(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    def _common(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": self.order_list_id,
            "clientOrderId": self.client_order_id,
            "price": fmt(self.price),
            "origQty": fmt(self.orig_qty),
            "executedQty": fmt(self.executed_qty),
            "cummulativeQuoteQty": fmt(self.cumulative_quote_qty),
            "status": self.status,
            "timeInForce": self.time_in_force,
            "type": self.type,
            "side": self.side,
        }

    def to_dict(self) -> dict[str, Any]:
        """The order object of GET /api/v3/order, openOrders and allOrders."""
        out = self._common()
        out.update(
            {
                "stopPrice": fmt(self.stop_price),
                "icebergQty": fmt(ZERO),
                "time": self.time_ms,
                "updateTime": self.update_time_ms,
                "isWorking": self.is_working,
                "workingTime": self.working_time_ms,
                "origQuoteOrderQty": fmt(self.orig_quote_order_qty),
                "selfTradePreventionMode": "NONE",
            }
        )
        return out

    def to_response(self, resp_type: str = "FULL", transact_time_ms: int | None = None) -> dict:
        """The POST /api/v3/order response: ACK, RESULT or FULL (with ``fills``)."""
        transact = self.time_ms if transact_time_ms is None else transact_time_ms
        if resp_type == "ACK":
            return {
                "symbol": self.symbol,
                "orderId": self.order_id,
                "orderListId": self.order_list_id,
                "clientOrderId": self.client_order_id,
                "transactTime": transact,
            }
        out = self._common()
        out["transactTime"] = transact
        out["origQuoteOrderQty"] = fmt(self.orig_quote_order_qty)
        out["workingTime"] = self.working_time_ms
        out["selfTradePreventionMode"] = "NONE"
        if self.type in STOP_LIMIT_TYPES:
            out["stopPrice"] = fmt(self.stop_price)
        if self.expiry_reason:
            out["expiryReason"] = self.expiry_reason
        if resp_type == "FULL":
            out["fills"] = [t.to_fill_dict() for t in self.trades]
        return out

    def to_cancel_response(
        self, cancel_client_order_id: str, transact_time_ms: int | None = None
    ) -> dict[str, Any]:
        """The DELETE /api/v3/order response (``clientOrderId`` is the cancel's own id)."""
        out = self._common()
        out["origClientOrderId"] = self.client_order_id
        out["clientOrderId"] = cancel_client_order_id
        out["transactTime"] = self.update_time_ms if transact_time_ms is None else transact_time_ms
        out["origQuoteOrderQty"] = fmt(self.orig_quote_order_qty)
        out["selfTradePreventionMode"] = "NONE"
        if self.type in STOP_LIMIT_TYPES:
            out["stopPrice"] = fmt(self.stop_price)
        return out


@dataclass
class OrderList:
    """An OCO: two orders that cancel each other."""

    account: str
    symbol: str
    order_list_id: int
    list_client_order_id: str
    order_keys: tuple[int, int]  # order ids of the two legs, in creation order
    transaction_time_ms: int
    list_status_type: str = "EXEC_STARTED"  # EXEC_STARTED | ALL_DONE
    list_order_status: str = "EXECUTING"  # EXECUTING | ALL_DONE
    contingency_type: str = "OCO"

    @property
    def is_open(self) -> bool:
        return self.list_order_status == "EXECUTING"


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class ExecutionEvent:
    """Everything a Binance executionReport carries about one change of one order."""

    account: str
    symbol: str
    client_order_id: str  # for a cancel: the cancel's id
    orig_client_order_id: str  # for a cancel: the order's id, else ""
    side: str
    order_type: str
    time_in_force: str
    quantity: Decimal
    price: Decimal
    stop_price: Decimal
    execution_type: str  # NEW | TRADE | CANCELED | REJECTED | EXPIRED
    order_status: str
    order_id: int
    last_executed_qty: Decimal
    last_executed_price: Decimal
    cumulative_qty: Decimal
    cumulative_quote_qty: Decimal
    commission: Decimal
    commission_asset: str | None
    trade_id: int
    is_maker: bool
    is_working: bool
    order_list_id: int
    event_time_ms: int
    transaction_time_ms: int
    order_creation_time_ms: int
    working_time_ms: int
    quote_order_qty: Decimal = ZERO
    reject_reason: str = "NONE"
    expiry_reason: str | None = None
    execution_id: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The Binance executionReport payload (``e`` = "executionReport")."""
        out: dict[str, Any] = {
            "e": "executionReport",
            "E": self.event_time_ms,
            "s": self.symbol,
            "c": self.client_order_id,
            "S": self.side,
            "o": self.order_type,
            "f": self.time_in_force,
            "q": fmt(self.quantity),
            "p": fmt(self.price),
            "P": fmt(self.stop_price),
            "F": fmt(ZERO),
            "g": self.order_list_id,
            "C": self.orig_client_order_id,
            "x": self.execution_type,
            "X": self.order_status,
            "r": self.reject_reason,
            "i": self.order_id,
            "l": fmt(self.last_executed_qty),
            "z": fmt(self.cumulative_qty),
            "L": fmt(self.last_executed_price),
            "n": fmt(self.commission) if self.trade_id >= 0 else "0",
            "N": self.commission_asset,
            "T": self.transaction_time_ms,
            "t": self.trade_id,
            "I": self.execution_id,
            "w": self.is_working,
            "m": self.is_maker,
            "M": False,
            "O": self.order_creation_time_ms,
            "Z": fmt(self.cumulative_quote_qty),
            "Y": fmt(self.last_executed_qty * self.last_executed_price),
            "Q": fmt(self.quote_order_qty),
            "V": "NONE",
        }
        if self.is_working and self.working_time_ms >= 0:
            out["W"] = self.working_time_ms
        if self.expiry_reason:
            out["eR"] = self.expiry_reason
        return out

    def to_execution_report(self) -> dict[str, Any]:
        """Alias of ``to_dict``."""
        return self.to_dict()


@dataclass(frozen=True)
class ListStatusEvent:
    """A Binance listStatus event for an OCO."""

    account: str
    symbol: str
    order_list_id: int
    contingency_type: str
    list_status_type: str
    list_order_status: str
    list_client_order_id: str
    transaction_time_ms: int
    event_time_ms: int
    orders: tuple[tuple[str, int, str], ...]  # (symbol, orderId, clientOrderId)
    reject_reason: str = "NONE"

    def to_dict(self) -> dict[str, Any]:
        """The Binance listStatus payload."""
        return {
            "e": "listStatus",
            "E": self.event_time_ms,
            "s": self.symbol,
            "g": self.order_list_id,
            "c": self.contingency_type,
            "l": self.list_status_type,
            "L": self.list_order_status,
            "r": self.reject_reason,
            "C": self.list_client_order_id,
            "T": self.transaction_time_ms,
            "O": [{"s": s, "i": i, "c": c} for s, i, c in self.orders],
        }


@dataclass(frozen=True)
class AccountPositionEvent:
    """A Binance outboundAccountPosition: the assets of one account that just changed."""

    account: str
    event_time_ms: int
    last_update_ms: int
    balances: tuple[Balance, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "e": "outboundAccountPosition",
            "E": self.event_time_ms,
            "u": self.last_update_ms,
            "B": [{"a": b.asset, "f": fmt(b.free), "l": fmt(b.locked)} for b in self.balances],
        }


@dataclass(frozen=True)
class BalanceUpdateEvent:
    """A Binance balanceUpdate: a deposit or withdrawal."""

    account: str
    asset: str
    delta: Decimal
    event_time_ms: int
    clear_time_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "e": "balanceUpdate",
            "E": self.event_time_ms,
            "a": self.asset,
            "d": fmt(self.delta),
            "T": self.clear_time_ms,
        }


UserEvent = ExecutionEvent | ListStatusEvent | AccountPositionEvent | BalanceUpdateEvent


# --------------------------------------------------------------------------- ledger


class Ledger:
    """Per account per asset free/locked balances; the venue's fee income kept apart.

    Every change returns a ``BalanceDelta`` and is recorded until ``drain_deltas()`` (unless
    ``keep_deltas`` is False: then nothing is recorded and ``drain_deltas()`` is always empty).
    Free can never go negative (InsufficientBalanceError); locked going negative is a bug
    of the caller (RuntimeError).
    """

    VENUE = "__venue__"

    def __init__(self, keep_deltas: bool = True) -> None:
        self._balances: dict[str, dict[str, Balance]] = {}
        self._deltas: list[BalanceDelta] = []
        self._keep_deltas = keep_deltas

    def balance(self, account: str, asset: str) -> Balance:
        held = self._balances.get(account)
        found = held.get(asset) if held is not None else None
        return found if found is not None else Balance(asset)

    def balances(self, account: str) -> dict[str, Balance]:
        """All assets the account has ever held (zeros included), by asset."""
        return dict(self._balances.get(account, {}))

    def accounts(self) -> list[str]:
        return [a for a in self._balances if a != self.VENUE]

    def _apply(
        self, account: str, asset: str, free_delta: Decimal, locked_delta: Decimal, reason: str
    ) -> BalanceDelta:
        held = self._balances.get(account)
        old = held.get(asset) if held is not None else None
        if old is None:
            old = Balance(asset)
        free, locked = old.free + free_delta, old.locked + locked_delta
        if free < 0:
            raise InsufficientBalanceError()
        if locked < 0:
            raise RuntimeError(f"ledger: locked {asset} of {account} would go negative")
        delta = _frozen(BalanceDelta, {
            "account": account, "asset": asset, "free_delta": free_delta,
            "locked_delta": locked_delta, "free": free, "locked": locked, "reason": reason})
        if free_delta or locked_delta or held is None or asset not in held:
            if held is None:
                held = self._balances[account] = {}
            held[asset] = _frozen(Balance, {"asset": asset, "free": free, "locked": locked})
            if self._keep_deltas:
                self._deltas.append(delta)
        return delta

    @staticmethod
    def _amount(amount: Decimal) -> Decimal:
        if type(amount) is not Decimal:
            amount = Decimal(amount)
        if amount < 0:
            raise ValueError("amount must be >= 0")
        return amount

    def deposit(self, account: str, asset: str, amount: Decimal) -> BalanceDelta:
        amount = self._amount(amount)
        return self._apply(account, asset, amount, ZERO, "deposit")

    def withdraw(self, account: str, asset: str, amount: Decimal) -> BalanceDelta:
        """Raises InsufficientBalanceError if free < amount."""
        amount = self._amount(amount)
        return self._apply(account, asset, -amount, ZERO, "withdraw")

    def lock(self, account: str, asset: str, amount: Decimal) -> BalanceDelta:
        """Move free -> locked; raises InsufficientBalanceError if free < amount."""
        amount = self._amount(amount)
        return self._apply(account, asset, -amount, amount, "lock")

    def unlock(self, account: str, asset: str, amount: Decimal) -> BalanceDelta:
        """Move locked -> free."""
        amount = self._amount(amount)
        return self._apply(account, asset, amount, -amount, "unlock")

    def debit_locked(self, account: str, asset: str, amount: Decimal) -> BalanceDelta:
        """Spend from locked (a fill paying with locked funds)."""
        amount = self._amount(amount)
        return self._apply(account, asset, ZERO, -amount, "fill")

    def debit_free(self, account: str, asset: str, amount: Decimal) -> BalanceDelta:
        """Spend from free (a MARKET order that never locked)."""
        amount = self._amount(amount)
        return self._apply(account, asset, -amount, ZERO, "fill")

    def credit(
        self, account: str, asset: str, amount: Decimal, reason: str = "fill"
    ) -> BalanceDelta:
        """Add to free (proceeds of a fill, fee income of the venue)."""
        amount = self._amount(amount)
        return self._apply(account, asset, amount, ZERO, reason)

    def fees_collected(self) -> dict[str, Decimal]:
        """Commission the venue has received, by asset."""
        return {a: b.free for a, b in self._balances.get(self.VENUE, {}).items()}

    def drain_deltas(self) -> list[BalanceDelta]:
        """Every delta since the last call, oldest first."""
        out, self._deltas = self._deltas, []
        return out


# --------------------------------------------------------------------------- book


class OrderBook:
    """The market's top-N levels for one symbol (what ``set_book`` last gave, minus takes)."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self._bids: list[list[Decimal]] = []
        self._asks: list[list[Decimal]] = []

    def set_levels(
        self,
        bids: Iterable[tuple[Decimal, Decimal]],
        asks: Iterable[tuple[Decimal, Decimal]],
    ) -> None:
        """Replace the levels; bids are sorted high->low, asks low->high; zero qty dropped."""
        self._bids = _levels(bids, reverse=True)
        self._asks = _levels(asks, reverse=False)

    @property
    def bids(self) -> list[tuple[Decimal, Decimal]]:
        return [(p, q) for p, q in self._bids]

    @property
    def asks(self) -> list[tuple[Decimal, Decimal]]:
        return [(p, q) for p, q in self._asks]

    def best_bid(self) -> Decimal | None:
        return self._bids[0][0] if self._bids else None

    def best_ask(self) -> Decimal | None:
        return self._asks[0][0] if self._asks else None

    def mid(self) -> Decimal | None:
        bid, ask = self.best_bid(), self.best_ask()
        if bid is None or ask is None:
            return bid if ask is None else ask
        return (bid + ask) / 2

    def opposite(self, taker_side: str) -> list[tuple[Decimal, Decimal]]:
        """The levels a taker on ``taker_side`` would hit, best first."""
        return self.asks if taker_side == BUY else self.bids

    def consume(self, taker_side: str, price: Decimal, qty: Decimal) -> None:
        """Remove ``qty`` at ``price`` from the side a taker on ``taker_side`` hits."""
        levels = self._asks if taker_side == BUY else self._bids
        for i, level in enumerate(levels):
            if level[0] == price:
                level[1] -= qty
                if level[1] <= 0:
                    del levels[i]
                return


def _levels(raw: Iterable[tuple[Decimal, Decimal]], reverse: bool) -> list[list[Decimal]]:
    levels: list[list[Decimal]] = []
    ordered = True  # strictly best-first so far: nothing to merge or sort
    for price, qty in raw:
        if type(price) is not Decimal:
            price = Decimal(price)
        if type(qty) is not Decimal:
            qty = Decimal(qty)
        if qty > 0:
            if levels and ordered:
                last = levels[-1][0]
                ordered = price < last if reverse else price > last
            levels.append([price, qty])
    if ordered:  # the common case: the merge below would give these levels, in this order
        for level in levels:
            level[1] = ZERO + level[1]  # as the merge's ZERO + qty (same digits and exponent)
        return levels
    merged: dict[Decimal, Decimal] = {}
    for price, qty in levels:
        merged[price] = merged.get(price, ZERO) + qty
    return [[p, merged[p]] for p in sorted(merged, reverse=reverse)]


# --------------------------------------------------------------------------- engine


def _crosses(side: str, level_price: Decimal, limit: Decimal | None) -> bool:
    """True if a taker on ``side`` with ``limit`` may trade at ``level_price``."""
    if limit is None:
        return True
    return level_price <= limit if side == BUY else level_price >= limit


def _walk(
    levels: list[tuple[Decimal, Decimal]],
    side: str,
    limit: Decimal | None,
    qty: Decimal | None,
    quote: Decimal | None,
    step: Decimal,
) -> tuple[list[tuple[Decimal, Decimal]], bool]:
    """Fills (price, qty) a taker would get, one per level; and whether the book ran out."""
    plan: list[tuple[Decimal, Decimal]] = []
    for price, level_qty in levels:
        if not _crosses(side, price, limit):
            return plan, False
        if qty is not None:
            take = round_to_step(min(level_qty, qty), step)
        else:
            take = round_to_step(min(level_qty, quote / price), step)
            if take <= 0:
                return plan, False
        if take <= 0:
            continue
        plan.append((price, take))
        if qty is not None:
            qty -= take
            if qty <= 0:
                return plan, False
        else:
            quote -= price * take
            if take < level_qty:
                return plan, False
    return plan, True


class MatchingEngine:
    """Binance Spot matching for many accounts over a market book per symbol."""

    def __init__(
        self,
        symbols: dict[str, SymbolFilters] | Iterable[SymbolFilters],
        clock: Clock | None = None,
        maker_commission: Decimal = DEFAULT_COMMISSION_RATE,
        taker_commission: Decimal = DEFAULT_COMMISSION_RATE,
        fill_on_touch: bool = False,
        check_filters: bool = True,
        user_data_stream: bool = True,
    ) -> None:
        """``fill_on_touch``: a trade at exactly a resting order's price fills it too.

        ``user_data_stream`` False: queue no user-data events at all (``drain_events()`` stays
        empty, ``deposit``/``withdraw`` return none), for a caller that never reads them (the
        backtester reads only what each call returns): fills and balances are unchanged, and
        each fill costs less (no outboundAccountPosition / listStatus records, no ledger
        deltas kept)."""
        if isinstance(symbols, dict):
            self._symbols = dict(symbols)
        else:
            self._symbols = {f.symbol: f for f in symbols}
        self._clock = clock or SYSTEM_CLOCK
        self.maker_commission = Decimal(maker_commission)
        self.taker_commission = Decimal(taker_commission)
        self.fill_on_touch = fill_on_touch
        self.check_filters = check_filters
        self.user_data_stream = user_data_stream
        self._ledger = Ledger(keep_deltas=user_data_stream)
        self._books: dict[str, OrderBook] = {}
        self._last: dict[str, Decimal] = {}
        self._orders: dict[tuple[str, int], Order] = {}
        self._open: dict[str, dict[int, Order]] = {}
        self._lists: dict[int, OrderList] = {}
        self._trades: dict[tuple[str, str], list[Trade]] = {}
        self._next_order_id: dict[str, int] = {}
        self._next_trade_id: dict[str, int] = {}
        self._list_ids = itertools.count(1)
        self._execution_ids = itertools.count(1)
        self._client_ids = itertools.count(1)
        self._outbox: list[UserEvent] = []
        for name in self._symbols:
            self._init_symbol(name)

    def _init_symbol(self, name: str) -> None:
        self._books.setdefault(name, OrderBook(name))
        self._open.setdefault(name, {})
        self._next_order_id.setdefault(name, 1)
        self._next_trade_id.setdefault(name, 1)

    def add_symbol(self, filters: SymbolFilters) -> None:
        """Start trading one more symbol (or replace its filters)."""
        self._symbols[filters.symbol] = filters
        self._init_symbol(filters.symbol)

    # ---- configuration and funding
    @property
    def ledger(self) -> Ledger:
        return self._ledger

    @property
    def symbols(self) -> dict[str, SymbolFilters]:
        return dict(self._symbols)

    def deposit(self, account: str, asset: str, amount: Decimal) -> list[UserEvent]:
        """Fund an account; queues balanceUpdate + outboundAccountPosition."""
        return self._transfer(account, asset, Decimal(amount), self._ledger.deposit)

    def withdraw(self, account: str, asset: str, amount: Decimal) -> list[UserEvent]:
        """Take funds out of an account (InsufficientBalanceError if free is short)."""
        return self._transfer(account, asset, -Decimal(amount), self._ledger.withdraw)

    def _transfer(self, account: str, asset: str, delta: Decimal, op: Any) -> list[UserEvent]:
        now = self._now()
        op(account, asset, abs(delta))
        start = len(self._outbox)
        if self.user_data_stream:
            self._outbox.append(BalanceUpdateEvent(account, asset, delta, now, now))
        self._flush(now)
        return self._outbox[start:]

    # ---- market feed
    def set_book(
        self,
        symbol: str,
        bids: Iterable[tuple[Decimal, Decimal]],
        asks: Iterable[tuple[Decimal, Decimal]],
        ts_ms: int | None = None,
    ) -> list[ExecutionEvent]:
        """Replace the top-N levels; fills resting orders the new book crosses (as maker)."""
        filters = self._filters(symbol)
        now = self._now(ts_ms)
        book = self._books[symbol]
        book.set_levels(bids, asks)
        events: list[ExecutionEvent] = []
        for order in self._resting_by_priority(symbol):
            if not order.is_open or not order.is_working:
                continue
            for price, level_qty in book.opposite(order.side):
                if not _crosses(order.side, price, order.price) or not order.is_open:
                    break
                qty = round_to_step(min(level_qty, order.remaining_qty), filters.step_size)
                if qty <= 0:
                    continue
                # The crossing level is the taker; the resting order fills at its own price.
                book.consume(order.side, price, qty)
                events += self._fill(order, order.price, qty, True, now)
        self._flush(now)
        return events

    def on_trade(
        self, symbol: str, price: Decimal, qty: Decimal, ts_ms: int | None = None
    ) -> list[ExecutionEvent]:
        """A market trade: sets last price, triggers stops, fills resting orders traded through."""
        filters = self._filters(symbol)
        now = self._now(ts_ms)
        price, qty = Decimal(price), Decimal(qty)
        self._last[symbol] = price
        events: list[ExecutionEvent] = []
        for order in list(self._open[symbol].values()):
            if order.is_open and not order.is_working:
                if stop_triggered(order.type, order.side, order.stop_price, price):
                    events += self._trigger(order, now)
        available = {BUY: qty, SELL: qty}
        for order in self._resting_by_priority(symbol):
            if not order.is_open or not order.is_working or not self._traded_through(order, price):
                continue
            fill_qty = round_to_step(min(order.remaining_qty, available[order.side]),
                                     filters.step_size)
            if fill_qty <= 0:
                continue
            available[order.side] -= fill_qty
            events += self._fill(order, order.price, fill_qty, True, now)
        self._flush(now)
        return events

    def _traded_through(self, order: Order, price: Decimal) -> bool:
        if self.fill_on_touch and price == order.price:
            return True
        return price < order.price if order.side == BUY else price > order.price

    def book(self, symbol: str) -> OrderBook:
        self._filters(symbol)
        return self._books[symbol]

    def last_price(self, symbol: str) -> Decimal | None:
        return self._last.get(symbol)

    def reference_price(self, symbol: str) -> Decimal | None:
        """Last trade price, else the book's mid, else None."""
        last = self._last.get(symbol)
        return last if last is not None else self._books[symbol].mid()

    # ---- orders
    def place(self, account: str, request: OrderRequest) -> list[ExecutionEvent]:
        """Place an order; the first event is always NEW for the order (orderId in it).

        Raises InvalidOrderError (-1013 filters, -2010 OrderRejectedError, -1121 symbol),
        InsufficientBalanceError (-2010). Nothing changes when it raises.
        """
        filters = self._filters(request.symbol)
        _validate(request, filters)
        now = self._now()
        client_id = request.client_order_id or self._new_client_id()
        self._check_duplicate(account, request.symbol, client_id)
        self._check_filters(account, filters, request, extra_open=0)
        self._check_would_take_or_trigger(request)
        if request.type == "MARKET":
            return self._place_market(account, filters, request, client_id, now)
        lock_asset, lock_amount = self._lock_for(filters, request.side, request.price, request)
        self._ledger.lock(account, lock_asset, lock_amount)
        order = self._new_order(account, request, client_id, now, lock_asset, lock_amount)
        events = [self._event(order, "NEW", now)]
        events += self._activate(order, now)
        self._flush(now)
        return events

    def _place_market(
        self,
        account: str,
        filters: SymbolFilters,
        request: OrderRequest,
        client_id: str,
        now: int,
    ) -> list[ExecutionEvent]:
        book = self._books[request.symbol]
        levels = book.opposite(request.side)
        if not levels:
            raise OrderRejectedError(MSG_NO_LIQUIDITY)
        plan, _ = _walk(
            levels, request.side, None, request.quantity, request.quote_order_qty,
            filters.step_size,
        )
        if not plan:
            raise OrderRejectedError(MSG_LOT_LIQUIDITY)
        planned_qty = sum((q for _, q in plan), ZERO)
        if request.side == BUY:
            lock_asset, lock_amount = filters.quote_asset, sum((p * q for p, q in plan), ZERO)
        else:
            lock_asset = filters.base_asset
            lock_amount = request.quantity if request.quantity is not None else planned_qty
        self._ledger.lock(account, lock_asset, lock_amount)
        if request.quantity is None:
            request = _request_with(request, quantity=planned_qty)
        order = self._new_order(account, request, client_id, now, lock_asset, lock_amount)
        events = [self._event(order, "NEW", now)]
        for price, qty in plan:
            book.consume(order.side, price, qty)
            events += self._fill(order, price, qty, False, now)
        if order.is_open:  # the book ran out before the quantity did
            events.append(self._finish(order, "EXPIRED", now, "INSUFFICIENT_LIQUIDITY"))
        self._release(order)
        self._flush(now)
        return events

    def place_oco(self, account: str, request: OcoRequest) -> list[ExecutionEvent]:
        """Place an OCO; events are NEW for both legs (and fills); listStatus is queued."""
        filters = self._filters(request.symbol)
        if not filters.oco_allowed:
            raise OrderRejectedError(MSG_OCO_NOT_ALLOWED)
        below, above = _oco_legs(request)
        for leg in (below, above):
            _validate(leg, filters)
        now = self._now()
        list_client_id = request.list_client_order_id or self._new_client_id()
        below = _request_with(below,
                              client_order_id=below.client_order_id or self._new_client_id())
        above = _request_with(above,
                              client_order_id=above.client_order_id or self._new_client_id())
        if below.client_order_id == above.client_order_id:
            raise OrderRejectedError(MSG_DUPLICATE_ORDER)
        for i, leg in enumerate((below, above)):
            self._check_duplicate(account, request.symbol, leg.client_order_id or "")
            self._check_filters(account, filters, leg, extra_open=i)
        self._check_oco_prices(below, above)
        prices = [leg.price or ZERO for leg in (below, above)]
        lock_asset, lock_amount = self._lock_for(filters, request.side, max(prices), below)
        self._ledger.lock(account, lock_asset, lock_amount)
        list_id = next(self._list_ids)
        legs = [
            self._new_order(account, below, below.client_order_id or "", now, lock_asset,
                            lock_amount, list_id),
            self._new_order(account, above, above.client_order_id or "", now, lock_asset, ZERO,
                            list_id),
        ]
        order_list = OrderList(account, request.symbol, list_id, list_client_id,
                               (legs[0].order_id, legs[1].order_id), now)
        self._lists[list_id] = order_list
        events = [self._event(leg, "NEW", now) for leg in legs]
        self._list_status(order_list, now)
        for leg in legs:
            if leg.is_open:
                events += self._activate(leg, now)
        self._flush(now)
        return events

    def cancel(
        self,
        account: str,
        symbol: str,
        order_id: int | None = None,
        orig_client_order_id: str | None = None,
        new_client_order_id: str | None = None,
    ) -> list[ExecutionEvent]:
        """Cancel one open order (an OCO leg cancels the whole list). -2011 if unknown/final."""
        self._filters(symbol)
        if order_id is None and not orig_client_order_id:
            raise BadRequestError(MSG_NO_ORDER_ID, -1102)
        order = self._find(account, symbol, order_id, orig_client_order_id)
        if order is None or not order.is_open:
            raise CancelRejectedError()
        now = self._now()
        cancel_id = new_client_order_id or self._new_client_id()
        if order.order_list_id >= 0:
            events = self._cancel_list(self._lists[order.order_list_id], now, cancel_id)
        else:
            events = [self._finish(order, "CANCELED", now, cancel_client_id=cancel_id)]
        self._flush(now)
        return events

    def cancel_order_list(
        self,
        account: str,
        symbol: str,
        order_list_id: int | None = None,
        list_client_order_id: str | None = None,
    ) -> list[ExecutionEvent]:
        """Cancel both legs of an OCO. -2011 if unknown or already done."""
        self._filters(symbol)
        order_list = self._find_list(account, order_list_id, list_client_order_id)
        if order_list is None or order_list.symbol != symbol or not order_list.is_open:
            raise CancelRejectedError()
        now = self._now()
        events = self._cancel_list(order_list, now, self._new_client_id())
        self._flush(now)
        return events

    def cancel_all(self, account: str, symbol: str) -> list[ExecutionEvent]:
        """Cancel every open order of the account on the symbol."""
        self._filters(symbol)
        now = self._now()
        events: list[ExecutionEvent] = []
        for order in list(self._open[symbol].values()):
            if order.account != account or not order.is_open:
                continue
            cancel_id = self._new_client_id()
            if order.order_list_id >= 0:
                events += self._cancel_list(self._lists[order.order_list_id], now, cancel_id)
            else:
                events.append(self._finish(order, "CANCELED", now, cancel_client_id=cancel_id))
        self._flush(now)
        return events

    # ---- queries (return copies)
    def get_order(
        self,
        account: str,
        symbol: str,
        order_id: int | None = None,
        orig_client_order_id: str | None = None,
    ) -> Order:
        """One order; -2013 NoSuchOrderError if unknown. By client id: the newest such order."""
        self._filters(symbol)
        if order_id is None and not orig_client_order_id:
            raise BadRequestError(MSG_NO_ORDER_ID, -1102)
        order = self._find(account, symbol, order_id, orig_client_order_id)
        if order is None:
            raise NoSuchOrderError()
        return _copy(order)

    def get_order_list(
        self,
        account: str,
        order_list_id: int | None = None,
        list_client_order_id: str | None = None,
    ) -> OrderList:
        """One OCO; -2013 NoSuchOrderError ("Order list does not exist.") if unknown."""
        order_list = self._find_list(account, order_list_id, list_client_order_id)
        if order_list is None:
            raise NoSuchOrderError("Order list does not exist.")
        return replace(order_list)

    def order_list_response(self, order_list: OrderList) -> dict[str, Any]:
        """The POST /api/v3/orderList/oco response (orders + orderReports)."""
        legs = [self._orders[(order_list.symbol, oid)] for oid in order_list.order_keys]
        return {
            "orderListId": order_list.order_list_id,
            "contingencyType": order_list.contingency_type,
            "listStatusType": order_list.list_status_type,
            "listOrderStatus": order_list.list_order_status,
            "listClientOrderId": order_list.list_client_order_id,
            "transactionTime": order_list.transaction_time_ms,
            "symbol": order_list.symbol,
            "orders": [
                {"symbol": o.symbol, "orderId": o.order_id, "clientOrderId": o.client_order_id}
                for o in legs
            ],
            "orderReports": [o.to_response("RESULT", order_list.transaction_time_ms) for o in legs],
        }

    def open_orders(self, account: str, symbol: str | None = None) -> list[Order]:
        names = [symbol] if symbol is not None else list(self._open)
        for name in names:
            self._filters(name)
        return [
            _copy(o)
            for name in names
            for o in self._open[name].values()
            if o.account == account and o.is_open
        ]

    def all_orders(
        self, account: str, symbol: str, from_order_id: int | None = None, limit: int = 500
    ) -> list[Order]:
        self._filters(symbol)
        found = [
            _copy(o)
            for (sym, oid), o in self._orders.items()
            if sym == symbol and o.account == account
            and (from_order_id is None or oid >= from_order_id)
        ]
        found.sort(key=lambda o: o.order_id)
        return found[:limit] if from_order_id is not None else found[-limit:]

    def open_order_lists(self, account: str) -> list[OrderList]:
        return [replace(lst) for lst in self._lists.values() if lst.account == account
                and lst.is_open]

    def my_trades(
        self,
        account: str,
        symbol: str,
        from_id: int | None = None,
        order_id: int | None = None,
        limit: int = 500,
    ) -> list[Trade]:
        self._filters(symbol)
        trades = [
            t
            for t in self._trades.get((account, symbol), [])
            if (from_id is None or t.trade_id >= from_id)
            and (order_id is None or t.order_id == order_id)
        ]
        return trades[:limit] if from_id is not None else trades[-limit:]

    def balances(self, account: str) -> dict[str, Balance]:
        return self._ledger.balances(account)

    def account_dict(self, account: str, omit_zero_balances: bool = False) -> dict[str, Any]:
        """The GET /api/v3/account response."""
        balances = [
            b.to_dict()
            for b in self._ledger.balances(account).values()
            if not omit_zero_balances or b.total != 0
        ]
        maker_bps = int(self.maker_commission * 10000)
        taker_bps = int(self.taker_commission * 10000)
        return {
            "makerCommission": maker_bps,
            "takerCommission": taker_bps,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": fmt(self.maker_commission),
                "taker": fmt(self.taker_commission),
                "buyer": fmt(ZERO),
                "seller": fmt(ZERO),
            },
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self._now(),
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": zlib.crc32(account.encode()),
        }

    # ---- user-data outbox
    def drain_events(self) -> list[UserEvent]:
        """Every user-data event since the last call, oldest first (each has ``.account``)."""
        out, self._outbox = self._outbox, []
        return out

    # ------------------------------------------------------------------ internals
    def _now(self, ts_ms: int | None = None) -> int:
        return int(ts_ms) if ts_ms is not None else self._clock.time_ms()

    def _filters(self, symbol: str) -> SymbolFilters:
        filters = self._symbols.get(symbol)
        if filters is None:
            raise BadSymbolError()
        return filters

    def _new_client_id(self) -> str:
        return f"sim{next(self._client_ids):019d}"

    def _find(
        self, account: str, symbol: str, order_id: int | None, client_order_id: str | None
    ) -> Order | None:
        if order_id is not None:
            order = self._orders.get((symbol, int(order_id)))
            if order is None or order.account != account:
                return None
            if client_order_id and order.client_order_id != client_order_id:
                return None
            return order
        open_match = [o for o in self._open[symbol].values()
                      if o.account == account and o.client_order_id == client_order_id]
        if open_match:
            return open_match[-1]
        for (sym, _), order in reversed(list(self._orders.items())):
            if sym == symbol and order.account == account:
                if order.client_order_id == client_order_id:
                    return order
        return None

    def _find_list(
        self, account: str, order_list_id: int | None, list_client_order_id: str | None
    ) -> OrderList | None:
        for lst in reversed(list(self._lists.values())):
            if lst.account != account:
                continue
            if order_list_id is not None and lst.order_list_id == int(order_list_id):
                return lst
            if order_list_id is None and lst.list_client_order_id == list_client_order_id:
                return lst
        return None

    def _check_duplicate(self, account: str, symbol: str, client_id: str) -> None:
        for order in self._open[symbol].values():
            if order.account == account and order.client_order_id == client_id:
                raise OrderRejectedError(MSG_DUPLICATE_ORDER)

    def _check_filters(
        self, account: str, filters: SymbolFilters, request: OrderRequest, extra_open: int
    ) -> None:
        if not self.check_filters:
            return
        mine = [o for o in self._open[filters.symbol].values() if o.account == account]
        algo = [o for o in mine if o.type in STOP_LIMIT_TYPES]
        check_order(
            filters,
            request.side,
            request.type,
            request.price,
            request.quantity,
            stop_price=request.stop_price,
            quote_order_qty=request.quote_order_qty,
            avg_price=self.reference_price(filters.symbol),
            open_orders=len(mine) + extra_open,
            open_algo_orders=len(algo) + extra_open,
        )

    def _check_would_take_or_trigger(self, request: OrderRequest) -> None:
        book = self._books[request.symbol]
        if request.type == "LIMIT_MAKER" and request.price is not None:
            best = book.best_ask() if request.side == BUY else book.best_bid()
            if best is not None and _crosses(request.side, best, request.price):
                raise OrderRejectedError(MSG_WOULD_TAKE)
        if request.type in STOP_LIMIT_TYPES and request.stop_price is not None:
            last = self._last.get(request.symbol)
            if last is not None and stop_triggered(
                request.type, request.side, request.stop_price, last
            ):
                raise OrderRejectedError(MSG_WOULD_TRIGGER)

    def _check_oco_prices(self, below: OrderRequest, above: OrderRequest) -> None:
        """Above leg's price > last > below leg's price (SELL: limit > last > stop;
        BUY: stop > last > limit), a stop leg counting by its stopPrice."""
        below_price = below.stop_price if below.type in STOP_LIMIT_TYPES else below.price
        above_price = above.stop_price if above.type in STOP_LIMIT_TYPES else above.price
        assert below_price is not None and above_price is not None  # _validate ensured it
        ref = self.reference_price(below.symbol)
        ok = above_price > below_price
        if ref is not None:
            ok = ok and above_price > ref > below_price
        if not ok:
            raise OrderRejectedError(MSG_BAD_OCO_PRICES)
        for leg in (below, above):
            self._check_would_take_or_trigger(leg)

    def _lock_for(
        self, filters: SymbolFilters, side: str, price: Decimal | None, request: OrderRequest
    ) -> tuple[str, Decimal]:
        qty = request.quantity or ZERO
        if side == BUY:
            return filters.quote_asset, (price or ZERO) * qty
        return filters.base_asset, qty

    def _new_order(
        self,
        account: str,
        request: OrderRequest,
        client_id: str,
        now: int,
        lock_asset: str,
        lock_amount: Decimal,
        order_list_id: int = -1,
    ) -> Order:
        symbol = request.symbol
        order_id = self._next_order_id[symbol]
        self._next_order_id[symbol] = order_id + 1
        is_stop = request.type in STOP_LIMIT_TYPES
        order = Order(
            account=account,
            symbol=symbol,
            order_id=order_id,
            client_order_id=client_id,
            side=request.side,
            type=request.type,
            time_in_force=request.time_in_force or "GTC",
            orig_qty=request.quantity or ZERO,
            price=request.price if request.type != "MARKET" and request.price else ZERO,
            stop_price=request.stop_price if is_stop and request.stop_price else ZERO,
            orig_quote_order_qty=request.quote_order_qty or ZERO,
            time_ms=now,
            update_time_ms=now,
            working_time_ms=-1 if is_stop else now,
            order_list_id=order_list_id,
            is_working=not is_stop,
            locked_asset=lock_asset,
            locked_amount=lock_amount,
        )
        self._orders[(symbol, order_id)] = order
        self._open[symbol][order_id] = order
        return order

    def _activate(self, order: Order, now: int) -> list[ExecutionEvent]:
        """A new limit-family order: untriggered stops wait, the rest work now."""
        if not order.is_working:
            return []
        return self._work(order, now)

    def _trigger(self, order: Order, now: int) -> list[ExecutionEvent]:
        order.is_working = True
        order.working_time_ms = now
        order.update_time_ms = now
        events = self._oco_leg_executing(order, now)
        return events + self._work(order, now)

    def _work(self, order: Order, now: int) -> list[ExecutionEvent]:
        """A working limit order takes what the book offers up to its price, then rests."""
        events: list[ExecutionEvent] = []
        book = self._books[order.symbol]
        if order.type != "LIMIT_MAKER":
            step = self._symbols[order.symbol].step_size
            plan, _ = _walk(book.opposite(order.side), order.side, order.price,
                            order.remaining_qty, None, step)
            fillable = sum((q for _, q in plan), ZERO)
            if order.time_in_force == "FOK" and fillable < order.remaining_qty:
                return [self._finish(order, "EXPIRED", now)]
            for price, qty in plan:
                book.consume(order.side, price, qty)
                events += self._fill(order, price, qty, False, now)
        if order.is_open and order.time_in_force in ("IOC", "FOK"):
            events.append(self._finish(order, "EXPIRED", now))
        return events

    def _fill(
        self, order: Order, price: Decimal, qty: Decimal, is_maker: bool, now: int
    ) -> list[ExecutionEvent]:
        after = self._oco_leg_executing(order, now)
        filters = self._symbols[order.symbol]
        quote_qty = price * qty
        rate = self.maker_commission if is_maker else self.taker_commission
        account = order.account
        if order.side == BUY:
            commission, commission_asset = _fee(qty * rate), filters.base_asset
            self._ledger.debit_locked(account, filters.quote_asset, quote_qty)
            order.locked_amount -= quote_qty
            self._ledger.credit(account, filters.base_asset, qty - commission)
        else:
            commission, commission_asset = _fee(quote_qty * rate), filters.quote_asset
            self._ledger.debit_locked(account, filters.base_asset, qty)
            order.locked_amount -= qty
            self._ledger.credit(account, filters.quote_asset, quote_qty - commission)
        self._ledger.credit(Ledger.VENUE, commission_asset, commission, "fee")
        order.executed_qty += qty
        order.cumulative_quote_qty += quote_qty
        order.status = "FILLED" if order.remaining_qty <= 0 else "PARTIALLY_FILLED"
        order.update_time_ms = now
        trade_id = self._next_trade_id[order.symbol]
        self._next_trade_id[order.symbol] = trade_id + 1
        trade = Trade(order.symbol, trade_id, order.order_id, order.order_list_id, price, qty,
                      quote_qty, commission, commission_asset, now, order.side == BUY, is_maker)
        order.trades.append(trade)
        self._trades.setdefault((account, order.symbol), []).append(trade)
        if order.type != "MARKET":
            self._release(order)
        if not order.is_open:
            self._open[order.symbol].pop(order.order_id, None)
        event = self._event(order, "TRADE", now, trade=trade)
        return [event] + after

    def _release(self, order: Order) -> None:
        """Unlock what the order no longer needs (all of it once final)."""
        if order.is_open and order.side == BUY and order.type != "MARKET":
            needed = order.remaining_qty * order.price
        elif order.is_open and order.side == SELL:
            needed = order.remaining_qty
        else:
            needed = ZERO
        excess = order.locked_amount - needed
        if excess > 0:
            self._ledger.unlock(order.account, order.locked_asset, excess)
            order.locked_amount = needed

    def _finish(
        self,
        order: Order,
        status: str,
        now: int,
        expiry_reason: str | None = None,
        cancel_client_id: str | None = None,
    ) -> ExecutionEvent:
        """End an open order (CANCELED or EXPIRED), unlocking what it still holds."""
        order.status = status
        order.update_time_ms = now
        order.expiry_reason = expiry_reason
        self._release(order)
        self._open[order.symbol].pop(order.order_id, None)
        return self._event(order, status, now, cancel_client_id=cancel_client_id)

    def _oco_leg_executing(self, order: Order, now: int) -> list[ExecutionEvent]:
        """First trigger or fill of an OCO leg: move the list's lock to it, expire the other."""
        order_list = self._lists.get(order.order_list_id)
        if order_list is None or not order_list.is_open:
            return []
        events: list[ExecutionEvent] = []
        for oid in order_list.order_keys:
            sibling = self._orders[(order.symbol, oid)]
            if sibling is order or not sibling.is_open:
                continue
            order.locked_amount += sibling.locked_amount
            sibling.locked_amount = ZERO
            events.append(self._finish(sibling, "EXPIRED", now, "OCO_TRIGGER"))
        self._release(order)
        order_list.list_status_type = "ALL_DONE"
        order_list.list_order_status = "ALL_DONE"
        self._list_status(order_list, now)
        return events

    def _cancel_list(
        self, order_list: OrderList, now: int, cancel_id: str
    ) -> list[ExecutionEvent]:
        legs = [self._orders[(order_list.symbol, oid)] for oid in order_list.order_keys]
        events = [
            self._finish(leg, "CANCELED", now, cancel_client_id=cancel_id)
            for leg in legs
            if leg.is_open
        ]
        if order_list.is_open:
            order_list.list_status_type = "ALL_DONE"
            order_list.list_order_status = "ALL_DONE"
            self._list_status(order_list, now)
        return events

    def _resting_by_priority(self, symbol: str) -> list[Order]:
        resting = [o for o in self._open[symbol].values() if o.type != "MARKET"]
        if len(resting) > 1:
            resting.sort(key=lambda o: (-o.price if o.side == BUY else o.price, o.order_id))
        return resting

    def _event(
        self,
        order: Order,
        execution_type: str,
        now: int,
        trade: Trade | None = None,
        cancel_client_id: str | None = None,
    ) -> ExecutionEvent:
        event = _frozen(ExecutionEvent, {
            "account": order.account,
            "symbol": order.symbol,
            "client_order_id": cancel_client_id or order.client_order_id,
            "orig_client_order_id": order.client_order_id if cancel_client_id else "",
            "side": order.side,
            "order_type": order.type,
            "time_in_force": order.time_in_force,
            "quantity": order.orig_qty,
            "price": order.price,
            "stop_price": order.stop_price,
            "execution_type": execution_type,
            "order_status": order.status,
            "order_id": order.order_id,
            "last_executed_qty": trade.qty if trade else ZERO,
            "last_executed_price": trade.price if trade else ZERO,
            "cumulative_qty": order.executed_qty,
            "cumulative_quote_qty": order.cumulative_quote_qty,
            "commission": trade.commission if trade else ZERO,
            "commission_asset": trade.commission_asset if trade else None,
            "trade_id": trade.trade_id if trade else -1,
            "is_maker": trade.is_maker if trade else False,
            "is_working": order.status in OPEN_STATUSES and order.is_working,
            "order_list_id": order.order_list_id,
            "event_time_ms": now,
            "transaction_time_ms": now,
            "order_creation_time_ms": order.time_ms,
            "working_time_ms": order.working_time_ms,
            "quote_order_qty": order.orig_quote_order_qty,
            "reject_reason": "NONE",
            "expiry_reason": order.expiry_reason if execution_type == "EXPIRED" else None,
            "execution_id": next(self._execution_ids),
        })
        if self.user_data_stream:
            self._outbox.append(event)
        return event

    def _list_status(self, order_list: OrderList, now: int) -> None:
        if not self.user_data_stream:
            return
        legs = [self._orders[(order_list.symbol, oid)] for oid in order_list.order_keys]
        self._outbox.append(
            ListStatusEvent(
                account=order_list.account,
                symbol=order_list.symbol,
                order_list_id=order_list.order_list_id,
                contingency_type=order_list.contingency_type,
                list_status_type=order_list.list_status_type,
                list_order_status=order_list.list_order_status,
                list_client_order_id=order_list.list_client_order_id,
                transaction_time_ms=now,
                event_time_ms=now,
                orders=tuple((o.symbol, o.order_id, o.client_order_id) for o in legs),
            )
        )

    def _flush(self, now: int) -> None:
        """Queue one outboundAccountPosition per account whose balances changed."""
        deltas = self._ledger.drain_deltas()
        if not deltas:
            return
        changed: dict[str, dict[str, None]] = {}
        for delta in deltas:
            if delta.account != Ledger.VENUE:
                changed.setdefault(delta.account, {})[delta.asset] = None
        balance = self._ledger.balance
        for account, assets in changed.items():
            balances = tuple([balance(account, asset) for asset in assets])
            self._outbox.append(AccountPositionEvent(account, now, now, balances))


def _copy(order: Order) -> Order:
    """A snapshot of ``order`` for a caller (``dataclasses.replace`` costs several times more,
    and open orders are copied after every change the backtester sees)."""
    copied = object.__new__(Order)
    copied.__dict__.update(order.__dict__)
    copied.trades = list(order.trades)
    return copied


def _request_with(request: OrderRequest, **changes: Any) -> OrderRequest:
    """``dataclasses.replace(request, **changes)`` at a fraction of its cost."""
    return _frozen(OrderRequest, {**request.__dict__, **changes})


def _mandatory(name: str) -> BadRequestError:
    return BadRequestError(
        f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.", -1102
    )


def _validate(request: OrderRequest, filters: SymbolFilters) -> None:
    """Binance's request-shape checks (before filters): side, type, mandatory params."""
    if request.side not in (BUY, SELL):
        raise BadRequestError("Invalid side.", -1117)
    if request.type in ("STOP_LOSS", "TAKE_PROFIT"):
        raise BadRequestError(MSG_UNSUPPORTED, -1014)
    if request.type not in SUPPORTED_TYPES:
        raise BadRequestError("Invalid orderType.", -1116)
    if request.type == "MARKET":
        _validate_market(request, filters)
    else:
        _validate_limit(request)


def _validate_limit(request: OrderRequest) -> None:
    if request.quote_order_qty is not None:
        raise BadRequestError("Parameter 'quoteOrderQty' sent when not required.", -1106)
    if request.quantity is None:
        raise _mandatory("quantity")
    if request.price is None:
        raise _mandatory("price")
    if request.type in STOP_LIMIT_TYPES and request.stop_price is None:
        raise _mandatory("stopPrice")
    if request.type != "LIMIT_MAKER":
        if request.time_in_force is None:
            raise _mandatory("timeInForce")
        if request.time_in_force not in TIME_IN_FORCES:
            raise BadRequestError("Invalid timeInForce.", -1115)
    if request.quantity <= 0:
        raise FilterFailure("LOT_SIZE")
    if request.price <= 0:
        raise FilterFailure("PRICE_FILTER")


def _validate_market(request: OrderRequest, filters: SymbolFilters) -> None:
    if request.time_in_force is not None:
        raise BadRequestError("Parameter 'timeInForce' sent when not required.", -1106)
    if request.quantity is None and request.quote_order_qty is None:
        raise BadRequestError(
            "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!", -1102
        )
    if request.quantity is not None and request.quote_order_qty is not None:
        raise BadRequestError("Parameter 'quoteOrderQty' sent when not required.", -1106)
    if request.quote_order_qty is not None:
        if not filters.quote_order_qty_market_allowed:
            raise OrderRejectedError(MSG_QUOTE_QTY_NOT_ALLOWED)
        if request.quote_order_qty <= 0:
            raise FilterFailure(filters.notional_filter_type)
    elif request.quantity is not None and request.quantity <= 0:
        raise FilterFailure("LOT_SIZE")


_LIMIT_LEGS = frozenset({"LIMIT_MAKER", "TAKE_PROFIT_LIMIT"})


def _oco_legs(request: OcoRequest) -> tuple[OrderRequest, OrderRequest]:
    """(below, above) leg requests; checks the leg types Binance allows for the side."""
    if request.side == SELL:
        ok = request.above_type in _LIMIT_LEGS and request.below_type == "STOP_LOSS_LIMIT"
    elif request.side == BUY:
        ok = request.above_type == "STOP_LOSS_LIMIT" and request.below_type in _LIMIT_LEGS
    else:
        raise BadRequestError("Invalid side.", -1117)
    if not ok:
        raise BadRequestError(MSG_UNSUPPORTED, -1014)

    def leg(kind: str, price: Any, stop: Any, tif: Any, cid: Any) -> OrderRequest:
        needs_tif = kind in STOP_LIMIT_TYPES
        return OrderRequest(
            symbol=request.symbol,
            side=request.side,
            type=kind,
            quantity=request.quantity,
            price=price,
            stop_price=stop if kind in STOP_LIMIT_TYPES else None,
            time_in_force=(tif or "GTC") if needs_tif else None,
            client_order_id=cid,
        )

    below = leg(request.below_type, request.below_price, request.below_stop_price,
                request.below_time_in_force, request.below_client_order_id)
    above = leg(request.above_type, request.above_price, request.above_stop_price,
                request.above_time_in_force, request.above_client_order_id)
    return below, above
