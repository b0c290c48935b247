"""Every message that crosses a process boundary, as a frozen dataclass.

Each class registers its ``type`` name; ``to_dict``/``from_dict`` convert to and from the
plain map the codec packs. Decimal fields travel as strings and come back as ``Decimal``.
Commands are imperative (``SubmitIntent``), events past tense (``OrderUpdated``).
Unknown keys are ignored on decode so an older reader accepts a newer sender's message.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Self, Union

from shared.errors import CodecError

SCHEMA_VERSION = 1

REGISTRY: dict[str, type[Message]] = {}

def message[M: Message](cls: type[M]) -> type[M]:
    """Class decorator: make ``cls`` a frozen dataclass and register it under its name."""
    cls = dataclass(frozen=True, slots=True)(cls)
    name = cls.__name__
    if name in REGISTRY:
        raise TypeError(f"message type {name!r} registered twice")
    REGISTRY[name] = cls
    cls._hints = None  # resolved lazily: forward references need the whole module
    return cls


class Message:
    """Base of all messages; subclasses are declared with ``@message``."""

    __slots__ = ()
    _hints: ClassVar[dict[str, Any] | None]

    @property
    def type(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "v": SCHEMA_VERSION}
        for f in dataclasses.fields(self):
            out[f.name] = _encode_value(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        hints = _hints_of(cls)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise CodecError(f"{cls.__name__}: missing field {f.name!r}")
                continue
            kwargs[f.name] = _decode_value(hints[f.name], data[f.name], f"{cls.__name__}.{f.name}")
        return cls(**kwargs)


def from_dict(data: dict[str, Any]) -> Message:
    """Build the registered message named by ``data['type']``."""
    if not isinstance(data, dict):
        raise CodecError(f"a message must be a map, got {type(data).__name__}")
    name = data.get("type")
    cls = REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise CodecError(f"unknown message type {name!r}")
    return cls.from_dict(data)


def _hints_of(cls: type[Message]) -> dict[str, Any]:
    if cls._hints is None:
        cls._hints = typing.get_type_hints(cls)
    return cls._hints


def _encode_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple):
        return [_encode_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode_value(v) for k, v in value.items()}
    return value


def _decode_value(hint: Any, value: Any, where: str) -> Any:  # noqa: C901 - one branch per kind
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _decode_value(inner[0], value, where)
    if hint is Decimal:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise CodecError(f"{where}: expected a decimal string, got {value!r}")
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise CodecError(f"{where}: not a decimal: {value!r}") from None
        if not result.is_finite():
            raise CodecError(f"{where}: decimal must be finite, got {value!r}")
        return result
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CodecError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise CodecError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise CodecError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise CodecError(f"{where}: expected a string, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise CodecError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_decode_value(item, v, where) for v in value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise CodecError(f"{where}: expected a map, got {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is not Any:
            return {k: _decode_value(args[1], v, where) for k, v in value.items()}
        return value
    return value  # Any


# --- service plumbing ------------------------------------------------------------------


@message
class Heartbeat(Message):
    """A service is alive: published on ``health.<service>`` every second."""

    service: str
    instance: str
    status: str
    uptime_s: float
    ts: float
    pid: int
    detail: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0


@message
class LogRecord(Message):
    """One log line, already redacted, published on ``log.<service>``."""

    service: str
    instance: str
    level: str
    logger: str
    message: str
    ts: float


@message
class BusStats(Message):
    """Message rates through the bus per topic prefix, published on ``health.bus``."""

    ts: float
    interval_s: float
    rates: dict[str, float]
    totals: dict[str, int]


@message
class Ping(Message):
    """Ask a reply server whether it is alive; it answers with ``Reply``."""

    nonce: str = ""


@message
class Reply(Message):
    """The answer to any request: ``ok`` with a ``result`` or an ``error_code`` and message."""

    ok: bool
    result: Any = None
    error_code: str = ""
    error_message: str = ""
    fields: dict[str, str] = field(default_factory=dict)


# --- market data (floats are fine here) ------------------------------------------------


@message
class Candle(Message):
    """A kline on ``md.kline.<SYMBOL>.<interval>``; ``closed`` is False while it forms."""

    symbol: str
    interval: str
    open_time_ms: int
    close_time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    closed: bool


@message
class BookTicker(Message):
    """Best bid and ask on ``md.book.<SYMBOL>``."""

    symbol: str
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float
    ts_ms: int
    update_id: int = 0


@message
class DepthBook(Message):
    """Top levels of the order book on ``md.depth.<SYMBOL>``: lists of (price, qty)."""

    symbol: str
    bids: tuple[tuple[float, float], ...]
    asks: tuple[tuple[float, float], ...]
    last_update_id: int
    ts_ms: int


# --- bots, orders and fills (money travels as Decimal strings) -------------------------


@message
class StartBot(Message):
    """Command: set a bot's desired status to running."""

    bot_id: str


@message
class StopBot(Message):
    """Command: set a bot's desired status to stopped."""

    bot_id: str


@message
class BotStatusChanged(Message):
    """Event: a bot moved to STOPPED/STARTING/RUNNING/STOPPING/ERROR."""

    bot_id: str
    status: str
    reason: str
    ts: float


@message
class SubmitIntent(Message):
    """Command from a strategy worker to execution: trade for a bot under its lease epoch."""

    intent_id: str
    bot_id: str
    epoch: int
    symbol: str
    side: str
    order_type: str
    quantity: Decimal | None = None
    quote_qty: Decimal | None = None
    price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    reason: str = ""


@message
class CancelOrder(Message):
    """Command: cancel one order by its client order id."""

    client_order_id: str
    symbol: str
    bot_id: str = ""


@message
class OrderUpdated(Message):
    """Event: an order changed status on the exchange (``exec.order.<bot>``)."""

    bot_id: str
    client_order_id: str
    exchange_order_id: int
    symbol: str
    side: str
    order_type: str
    status: str
    price: Decimal
    quantity: Decimal
    executed_qty: Decimal
    cumulative_quote: Decimal
    ts_ms: int


@message
class OrderFilled(Message):
    """Event: one trade (fill) of an order; unique on (symbol, trade_id)."""

    bot_id: str
    client_order_id: str
    exchange_order_id: int
    trade_id: int
    symbol: str
    side: str
    price: Decimal
    quantity: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    is_maker: bool
    ts_ms: int


@message
class StateChanged(Message):
    """Event: one numbered change of the state service (``state.<kind>``, Clone pattern)."""

    seq: int
    kind: str
    payload: dict[str, Any]
